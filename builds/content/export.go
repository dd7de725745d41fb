package content

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"manifold/builds"
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

// Result returns a succeeded build and its root descriptor, or an error that
// says why it has no result.
func (s *Service) Result(ctx context.Context, id string) (*builds.Build, ocispec.Descriptor, error) {
	b, err := s.builds.Get(ctx, id)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	if b.Status != builds.StatusSucceeded || b.IndexDigest == "" {
		return nil, ocispec.Descriptor{}, builds.CodeErrorf(builds.ENotFound, "no_result", "build %s has no image: it is %s", id, b.Status)
	}
	d, err := digest.Parse(b.IndexDigest)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	info, err := s.blobs.Info(ctx, d)
	if err != nil {
		return nil, ocispec.Descriptor{}, builds.CodeErrorf(builds.ENotFound, "blob_missing", "the image of build %s is no longer stored", id)
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
		return nil, builds.CodeErrorf(builds.EInvalid, "invalid_format", "format %q is not one Manifold makes; use oci or docker", format)
	}
	if platform != "" {
		p, err := builds.ParsePlatform(platform)
		if err != nil {
			return nil, err
		}
		platform = p
	}
	b, root, err := s.Result(ctx, id)
	if err != nil {
		return nil, err
	}
	if format == FormatDocker && platform == "" {
		if len(b.Manifests) != 1 {
			return nil, builds.CodeErrorf(builds.EInvalid, "platform_required", "a docker load tarball holds one platform; add &platform= with one of %s", strings.Join(b.Platforms, ", "))
		}
		platform = b.Manifests[0].Platform
	}
	name := archiveBaseName(b)
	target := root
	if platform != "" {
		if target, err = PlatformManifest(ctx, s.blobs, root, platform); err != nil {
			return nil, err
		}
		name += "-" + strings.ReplaceAll(platform, "/", "-")
	}
	if format == FormatDocker {
		return DockerArchive(ctx, s.blobs, target, dockerRepoTag(b), name+".docker.tar")
	}
	tag := b.ID
	if named, err := reference.ParseNormalizedNamed(firstTag(b)); err == nil {
		if tagged, ok := named.(reference.Tagged); ok {
			tag = tagged.Tag()
		}
	}
	return OCIArchive(ctx, s.blobs, target, firstTag(b), tag, name+".oci.tar")
}

// firstTag is the build's first tag, fully qualified, or "".
func firstTag(b *builds.Build) string {
	if len(b.Tags) == 0 {
		return ""
	}
	return b.Tags[0]
}

// dockerRepoTag names the image `docker load` creates: the first tag in its
// familiar form, else builds:<id>.
func dockerRepoTag(b *builds.Build) string {
	if t := firstTag(b); t != "" {
		if named, err := reference.ParseNormalizedNamed(t); err == nil {
			return reference.FamiliarString(reference.TagNameOnly(named))
		}
	}
	return "builds:" + b.ID
}

// archiveBaseName is a file name stem: the first tag's last path element, and the id.
func archiveBaseName(b *builds.Build) string {
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

// ArchiveSum is one download of a build: what it is, its size and sha256
// (empty until computed).
type ArchiveSum struct {
	Format   string `json:"format"`
	Platform string `json:"platform"` // "" for the whole index
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	// URL is where the HTTP layer serves it; the domain leaves it empty.
	URL string `json:"url,omitempty"`
}

// Downloads lists a succeeded build's downloads with their sizes, and the
// sha256 of each that was computed; the missing ones are computed in the
// background, one build at a time.
func (s *Service) Downloads(ctx context.Context, id string) ([]ArchiveSum, error) {
	b, err := s.builds.Get(ctx, id)
	if err != nil || b.Status != builds.StatusSucceeded {
		return nil, err
	}
	sums, err := s.records.ArchiveSums(ctx, id)
	if err != nil {
		return nil, err
	}
	var out []ArchiveSum
	var missing []ArchiveSum
	add := func(format, platform string) {
		a, ok := sums[format+"/"+platform]
		if !ok {
			arch, err := s.Export(ctx, id, format, platform)
			if err != nil {
				return
			}
			a = ArchiveSum{Format: format, Platform: platform, Size: arch.Size}
			missing = append(missing, a)
		}
		out = append(out, a)
	}
	add(FormatOCI, "")
	for _, m := range b.Manifests {
		add(FormatOCI, m.Platform)
	}
	for _, m := range b.Manifests {
		add(FormatDocker, m.Platform)
	}
	if len(missing) > 0 {
		s.sumArchives(id, missing)
	}
	return out, nil
}

// sumArchives computes checksums in the background; a build already being
// summed is skipped.
func (s *Service) sumArchives(id string, missing []ArchiveSum) {
	s.summing.Lock()
	if s.summingIDs == nil {
		s.summingIDs = map[string]bool{}
	}
	if s.summingIDs[id] {
		s.summing.Unlock()
		return
	}
	s.summingIDs[id] = true
	s.summing.Unlock()
	started := s.jobs.Go(func(ctx context.Context) {
		defer func() {
			s.summing.Lock()
			delete(s.summingIDs, id)
			s.summing.Unlock()
		}()
		select {
		case s.sumSlots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.sumSlots }()
		for _, a := range missing {
			arch, err := s.Export(ctx, id, a.Format, a.Platform)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("checksum a download: assemble it", "build_id", id, "format", a.Format, "platform", a.Platform, "err", err)
				}
				return
			}
			sum, err := arch.Sum(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("checksum a download", "build_id", id, "err", err)
				}
				return
			}
			a.SHA256, a.Size = sum, arch.Size
			if err := s.records.SaveArchiveSum(ctx, id, a); err != nil {
				s.log.Warn("save a download's checksum", "build_id", id, "err", err)
			}
		}
	})
	if !started {
		s.summing.Lock()
		delete(s.summingIDs, id)
		s.summing.Unlock()
	}
}
