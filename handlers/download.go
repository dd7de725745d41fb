package handlers

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
)

// Export answers GET/HEAD /api/v1/builds/{id}/export?format=oci|docker&platform=…
func (h *Handlers) Export(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	a, err := h.Content.Export(r.Context(), chi.URLParam(r, "id"), q.Get("format"), q.Get("platform"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Name}))
	return serveRanges(w, r, a.ETag(), a.Size, func(ctx context.Context, w io.Writer, off, n int64) error {
		return a.WriteRange(ctx, w, off, n)
	})
}

// exportURL is where Export serves a build's archive.
func exportURL(id, format, platform string) string {
	u := "/api/v1/builds/" + id + "/export?format=" + format // both checked names: no escaping needed
	if platform != "" {
		u += "&platform=" + platform
	}
	return u
}

// serveRanges answers a GET or HEAD for content of a known size and strong
// ETag, honouring If-None-Match, If-Range and a single byte Range; several
// ranges in one request get the whole content, as RFC 9110 allows.
func serveRanges(w http.ResponseWriter, r *http.Request, etag string, size int64, write func(ctx context.Context, w io.Writer, off, n int64) error) error {
	hdr := w.Header()
	hdr.Set("ETag", etag)
	hdr.Set("Accept-Ranges", "bytes")
	hdr.Set("Cache-Control", "private, max-age=31536000, immutable") // content-addressed: never changes
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	off, n, status := int64(0), size, http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && (r.Header.Get("If-Range") == "" || r.Header.Get("If-Range") == etag) {
		start, length, ok, satisfiable := parseRange(rg, size)
		if ok && !satisfiable {
			hdr.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			http.Error(w, "the requested range is outside the content", http.StatusRequestedRangeNotSatisfiable)
			return nil
		}
		if ok {
			off, n, status = start, length, http.StatusPartialContent
			hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
		}
	}
	hdr.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead || n == 0 {
		return nil
	}
	// Errors after the header are the client going away, or a blob vanishing
	// mid-stream: the short body tells the client; there is nothing to render.
	_ = write(r.Context(), w, off, n)
	return nil
}

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// parseRange reads one "bytes=a-b", "bytes=a-" or "bytes=-n" range. ok is
// false for anything else (then the whole content is sent).
func parseRange(h string, size int64) (start, length int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	if a == "" { // the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, false
		}
		if n == 0 || size == 0 {
			return 0, 0, true, false
		}
		n = min(n, size)
		return size - n, n, true, true
	}
	s, err := strconv.ParseInt(a, 10, 64)
	if err != nil || s < 0 {
		return 0, 0, false, false
	}
	if s >= size {
		return 0, 0, true, false
	}
	e := size - 1
	if b != "" {
		if e, err = strconv.ParseInt(b, 10, 64); err != nil || e < s {
			return 0, 0, false, false
		}
		e = min(e, size-1)
	}
	return s, e - s + 1, true, true
}
