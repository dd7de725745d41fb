package explore

import (
	"context"
	"fmt"
	"manifold/builds"
	"manifold/builds/content"
	"strings"
	"time"

	ccontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RemoteRef is a remote image reference resolved and fetched for exploring.
type RemoteRef struct {
	Ref       string `json:"ref"`
	Name      string `json:"name"`
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
}

// ExploreRemote resolves a reference ("registry/repo:tag", "repo@sha256:…")
// through the registry API with the stored credentials and fetches its
// indexes, manifests and configs into the store (layers wait until they are
// opened). Nothing is pushed.
func (s *Service) ExploreRemote(ctx context.Context, ref string) (RemoteRef, error) {
	ref = strings.TrimSpace(ref)
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return RemoteRef{}, builds.CodeErrorf(builds.EInvalid, "invalid_reference", "%q is not an image reference like registry.example.com/team/app:1.2: %v", ref, err)
	}
	named = reference.TagNameOnly(named)
	if err := s.client.Check(ctx, "registry", reference.Domain(named)); err != nil {
		return RemoteRef{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resolver := s.client.Resolver(ctx)
	name, root, err := resolver.Resolve(ctx, named.String())
	if err != nil {
		if e, ok := builds.RefusedError("registry", "registry_error", err); ok {
			return RemoteRef{}, e
		}
		if errdefs.IsNotFound(err) {
			return RemoteRef{}, builds.CodeErrorf(builds.ENotFound, "remote_not_found", "the registry has no %s: %v", named, err)
		}
		return RemoteRef{}, builds.CodeErrorf(builds.EUpstream, "registry_error", "the registry for %s did not answer as hoped: %v", reference.Domain(named), err)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		if e, ok := builds.RefusedError("registry", "registry_error", err); ok {
			return RemoteRef{}, e
		}
		return RemoteRef{}, builds.CodeErrorf(builds.EUpstream, "registry_error", "fetch from %s: %v", name, err)
	}
	repo := named.Name()
	var layers []ocispec.Descriptor
	var walk func(d ocispec.Descriptor, depth int) error
	walk = func(d ocispec.Descriptor, depth int) error {
		if depth > 4 {
			return builds.CodeErrorf(builds.EInvalid, "too_deep", "the image nests indexes more than 4 deep")
		}
		if d.Size > content.MaxManifestSize {
			return builds.CodeErrorf(builds.EInvalid, "manifest_too_large", "%s is %d bytes; manifests and configs over %d bytes are not read", d.Digest, d.Size, content.MaxManifestSize)
		}
		if err := s.fetch(ctx, fetcher, d); err != nil {
			return err
		}
		switch {
		case content.IsIndex(d.MediaType):
			var idx ocispec.Index
			if err := content.ReadJSON(ctx, s.blobs, d, &idx); err != nil {
				return err
			}
			for _, m := range idx.Manifests {
				if err := walk(m, depth+1); err != nil {
					return err
				}
			}
		case content.IsManifest(d.MediaType):
			var m ocispec.Manifest
			if err := content.ReadJSON(ctx, s.blobs, d, &m); err != nil {
				return err
			}
			if m.Config.Size <= content.MaxManifestSize {
				if err := s.fetch(ctx, fetcher, m.Config); err != nil {
					return err
				}
			}
			layers = append(layers, m.Layers...)
		}
		return nil
	}
	if err := walk(root, 0); err != nil {
		return RemoteRef{}, err
	}
	if err := s.records.SaveOrigins(ctx, repo, layers); err != nil {
		return RemoteRef{}, err
	}
	return RemoteRef{Ref: named.String(), Name: repo, Digest: root.Digest.String(), MediaType: root.MediaType, Size: root.Size}, nil
}

// fetch copies one blob into the store unless it is there; the store checks the digest.
func (s *Service) fetch(ctx context.Context, f remotes.Fetcher, d ocispec.Descriptor) error {
	if _, err := s.blobs.Info(ctx, d.Digest); err == nil {
		return nil
	}
	rc, err := f.Fetch(ctx, d)
	if err != nil {
		if e, ok := builds.RefusedError("registry", "registry_error", err); ok {
			return e
		}
		return builds.CodeErrorf(builds.EUpstream, "registry_error", "fetch %s: %v", d.Digest, err)
	}
	defer rc.Close()
	if err := ccontent.WriteBlob(ctx, s.blobs, "remote-"+d.Digest.Encoded(), rc, d); err != nil && !errdefs.IsAlreadyExists(err) {
		return builds.CodeErrorf(builds.EUpstream, "registry_error", "store %s: %v", d.Digest, err)
	}
	return nil
}

// fetchOrigin fetches a remote layer that an explored image named, on first use.
func (s *Service) fetchOrigin(ctx context.Context, dg string) error {
	name, desc, ok, err := s.records.Origin(ctx, dg)
	if err != nil || !ok {
		return err
	}
	if named, err := reference.ParseNormalizedNamed(name); err == nil {
		if err := s.client.Check(ctx, "registry", reference.Domain(named)); err != nil {
			return err
		}
	}
	resolver := s.client.Resolver(ctx)
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		if e, ok := builds.RefusedError("registry", "registry_error", err); ok {
			return e
		}
		return fmt.Errorf("fetch from %s: %w", name, err)
	}
	return s.fetch(ctx, fetcher, desc)
}
