package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"manifold/builds"
)

// Registry answers the read-only OCI distribution API under /v2/: pulls of
// manifests and blobs, tag lists, and the spec's error shape.
func (h *Handlers) Registry(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return registryError(w, r, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry is read-only: Manifold serves pulls; push with a build's push or promote")
	}
	rest := strings.TrimPrefix(r.URL.Path, "/v2/")
	if rest == "" {
		w.Header().Set("Content-Type", "application/json")
		_, err := io.WriteString(w, "{}")
		return err
	}
	var err error
	switch {
	case rest == "_catalog":
		err = h.registryCatalog(w, r)
	case strings.HasSuffix(rest, "/tags/list"):
		err = h.registryTags(w, r, strings.TrimSuffix(rest, "/tags/list"))
	case strings.Contains(rest, "/referrers/"):
		i := strings.LastIndex(rest, "/referrers/")
		err = h.registryReferrers(w, r, rest[:i], rest[i+len("/referrers/"):])
	case strings.Contains(rest, "/manifests/"):
		i := strings.LastIndex(rest, "/manifests/")
		err = h.registryManifest(w, r, rest[:i], rest[i+len("/manifests/"):])
	case strings.Contains(rest, "/blobs/"):
		i := strings.LastIndex(rest, "/blobs/")
		err = h.registryBlob(w, r, rest[:i], rest[i+len("/blobs/"):])
	default:
		return registryError(w, r, http.StatusNotFound, "NAME_UNKNOWN", "nothing is served at "+r.URL.Path)
	}
	if err != nil {
		status := Status(err)
		if status >= 500 {
			return err // the shared adapter logs it
		}
		return registryError(w, r, status, builds.ErrorCode(err), builds.ErrorMessage(err))
	}
	return nil
}

func registryError(w http.ResponseWriter, r *http.Request, status int, code, msg string) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	return json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"code": code, "message": msg, "detail": nil}}})
}

func (h *Handlers) registryManifest(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	desc, body, err := h.Registries.ResolveManifest(r.Context(), repo, ref)
	if err != nil {
		return err
	}
	hdr := w.Header()
	hdr.Set("Content-Type", blobContentType(desc.MediaType))
	hdr.Set("Docker-Content-Digest", desc.Digest.String())
	hdr.Set("ETag", `"`+desc.Digest.String()+`"`)
	hdr.Set("Content-Length", strconv.FormatInt(desc.Size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(body)
	return err
}

func (h *Handlers) registryBlob(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	desc, err := h.Registries.StatBlob(r.Context(), repo, ref)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", desc.Digest.String())
	store := h.Blobs
	return serveRanges(w, r, `"`+desc.Digest.String()+`"`, desc.Size, func(ctx context.Context, w io.Writer, off, n int64) error {
		return store.CopyBlob(w, digest.Digest(desc.Digest), off, n)
	})
}

func (h *Handlers) registryTags(w http.ResponseWriter, r *http.Request, repo string) error {
	q := r.URL.Query()
	n, err := pageSize(q)
	if err != nil {
		return err
	}
	tags, err := h.Registries.RepoTags(r.Context(), repo, q.Get("last"), n)
	if err != nil {
		return err
	}
	if n > 0 && len(tags) == n {
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=%d&last=%s>; rel="next"`, repo, n, url.QueryEscape(tags[len(tags)-1])))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"name": repo, "tags": tags})
}

// registryReferrers answers the referrers API: the manifests whose subject
// is the digest (BuildKit's attestation manifests name their platform
// manifest), with artifactType and annotations; ?artifactType= filters, and
// says so in OCI-Filters-Applied.
func (h *Handlers) registryReferrers(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	at := r.URL.Query().Get("artifactType")
	descs, err := h.Registries.Referrers(r.Context(), repo, ref, at)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	body, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(body)
	return err
}

// registryCatalog answers GET /v2/_catalog?n=&last=: every name a caller
// may pull ("builds" and each tag's name), in order, paged with a Link header.
func (h *Handlers) registryCatalog(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	n, err := pageSize(q)
	if err != nil {
		return err
	}
	names, err := h.Registries.Catalog(r.Context(), q.Get("last"), n)
	if err != nil {
		return err
	}
	if n > 0 && len(names) == n {
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?n=%d&last=%s>; rel="next"`, n, url.QueryEscape(names[len(names)-1])))
	}
	if names == nil {
		names = []string{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"repositories": names})
}

// pageSize reads the distribution spec's ?n= (1000 when absent, at most 10,000).
func pageSize(q url.Values) (int, error) {
	s := q.Get("n")
	if s == "" {
		return 1000, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, builds.CodeErrorf(builds.EInvalid, "PAGINATION_NUMBER_INVALID", "n=%q is not a number", s)
	}
	return min(v, 10000), nil
}
