package content

import (
	"context"
	"fmt"
	"manifold/builds"

	ccontent "github.com/containerd/containerd/v2/core/content"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types Manifold reads besides the OCI ones.
const (
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
)

// IsIndex reports whether mt is an image index (OCI or Docker manifest list).
// IsIndex reports whether mt is an image index (OCI or Docker manifest list).
func IsIndex(mt string) bool { return mt == ocispec.MediaTypeImageIndex || mt == mediaDockerList }

// IsManifest reports whether mt is an image manifest (OCI or Docker).
func IsManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mediaDockerManifest
}

// Reachable lists every blob reachable from root (root first, each once):
// indexes, their manifests (attestations included), configs and layers.
func Reachable(ctx context.Context, p ccontent.Provider, root ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	seen := map[string]bool{}
	var out []ocispec.Descriptor
	var walk func(d ocispec.Descriptor, depth int) error
	walk = func(d ocispec.Descriptor, depth int) error {
		if seen[d.Digest.String()] {
			return nil
		}
		seen[d.Digest.String()] = true
		out = append(out, d)
		if depth > 8 {
			return fmt.Errorf("indexes nested more than 8 deep at %s", d.Digest)
		}
		switch {
		case IsIndex(d.MediaType):
			var idx ocispec.Index
			if err := ReadJSON(ctx, p, d, &idx); err != nil {
				return err
			}
			for _, m := range idx.Manifests {
				if err := walk(m, depth+1); err != nil {
					return err
				}
			}
		case IsManifest(d.MediaType):
			var m ocispec.Manifest
			if err := ReadJSON(ctx, p, d, &m); err != nil {
				return err
			}
			if err := walk(m.Config, depth+1); err != nil {
				return err
			}
			for _, l := range m.Layers {
				if err := walk(l, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// PlatformManifest finds the manifest of one platform in the index at root,
// skipping attestation manifests.
func PlatformManifest(ctx context.Context, p ccontent.Provider, root ocispec.Descriptor, platform string) (ocispec.Descriptor, error) {
	if IsManifest(root.MediaType) {
		return root, nil
	}
	var idx ocispec.Index
	if err := ReadJSON(ctx, p, root, &idx); err != nil {
		return ocispec.Descriptor{}, err
	}
	var have []string
	for _, m := range idx.Manifests {
		if IsAttestation(m) || m.Platform == nil {
			continue
		}
		name := builds.FormatPlatform(m.Platform.OS, m.Platform.Architecture, m.Platform.Variant)
		if name == platform {
			return m, nil
		}
		have = append(have, name)
	}
	return ocispec.Descriptor{}, builds.CodeErrorf(builds.ENotFound, "platform_not_found", "the image has no %s manifest; it has %v", platform, have)
}
