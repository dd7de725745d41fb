package handlers

import (
	"context"
	"io"
	"mime"
	"net/http"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/builds/explore"
	"manifold/templates"
)

// BuildIndexJSON answers GET /api/v1/builds/{id}/index.
func (h *Handlers) BuildIndexJSON(w http.ResponseWriter, r *http.Request) error {
	v, err := h.Explorer.BuildIndex(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// BlobJSON answers GET /api/v1/blobs/{digest}: the parsed view by what the blob is.
func (h *Handlers) BlobJSON(w http.ResponseWriter, r *http.Request) error {
	v, err := h.Explorer.Blob(r.Context(), chi.URLParam(r, "digest"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// BlobRaw answers GET /api/v1/blobs/{digest}/raw: the bytes, with their media type.
func (h *Handlers) BlobRaw(w http.ResponseWriter, r *http.Request) error {
	desc, err := h.Explorer.RawBlob(r.Context(), chi.URLParam(r, "digest"))
	if err != nil {
		return err
	}
	// Raw bytes are a download, never a page on this origin, whatever
	// media type a (possibly remote) manifest claims for them.
	w.Header().Set("Content-Type", blobContentType(desc.MediaType))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": desc.Digest.Encoded()}))
	w.Header().Set("Docker-Content-Digest", desc.Digest.String())
	store := h.Blobs
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
	out := map[string]any{"digest": info.Digest, "files": files, "entries": len(files), "uncompressed_size": info.UncompressedSize, "truncated": info.Truncated != ""}
	if info.Truncated != "" {
		out["truncated_reason"] = info.Truncated
	}
	return writeJSON(w, http.StatusOK, out)
}

func (h *Handlers) files(r *http.Request) ([]explore.FileEntry, *explore.LayerListing, error) {
	ref, q := chi.URLParam(r, "digest"), r.URL.Query()
	if q.Get("merged") != "" {
		files, sum, err := h.Explorer.MergedFiles(r.Context(), ref)
		if err != nil {
			return nil, nil, err
		}
		return explore.SortFiles(files, q.Get("sort")), &sum, nil
	}
	l, err := h.Explorer.ListLayer(r.Context(), ref)
	if err != nil {
		return nil, nil, err
	}
	return explore.SortFiles(l.Files, q.Get("sort")), l, nil
}

// CompareJSON answers GET /api/v1/compare?a=…&b=… (two builds or two manifests).
func (h *Handlers) CompareJSON(w http.ResponseWriter, r *http.Request) error {
	c, err := h.Explorer.Compare(r.Context(), r.URL.Query().Get("a"), r.URL.Query().Get("b"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

// maxFileRows bounds the rows a file-list page renders; the JSON has them all.
const maxFileRows = 5000

// IndexPage answers GET /builds/{id}/index.
func (h *Handlers) IndexPage(w http.ResponseWriter, r *http.Request) error {
	b, err := h.Builds.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	idx, err := h.Explorer.BuildIndex(r.Context(), b.ID)
	if err != nil {
		return err
	}
	return render(w, r, http.StatusOK, templates.IndexPage(templates.IndexPageView{Build: b, Index: idx, Host: r.Host}))
}

// BlobPage answers GET /blobs/{digest}.
func (h *Handlers) BlobPage(w http.ResponseWriter, r *http.Request) error {
	ref := chi.URLParam(r, "digest")
	v, err := h.Explorer.Blob(r.Context(), ref)
	if err != nil {
		return err
	}
	if v.Kind == explore.KindLayer {
		to := "/blobs/" + v.Digest + "/files"
		if r.URL.RawQuery != "" {
			to += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return nil
	}
	trail, err := templates.ParseTrail(r.URL.Query())
	if err != nil {
		return err
	}
	pv := templates.BlobPageView{Blob: v, Host: r.Host, Trail: trail}
	if len(v.Raw) > 0 && v.Kind != explore.KindUnknown {
		pv.Raw = templates.PrettyJSON(v.Raw)
	}
	return render(w, r, http.StatusOK, templates.BlobPage(pv))
}

// FilesPage answers GET /blobs/{digest}/files.
func (h *Handlers) FilesPage(w http.ResponseWriter, r *http.Request) error {
	files, info, err := h.files(r)
	if err != nil {
		return err
	}
	trail, err := templates.ParseTrail(r.URL.Query())
	if err != nil {
		return err
	}
	v := templates.FilesPageView{Trail: trail, Digest: chi.URLParam(r, "digest"), Merged: r.URL.Query().Get("merged") != "", Sort: r.URL.Query().Get("sort"),
		Files: files, Truncated: info.Truncated, Total: info.UncompressedSize}
	if len(files) > maxFileRows {
		v.Files = files[:maxFileRows]
		if v.Truncated == "" {
			v.Truncated = "this page shows the first 5000 entries; the JSON (/api/v1/blobs/…/files) has all of them"
		}
	}
	return render(w, r, http.StatusOK, templates.FilesPage(v))
}

// ComparePage answers GET /compare?a=&b=.
func (h *Handlers) ComparePage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	v := templates.ComparePageView{A: q.Get("a"), B: q.Get("b")}
	status := http.StatusOK
	if v.A != "" && v.B != "" {
		c, err := h.Explorer.Compare(r.Context(), v.A, v.B)
		if err != nil {
			if k := builds.ErrorKind(err); k != builds.EInvalid && k != builds.ENotFound {
				return err
			}
			v.Error, status = builds.ErrorMessage(err), http.StatusBadRequest
		}
		v.Comparison = c
	}
	return render(w, r, status, templates.ComparePage(v))
}

// RemoteJSON answers GET /api/v1/remote?ref=…: a remote image resolved and
// fetched (manifests and configs), with the same view as a stored blob.
func (h *Handlers) RemoteJSON(w http.ResponseWriter, r *http.Request) error {
	rr, err := h.Explorer.ExploreRemote(r.Context(), r.URL.Query().Get("ref"))
	if err != nil {
		return err
	}
	v, err := h.Explorer.Blob(r.Context(), rr.Digest)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"remote": rr, "blob": v})
}

// RemotePage answers GET /remote?ref=…: fetch, then show the root blob's page.
func (h *Handlers) RemotePage(w http.ResponseWriter, r *http.Request) error {
	rr, err := h.Explorer.ExploreRemote(r.Context(), r.URL.Query().Get("ref"))
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/blobs/"+rr.Digest, http.StatusSeeOther)
	return nil
}
