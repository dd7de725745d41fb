package content

import (
	"context"
	"encoding/json"
	"fmt"
	"manifold/builds"

	ccontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestSize bounds how much of an index or manifest blob is read into memory.
const MaxManifestSize = 4 << 20

func openLocalStore(dir string) (ccontent.Store, error) {
	s, err := local.NewStore(dir)
	if err != nil {
		return nil, fmt.Errorf("open content store %s: %w", dir, err)
	}
	return s, nil
}

// ReadJSON reads a small blob from the store and decodes it into v.
func ReadJSON(ctx context.Context, p ccontent.Provider, desc ocispec.Descriptor, v any) error {
	if desc.Size > MaxManifestSize {
		return fmt.Errorf("blob %s is %d bytes, over the %d byte limit for manifests", desc.Digest, desc.Size, MaxManifestSize)
	}
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return fmt.Errorf("open blob %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	if ra.Size() > MaxManifestSize {
		return fmt.Errorf("blob %s is %d bytes, over the %d byte limit for manifests", desc.Digest, ra.Size(), MaxManifestSize)
	}
	buf := make([]byte, ra.Size())
	if _, err := ra.ReadAt(buf, 0); err != nil {
		return fmt.Errorf("read blob %s: %w", desc.Digest, err)
	}
	if got := digest.FromBytes(buf); got != desc.Digest {
		return fmt.Errorf("blob %s has digest %s", desc.Digest, got)
	}
	if err := json.Unmarshal(buf, v); err != nil {
		return fmt.Errorf("parse blob %s: %w", desc.Digest, err)
	}
	return nil
}

// IsAttestation reports whether an index entry is an attestation manifest
// (BuildKit's unknown/unknown entries), which describes another manifest.
func IsAttestation(d ocispec.Descriptor) bool {
	return d.Annotations["vnd.docker.reference.type"] == "attestation-manifest"
}

// ReadManifests lists the platform manifests of the index at root, following
// nested indexes and skipping attestation manifests. A root that is a single
// image manifest yields that one manifest.
func ReadManifests(ctx context.Context, p ccontent.Provider, root ocispec.Descriptor) ([]builds.Manifest, error) {
	var out []builds.Manifest
	if err := readManifests(ctx, p, root, nil, &out, 0); err != nil {
		return nil, err
	}
	return out, nil
}

func readManifests(ctx context.Context, p ccontent.Provider, desc ocispec.Descriptor, plat *ocispec.Platform, out *[]builds.Manifest, depth int) error {
	if depth > 4 {
		return fmt.Errorf("indexes nested more than 4 deep at %s", desc.Digest)
	}
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json":
		var idx ocispec.Index
		if err := ReadJSON(ctx, p, desc, &idx); err != nil {
			return err
		}
		for _, m := range idx.Manifests {
			if IsAttestation(m) {
				continue
			}
			if err := readManifests(ctx, p, m, m.Platform, out, depth+1); err != nil {
				return err
			}
		}
		return nil
	case ocispec.MediaTypeImageManifest, "application/vnd.docker.distribution.manifest.v2+json":
		var m ocispec.Manifest
		if err := ReadJSON(ctx, p, desc, &m); err != nil {
			return err
		}
		var cfg ocispec.Image
		if err := ReadJSON(ctx, p, m.Config, &cfg); err != nil {
			return err
		}
		if plat == nil {
			plat = &cfg.Platform
		}
		size := m.Config.Size
		for _, l := range m.Layers {
			size += l.Size
		}
		*out = append(*out, builds.Manifest{
			Platform:     builds.FormatPlatform(plat.OS, plat.Architecture, plat.Variant),
			Digest:       desc.Digest.String(),
			MediaType:    desc.MediaType,
			ConfigDigest: m.Config.Digest.String(),
			Size:         desc.Size,
			ImageSize:    size,
		})
		return nil
	}
	return fmt.Errorf("unexpected media type %q for %s", desc.MediaType, desc.Digest)
}

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }
