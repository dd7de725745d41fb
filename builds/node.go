package builds

import "context"

// NodeStatus is what a BuildKit node reported when last asked.
type NodeStatus struct {
	Name      string   `json:"name"`
	Addr      string   `json:"addr"`
	Platforms []string `json:"platforms"`
	// Native are the platforms the node runs without emulation.
	Native []string `json:"native"`
	OK     bool     `json:"ok"`
	// Running counts the solves on the node now.
	Running int `json:"running"`
	// DiskBytes is the node's build cache on disk (asked for on the nodes page only).
	DiskBytes int64  `json:"disk_bytes,omitempty"`
	Error     string `json:"error,omitempty"`
	Version   string `json:"version,omitempty"`
}

// Nodes reports the BuildKit nodes' health and platforms; builds/buildkit
// implements it.
type Nodes interface {
	// Status asks every node now.
	Status(ctx context.Context) []NodeStatus
	// RecentStatus may reuse a good answer a moment old: a build's
	// submission and its solve ask within moments of each other.
	RecentStatus(ctx context.Context) []NodeStatus
	// Details is Status with each node's build cache on disk.
	Details(ctx context.Context) []NodeStatus
}
