package builds

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BuildsRepo is the pull API's repository of every succeeded build, tagged by id.
const BuildsRepo = "builds"

// repoName is the distribution spec's repository name grammar.
var repoName = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
var tagName = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// Registry errors carry the distribution spec's codes.
func regErr(kind Kind, code, format string, args ...any) error {
	return CodeErrorf(kind, code, format, args...)
}

func (s *Service) checkRepo(ctx context.Context, repo string) error {
	if len(repo) > 255 || !repoName.MatchString(repo) {
		return regErr(EInvalid, "NAME_INVALID", "%q is not a repository name", repo)
	}
	if repo == BuildsRepo {
		return nil
	}
	ok, err := s.store.RepoKnown(ctx, repo)
	if err != nil {
		return err
	}
	if !ok {
		return regErr(ENotFound, "NAME_UNKNOWN", "no build carries a tag in repository %q", repo)
	}
	return nil
}

// ResolveManifest finds the manifest or index that repo:reference names: a
// tag (a build id in "builds", else a build's tag, the newest succeeded build
// winning) or a digest. It returns the descriptor and the blob's bytes.
func (s *Service) ResolveManifest(ctx context.Context, repo, ref string) (ocispec.Descriptor, []byte, error) {
	if err := s.checkRepo(ctx, repo); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	var dg digest.Digest
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		if err != nil {
			return ocispec.Descriptor{}, nil, regErr(EInvalid, "DIGEST_INVALID", "%q is not a digest", ref)
		}
		dg = d
	} else {
		if !tagName.MatchString(ref) {
			return ocispec.Descriptor{}, nil, regErr(EInvalid, "TAG_INVALID", "%q is not a tag", ref)
		}
		id := ref
		if repo != BuildsRepo {
			var err error
			if id, err = s.store.TagBuild(ctx, repo, ref); err != nil {
				return ocispec.Descriptor{}, nil, err
			}
			if id == "" {
				return ocispec.Descriptor{}, nil, regErr(ENotFound, "MANIFEST_UNKNOWN", "no succeeded build carries %s:%s", repo, ref)
			}
		} else if !ValidID(ref) {
			return ocispec.Descriptor{}, nil, regErr(ENotFound, "MANIFEST_UNKNOWN", "no build has the id %q", ref)
		}
		_, root, err := s.result(ctx, id)
		if err != nil {
			return ocispec.Descriptor{}, nil, regErr(ENotFound, "MANIFEST_UNKNOWN", "%s", ErrorMessage(err))
		}
		dg = root.Digest
	}
	info, err := s.runner.content.Info(ctx, dg)
	if err != nil || info.Size > maxManifestSize {
		return ocispec.Descriptor{}, nil, regErr(ENotFound, "MANIFEST_UNKNOWN", "manifest %s is not stored here", dg)
	}
	desc := ocispec.Descriptor{Digest: dg, Size: info.Size}
	var probe struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Layers        json.RawMessage `json:"layers"`
		Config        *struct {
			Digest string `json:"digest"`
		} `json:"config"`
	}
	buf := make([]byte, info.Size)
	ra, err := s.runner.content.ReaderAt(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	defer ra.Close()
	if _, err := ra.ReadAt(buf, 0); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if json.Unmarshal(buf, &probe) != nil || probe.SchemaVersion != 2 || (probe.Manifests == nil && !(probe.Config != nil && probe.Config.Digest != "" && probe.Layers != nil)) {
		return ocispec.Descriptor{}, nil, regErr(ENotFound, "MANIFEST_UNKNOWN", "%s is a blob, not a manifest", dg)
	}
	desc.MediaType = probe.MediaType
	if desc.MediaType == "" {
		desc.MediaType = ocispec.MediaTypeImageManifest
		if probe.Manifests != nil {
			desc.MediaType = ocispec.MediaTypeImageIndex
		}
	}
	return desc, buf, nil
}

// StatBlob checks that repo exists and the store has the blob.
func (s *Service) StatBlob(ctx context.Context, repo, ref string) (ocispec.Descriptor, error) {
	if err := s.checkRepo(ctx, repo); err != nil {
		return ocispec.Descriptor{}, err
	}
	dg, err := digest.Parse(ref)
	if err != nil {
		return ocispec.Descriptor{}, regErr(EInvalid, "DIGEST_INVALID", "%q is not a digest", ref)
	}
	info, err := s.runner.content.Info(ctx, dg)
	if err != nil {
		return ocispec.Descriptor{}, regErr(ENotFound, "BLOB_UNKNOWN", "blob %s is not stored here", dg)
	}
	return ocispec.Descriptor{Digest: dg, Size: info.Size}, nil
}

// Content is the blob store, for streaming.
func (s *Service) Content() *ContentStore { return s.runner.content }

// RepoTags lists a repository's tags after last, at most n.
func (s *Service) RepoTags(ctx context.Context, repo, last string, n int) ([]string, error) {
	if err := s.checkRepo(ctx, repo); err != nil {
		return nil, err
	}
	if repo == BuildsRepo {
		return s.store.SucceededIDs(ctx, last, n)
	}
	return s.store.RepoTags(ctx, repo, last, n)
}
