package handlers

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/builds/content"
	"manifold/templates"
)

// CollectGarbage answers POST /api/v1/gc: retention, then a sweep of unreachable blobs.
func (h *Handlers) CollectGarbage(w http.ResponseWriter, r *http.Request) error {
	rep, err := h.Content.CollectGarbage(r.Context(), h.Retention)
	if err != nil {
		return err
	}
	h.audit(r, "gc", "", fmt.Sprintf("%d builds, %d blobs, %d bytes", len(rep.RemovedBuilds), rep.RemovedBlobs, rep.FreedBytes))
	return writeJSON(w, http.StatusOK, rep)
}

// storagePage reads ?sort=newest|size, ?after= and ?limit= for the storage views.
func storagePage(r *http.Request) (content.UsagePage, error) {
	q := r.URL.Query()
	p := content.UsagePage{Sort: q.Get("sort"), After: q.Get("after")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return p, builds.CodeErrorf(builds.EInvalid, "invalid_limit", "limit=%q is not a positive number", l)
		}
		p.Limit = n
	}
	return p, nil
}

// Storage answers GET /api/v1/storage?sort=newest|size&after=&limit=: the
// store's totals and one page of builds' shares, with the next page's cursor.
func (h *Handlers) Storage(w http.ResponseWriter, r *http.Request) error {
	p, err := storagePage(r)
	if err != nil {
		return err
	}
	u, err := h.Content.StorageUsage(r.Context(), p)
	if err != nil {
		return err
	}
	if u.Next != "" {
		w.Header().Set("Link", fmt.Sprintf(`</api/v1/storage?sort=%s&after=%s&limit=%d>; rel="next"`, u.Sort, url.QueryEscape(u.Next), len(u.Builds)))
	}
	return writeJSON(w, http.StatusOK, u)
}

// StoragePage answers GET /storage, paged like the API.
func (h *Handlers) StoragePage(w http.ResponseWriter, r *http.Request) error {
	p, err := storagePage(r)
	if err != nil {
		return err
	}
	u, err := h.Content.StorageUsage(r.Context(), p)
	if err != nil {
		return err
	}
	return render(w, r, http.StatusOK, templates.StoragePage(templates.StorageView{Usage: u}))
}

// PinBuild answers POST (pin) and DELETE (unpin) /api/v1/builds/{id}/pin.
func (h *Handlers) PinBuild(w http.ResponseWriter, r *http.Request) error {
	b, err := h.Content.Pin(r.Context(), chi.URLParam(r, "id"), r.Method == http.MethodPost)
	if err != nil {
		return err
	}
	h.audit(r, map[bool]string{true: "build.pin", false: "build.unpin"}[b.Pinned], b.ID, "")
	return writeJSON(w, http.StatusOK, buildJSON{Build: b})
}

// DeleteBuild answers DELETE /api/v1/builds/{id}.
func (h *Handlers) DeleteBuild(w http.ResponseWriter, r *http.Request) error {
	if err := h.Content.Delete(r.Context(), chi.URLParam(r, "id")); err != nil {
		return err
	}
	h.audit(r, "build.delete", chi.URLParam(r, "id"), "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// PinForm answers POST /builds/{id}/pin from the build page (toggles).
func (h *Handlers) PinForm(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	b, err := h.Builds.Get(r.Context(), id)
	if err != nil {
		return err
	}
	if _, err := h.Content.Pin(r.Context(), id, !b.Pinned); err != nil {
		return err
	}
	h.audit(r, map[bool]string{true: "build.unpin", false: "build.pin"}[b.Pinned], id, "")
	http.Redirect(w, r, "/builds/"+id, http.StatusSeeOther)
	return nil
}

// PushForm answers POST /builds/{id}/push from the build page.
func (h *Handlers) PushForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return err
	}
	id := chi.URLParam(r, "id")
	// The attempt is recorded either way; the page shows how it went.
	_, _ = h.Registries.Push(r.Context(), id, r.PostForm.Get("tag"))
	h.audit(r, "build.push", id, r.PostForm.Get("tag"))
	http.Redirect(w, r, "/builds/"+id+"#pushes", http.StatusSeeOther)
	return nil
}
