package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
)

// keepAlive is how long an idle event stream waits before a comment line.
const keepAlive = 15 * time.Second

// writeTimeout drops a client that cannot take one event within it.
const writeTimeout = 10 * time.Second

// BuildEvents answers GET /api/v1/builds/{id}/events: Server-Sent Events,
// replayed from the database after Last-Event-ID (or ?after=), then live.
func (h *Handlers) BuildEvents(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	var after int64
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("after")
	}
	if last != "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return builds.CodeErrorf(builds.EInvalid, "invalid_event_id", "Last-Event-ID %q is not an event number", last)
		}
		after = n
	}
	rc := http.NewResponseController(w)
	// The build is loaded once, by Watch: its first event (open) says it
	// exists, and only then does the answer start; an unknown build is a 404.
	opened := false
	open := func() error {
		opened = true
		hdr := w.Header()
		hdr.Set("Content-Type", "text/event-stream")
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return errHeadDone
		}
		_, _ = fmt.Fprint(w, "retry: 1000\n\n")
		return rc.Flush()
	}
	err := h.Builds.Watch(r.Context(), id, after, keepAlive, func(e builds.Event) error {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		var err error
		if e.Type == builds.EventOpen {
			return open()
		}
		if e.Type == builds.EventPing {
			_, err = fmt.Fprint(w, ": ping\n\n")
		} else {
			err = writeSSE(w, e)
		}
		if err != nil {
			return err
		}
		// Flush only when the next event is not already waiting would batch
		// better; one flush per event keeps latency lowest.
		return rc.Flush()
	})
	switch {
	case err == nil, errors.Is(err, errHeadDone):
		return nil
	case !opened:
		return err // before the answer started: an unknown build is a 404
	case !errors.Is(err, builds.ErrWatcherDropped) && r.Context().Err() == nil:
		h.Log.Debug("event stream ended", "build_id", id, "err", err)
	}
	return nil // the response has started: nothing more can be said in it
}

// errHeadDone ends a HEAD request's watch once its headers are written.
var errHeadDone = errors.New("HEAD: headers only")

// writeSSE writes one event: its id (when stored), name and JSON data.
func writeSSE(w http.ResponseWriter, e builds.Event) error {
	var b strings.Builder
	if e.Seq > 0 {
		fmt.Fprintf(&b, "id: %d\n", e.Seq)
	}
	fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", e.Type, e.Data)
	_, err := w.Write([]byte(b.String()))
	return err
}
