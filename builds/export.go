package builds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Export formats.
const (
	FormatOCI    = "oci"
	FormatDocker = "docker"
)

// result returns a succeeded build and its root descriptor, or an error that
// says why it has no result.
func (s *Service) result(ctx context.Context, id string) (*Build, ocispec.Descriptor, error) {
	b, err := s.Get(ctx, id)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	if b.Status != StatusSucceeded || b.IndexDigest == "" {
		return nil, ocispec.Descriptor{}, CodeErrorf(ENotFound, "no_result", "build %s has no image: it is %s", id, b.Status)
	}
	d, err := digest.Parse(b.IndexDigest)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	info, err := s.runner.content.Info(ctx, d)
	if err != nil {
		return nil, ocispec.Descriptor{}, CodeErrorf(ENotFound, "blob_missing", "the image of build %s is no longer stored", id)
	}
	return b, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: info.Size}, nil
}

// Export assembles a download of a build's image: format "oci" (the whole
// index, or one platform) or "docker" (one platform, for `docker load`).
func (s *Service) Export(ctx context.Context, id, format, platform string) (*Archive, error) {
	switch format {
	case "", FormatOCI:
		format = FormatOCI
	case FormatDocker:
	default:
		return nil, CodeErrorf(EInvalid, "invalid_format", "format %q is not one Manifold makes; use oci or docker", format)
	}
	if platform != "" {
		p, err := ParsePlatform(platform)
		if err != nil {
			return nil, err
		}
		platform = p
	}
	b, root, err := s.result(ctx, id)
	if err != nil {
		return nil, err
	}
	if format == FormatDocker && platform == "" {
		if len(b.Manifests) != 1 {
			return nil, CodeErrorf(EInvalid, "platform_required", "a docker load tarball holds one platform; add &platform= with one of %s", strings.Join(b.Platforms, ", "))
		}
		platform = b.Manifests[0].Platform
	}
	name := archiveBaseName(b)
	target := root
	if platform != "" {
		if target, err = PlatformManifest(ctx, s.runner.content, root, platform); err != nil {
			return nil, err
		}
		name += "-" + strings.ReplaceAll(platform, "/", "-")
	}
	if format == FormatDocker {
		return DockerArchive(ctx, s.runner.content, target, dockerRepoTag(b), name+".docker.tar")
	}
	tag := b.ID
	if named, err := reference.ParseNormalizedNamed(firstTag(b)); err == nil {
		if tagged, ok := named.(reference.Tagged); ok {
			tag = tagged.Tag()
		}
	}
	return OCIArchive(ctx, s.runner.content, target, firstTag(b), tag, name+".oci.tar")
}

// firstTag is the build's first tag, fully qualified, or "".
func firstTag(b *Build) string {
	if len(b.Tags) == 0 {
		return ""
	}
	return b.Tags[0]
}

// dockerRepoTag names the image `docker load` creates: the first tag in its
// familiar form, else builds:<id>.
func dockerRepoTag(b *Build) string {
	if t := firstTag(b); t != "" {
		if named, err := reference.ParseNormalizedNamed(t); err == nil {
			return reference.FamiliarString(reference.TagNameOnly(named))
		}
	}
	return "builds:" + b.ID
}

// archiveBaseName is a file name stem: the first tag's last path element, and the id.
func archiveBaseName(b *Build) string {
	stem := "build"
	if t := firstTag(b); t != "" {
		if named, err := reference.ParseNormalizedNamed(t); err == nil {
			stem = path.Base(reference.Path(named))
			if tagged, ok := named.(reference.Tagged); ok {
				stem += "-" + tagged.Tag()
			}
		}
	}
	return stem + "-" + b.ID
}

// Sum computes the archive's sha256 by reading it through once.
func (a *Archive) Sum(ctx context.Context) (string, error) {
	h := sha256.New()
	if err := a.WriteRange(ctx, h, 0, a.Size); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
