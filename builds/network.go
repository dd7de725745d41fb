package builds

import (
	"fmt"
)

// Build network modes: where RUN steps of the embedded buildkitd get their network.
const (
	// NetworkBridge gives every RUN step its own network namespace on a
	// bridge of this daemon's own; traffic from it to this machine's
	// addresses and to link-local addresses is dropped.
	NetworkBridge = "bridge"
	// NetworkHost runs steps in this machine's network namespace: they reach
	// everything this machine reaches, Manifold included. Unsafe.
	NetworkHost = "host"
	// NetworkNone gives steps no network at all.
	NetworkNone = "none"
)

// ParseBuildNetwork checks a --build-network value; "" means bridge.
func ParseBuildNetwork(s string) (string, error) {
	switch s {
	case "":
		return NetworkBridge, nil
	case NetworkBridge, NetworkHost, NetworkNone:
		return s, nil
	}
	return "", fmt.Errorf("--build-network %q: use bridge (the default: steps get their own network and cannot reach this machine), host (steps share this machine's network, unsafe) or none (steps get no network)", s)
}
