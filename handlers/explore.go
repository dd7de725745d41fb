package handlers

import (
	"context"
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
)

// BuildIndexJSON answers GET /api/v1/builds/{id}/index.
func (h *Handlers) BuildIndexJSON(w http.ResponseWriter, r *http.Request) error {
	v, err := h.Builds.BuildIndex(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// BlobJSON answers GET /api/v1/blobs/{digest}: the parsed view by what the blob is.
func (h *Handlers) BlobJSON(w http.ResponseWriter, r *http.Request) error {
	v, err := h.Builds.Blob(r.Context(), chi.URLParam(r, "digest"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// BlobRaw answers GET /api/v1/blobs/{digest}/raw: the bytes, with their media type.
func (h *Handlers) BlobRaw(w http.ResponseWriter, r *http.Request) error {
	desc, err := h.Builds.RawBlob(r.Context(), chi.URLParam(r, "digest"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", desc.MediaType)
	w.Header().Set("Docker-Content-Digest", desc.Digest.String())
	store := h.Builds.Content()
	return serveRanges(w, r, `"`+desc.Digest.String()+`"`, desc.Size, func(ctx context.Context, w io.Writer, off, n int64) error {
		return store.CopyBlob(w, desc.Digest, off, n)
	})
}

// FilesJSON answers GET /api/v1/blobs/{digest}/files: a layer's listing
// (?sort=size for the largest first), or for a manifest ?merged=1 the whole
// platform filesystem.
func (h *Handlers) FilesJSON(w http.ResponseWriter, r *http.Request) error {
	files, info, err := h.files(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"digest": chi.URLParam(r, "digest"), "files": files, "uncompressed_size": info.UncompressedSize, "truncated": info.Truncated})
}

func (h *Handlers) files(r *http.Request) ([]builds.FileEntry, *builds.LayerListing, error) {
	ref, q := chi.URLParam(r, "digest"), r.URL.Query()
	if q.Get("merged") != "" {
		files, truncated, err := h.Builds.MergedFiles(r.Context(), ref)
		if err != nil {
			return nil, nil, err
		}
		return builds.SortFiles(files, q.Get("sort")), &builds.LayerListing{Digest: ref, Truncated: truncated, Entries: len(files)}, nil
	}
	l, err := h.Builds.ListLayer(r.Context(), ref)
	if err != nil {
		return nil, nil, err
	}
	return builds.SortFiles(l.Files, q.Get("sort")), l, nil
}

// CompareJSON answers GET /api/v1/compare?a=…&b=… (two builds or two manifests).
func (h *Handlers) CompareJSON(w http.ResponseWriter, r *http.Request) error {
	c, err := h.Builds.Compare(r.Context(), r.URL.Query().Get("a"), r.URL.Query().Get("b"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}
