package registry

import (
	"context"
	"encoding/json"
	"manifold/builds"
	"manifold/builds/content"
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
func regErr(kind builds.Kind, code, format string, args ...any) error {
	return builds.CodeErrorf(kind, code, format, args...)
}

func (s *Service) checkRepo(ctx context.Context, repo string) error {
	if len(repo) > 255 || !repoName.MatchString(repo) {
		return regErr(builds.EInvalid, "NAME_INVALID", "%q is not a repository name", repo)
	}
	if repo == BuildsRepo {
		return nil
	}
	ok, err := s.records.RepoKnown(ctx, repo)
	if err != nil {
		return err
	}
	if !ok {
		return regErr(builds.ENotFound, "NAME_UNKNOWN", "no build carries a tag in repository %q", repo)
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
			return ocispec.Descriptor{}, nil, regErr(builds.EInvalid, "DIGEST_INVALID", "%q is not a digest", ref)
		}
		dg = d
		if err := s.servable(ctx, repo, dg, "MANIFEST_UNKNOWN", "manifest"); err != nil {
			return ocispec.Descriptor{}, nil, err
		}
	} else {
		if !tagName.MatchString(ref) {
			return ocispec.Descriptor{}, nil, regErr(builds.EInvalid, "TAG_INVALID", "%q is not a tag", ref)
		}
		id := ref
		if repo != BuildsRepo {
			var err error
			if id, err = s.records.TagBuild(ctx, repo, ref); err != nil {
				return ocispec.Descriptor{}, nil, err
			}
			if id == "" {
				return ocispec.Descriptor{}, nil, regErr(builds.ENotFound, "MANIFEST_UNKNOWN", "no succeeded build carries %s:%s", repo, ref)
			}
		} else if !builds.ValidID(ref) {
			return ocispec.Descriptor{}, nil, regErr(builds.ENotFound, "MANIFEST_UNKNOWN", "no build has the id %q", ref)
		}
		_, root, err := s.results.Result(ctx, id)
		if err != nil {
			return ocispec.Descriptor{}, nil, regErr(builds.ENotFound, "MANIFEST_UNKNOWN", "%s", builds.ErrorMessage(err))
		}
		dg = root.Digest
	}
	info, err := s.blobs.Info(ctx, dg)
	if err != nil || info.Size > content.MaxManifestSize {
		return ocispec.Descriptor{}, nil, regErr(builds.ENotFound, "MANIFEST_UNKNOWN", "manifest %s is not stored here", dg)
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
	ra, err := s.blobs.ReaderAt(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	defer ra.Close()
	if _, err := ra.ReadAt(buf, 0); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if json.Unmarshal(buf, &probe) != nil || probe.SchemaVersion != 2 || (probe.Manifests == nil && !(probe.Config != nil && probe.Config.Digest != "" && probe.Layers != nil)) {
		return ocispec.Descriptor{}, nil, regErr(builds.ENotFound, "MANIFEST_UNKNOWN", "%s is a blob, not a manifest", dg)
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
		return ocispec.Descriptor{}, regErr(builds.EInvalid, "DIGEST_INVALID", "%q is not a digest", ref)
	}
	if err := s.servable(ctx, repo, dg, "BLOB_UNKNOWN", "blob"); err != nil {
		return ocispec.Descriptor{}, err
	}
	info, err := s.blobs.Info(ctx, dg)
	if err != nil {
		return ocispec.Descriptor{}, regErr(builds.ENotFound, "BLOB_UNKNOWN", "blob %s is not stored here", dg)
	}
	return ocispec.Descriptor{Digest: dg, Size: info.Size}, nil
}

// servable keeps repositories apart: a digest is served under a name only
// when a succeeded build that the name resolves to reaches it ("builds":
// any succeeded build; a tag's name: the builds carrying a tag there). What
// the remote explorer fetched, an uploaded context, or another name's image
// is not served, whatever the store holds.
func (s *Service) servable(ctx context.Context, repo string, dg digest.Digest, code, what string) error {
	ok, err := s.records.Servable(ctx, repo, dg.String())
	if err != nil {
		return err
	}
	if !ok {
		return regErr(builds.ENotFound, code, "%s %s is not part of any image in %s", what, dg, repo)
	}
	return nil
}

// Catalog lists the repository names the pull API serves after last, at most n.
func (s *Service) Catalog(ctx context.Context, last string, n int) ([]string, error) {
	return s.records.PullNames(ctx, last, n)
}

// RepoTags lists a repository's tags after last, at most n.
func (s *Service) RepoTags(ctx context.Context, repo, last string, n int) ([]string, error) {
	if err := s.checkRepo(ctx, repo); err != nil {
		return nil, err
	}
	if repo == BuildsRepo {
		return s.records.SucceededIDs(ctx, last, n)
	}
	return s.records.RepoTags(ctx, repo, last, n)
}

// Referrers lists the manifests whose subject is ref, among the images of
// the builds under repo that reach it (BuildKit's attestation manifests
// name their platform manifest as subject), as descriptors with the
// artifact type and annotations the distribution spec's referrers API
// gives; artifactType, when set, keeps only that type.
func (s *Service) Referrers(ctx context.Context, repo, ref, artifactType string) ([]ocispec.Descriptor, error) {
	if err := s.checkRepo(ctx, repo); err != nil {
		return nil, err
	}
	dg, err := digest.Parse(ref)
	if err != nil {
		return nil, regErr(builds.EInvalid, "DIGEST_INVALID", "%q is not a digest", ref)
	}
	indexes, err := s.records.ReferringIndexes(ctx, repo, dg.String(), 50)
	if err != nil {
		return nil, err
	}
	out := []ocispec.Descriptor{}
	seen := map[digest.Digest]bool{}
	for _, idx := range indexes {
		refs, err := s.referrers.get(ctx, s.blobs, idx)
		if err != nil {
			s.log.Warn("read referrers of an index", "index", idx, "err", err)
			continue
		}
		for _, r := range refs {
			if r.subject != dg || seen[r.desc.Digest] || (artifactType != "" && r.desc.ArtifactType != artifactType) {
				continue
			}
			seen[r.desc.Digest] = true
			out = append(out, r.desc)
		}
	}
	return out, nil
}

// referrer is a manifest of an index that names a subject.
type referrer struct {
	subject digest.Digest
	desc    ocispec.Descriptor
}

// referrerCache remembers each index's manifests that have a subject.
type referrerCache struct {
	content.DigestCache[[]referrer]
}

func (c *referrerCache) get(ctx context.Context, store *content.Store, index string) ([]referrer, error) {
	return c.Load(index, func() ([]referrer, error) {
		d, err := digest.Parse(index)
		if err != nil {
			return nil, err
		}
		info, err := store.Info(ctx, d)
		if err != nil {
			return nil, err
		}
		var idx ocispec.Index
		if err := content.ReadJSON(ctx, store, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: info.Size}, &idx); err != nil {
			return nil, err
		}
		refs := []referrer{}
		for _, m := range idx.Manifests {
			if !content.IsManifest(m.MediaType) || m.Size > content.MaxManifestSize {
				continue
			}
			var man ocispec.Manifest
			if err := content.ReadJSON(ctx, store, m, &man); err != nil || man.Subject == nil {
				continue
			}
			at := man.ArtifactType
			if at == "" {
				at = man.Config.MediaType
			}
			mt := man.MediaType
			if mt == "" {
				mt = m.MediaType
			}
			refs = append(refs, referrer{subject: man.Subject.Digest, desc: ocispec.Descriptor{
				MediaType: mt, Digest: m.Digest, Size: m.Size, ArtifactType: at, Annotations: man.Annotations,
			}})
		}
		return refs, nil
	})
}
