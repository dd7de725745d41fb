package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/templates"
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

// writeSSE writes one event: its id (when stored), name and JSON data. A
// log line also carries its rendering (renderedLine), so the page does not
// format or colour lines itself.
func writeSSE(w http.ResponseWriter, e builds.Event) error {
	var b strings.Builder
	if e.Seq > 0 {
		fmt.Fprintf(&b, "id: %d\n", e.Seq)
	}
	data := []byte(e.Data)
	if e.Type == builds.EventLog {
		var le builds.LogEvent
		if json.Unmarshal(e.Data, &le) == nil {
			if r, err := json.Marshal(renderLine(builds.LogLine{Seq: e.Seq, LogEvent: le})); err == nil {
				data = r
			}
		}
	}
	fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", e.Type, data)
	_, err := w.Write([]byte(b.String()))
	return err
}

// renderedLine is a log line as the page shows it: the fields of the
// stored line, its plain-log text, and that text's runs with their ANSI
// colour classes (class, text).
type renderedLine struct {
	builds.LogLine
	Plain string      `json:"plain"`
	Spans [][2]string `json:"spans"`
}

func renderLine(l builds.LogLine) renderedLine {
	r := renderedLine{LogLine: l, Plain: l.Plain(), Spans: [][2]string{}}
	for _, seg := range templates.ANSISegments(r.Plain) {
		r.Spans = append(r.Spans, [2]string{seg.Class, seg.Text})
	}
	return r
}

// StepLog answers GET /api/v1/builds/{id}/steps/{n}/log?after=SEQ&limit=N:
// a page of step #N's log lines, rendered, each with its seq; next is the
// after= of the following page (0 when this one is the last).
func (h *Handlers) StepLog(w http.ResponseWriter, r *http.Request) error {
	n, err := strconv.Atoi(chi.URLParam(r, "n"))
	if err != nil {
		return builds.CodeErrorf(builds.EInvalid, "invalid_step", "step %q is not a step number (#1, #2, …)", chi.URLParam(r, "n"))
	}
	q := r.URL.Query()
	var after int64
	if s := q.Get("after"); s != "" {
		if after, err = strconv.ParseInt(s, 10, 64); err != nil || after < 0 {
			return builds.CodeErrorf(builds.EInvalid, "invalid_cursor", "after=%q is not an event number", s)
		}
	}
	limit := 2000
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 5000 {
			return builds.CodeErrorf(builds.EInvalid, "invalid_limit", "limit=%q is not a number from 1 to 5000", s)
		}
	}
	lines, err := h.Builds.StepLog(r.Context(), chi.URLParam(r, "id"), n, after, limit)
	if err != nil {
		return err
	}
	out := struct {
		Lines []renderedLine `json:"lines"`
		Next  int64          `json:"next"`
	}{Lines: make([]renderedLine, 0, len(lines))}
	for _, l := range lines {
		out.Lines = append(out.Lines, renderLine(l))
	}
	if len(lines) == limit {
		out.Next = lines[len(lines)-1].Seq
	}
	return writeJSON(w, http.StatusOK, out)
}

// SearchLog answers GET /api/v1/builds/{id}/log/search?q=: the lines whose
// text holds q (any case), each with its step and line number there (the
// page's #step-N-LK anchors), the first 1000 of them, and how many match.
func (h *Handlers) SearchLog(w http.ResponseWriter, r *http.Request) error {
	hits, total, err := h.Builds.SearchLog(r.Context(), chi.URLParam(r, "id"), r.URL.Query().Get("q"))
	if err != nil {
		return err
	}
	type hit struct {
		renderedLine
		Line   int    `json:"line"`
		Anchor string `json:"anchor"`
	}
	out := struct {
		Count   int   `json:"count"`
		Matches []hit `json:"matches"`
	}{Count: total, Matches: make([]hit, 0, len(hits))}
	for _, m := range hits {
		out.Matches = append(out.Matches, hit{renderedLine: renderLine(m.LogLine), Line: m.Line, Anchor: fmt.Sprintf("step-%d-L%d", m.Number, m.Line)})
	}
	return writeJSON(w, http.StatusOK, out)
}
