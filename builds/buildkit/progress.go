package buildkit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"manifold/builds"
	"regexp"
	"strings"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/opencontainers/go-digest"
)

// Limits that keep one build's log bounded.
const (
	maxLogLine  = 16 << 10 // longer lines are cut
	maxLogBytes = 64 << 20 // past this, a build's output is dropped with one notice
	maxBatch    = 4096     // events persisted in one transaction
)

// recorder turns BuildKit's SolveStatus stream into steps, log lines and
// warnings; it persists each batch, then publishes it to the hub.
type recorder struct {
	store   Records
	hub     *builds.Hub
	buildID string
	log     *slog.Logger
	// node is the node every step ran on, when a build has one; with
	// several, a step's key starts with its node's name.
	node string

	steps      []*builds.Step
	byDigest   map[string]*builds.Step
	partial    map[logKey][]byte
	statusSeen map[string]bool
	logBytes   int64
	truncated  bool
}

type logKey struct {
	digest string
	stream int
}

func newRecorder(store Records, hub *builds.Hub, buildID string, log *slog.Logger) *recorder {
	return &recorder{
		store: store, hub: hub, buildID: buildID, log: log,
		byDigest: map[string]*builds.Step{}, partial: map[logKey][]byte{}, statusSeen: map[string]bool{},
	}
}

// run consumes ch until BuildKit closes it. Each status update is persisted
// and published at once, with whatever else is already waiting, so a watcher
// sees it within milliseconds.
func (r *recorder) run(ch <-chan *client.SolveStatus) {
	for st := range ch {
		events, changed := r.apply(st, nil, nil)
		open := true
	drain:
		for len(events) < maxBatch {
			select {
			case more, ok := <-ch:
				if !ok {
					open = false
					break drain
				}
				events, changed = r.apply(more, events, changed)
			default:
				break drain
			}
		}
		r.persist(events, changed)
		if !open {
			break
		}
	}
	// Output without a final newline is still output.
	var events []builds.Event
	for _, s := range r.steps {
		events = r.flushPartial(s, events, time.Now().UTC())
	}
	r.persist(events, nil)
}

func (r *recorder) persist(events []builds.Event, changed map[string]bool) {
	if len(events) == 0 && len(changed) == 0 {
		return
	}
	var steps []builds.Step
	for _, s := range r.steps {
		if changed[s.Digest] {
			steps = append(steps, *s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	saved, err := r.store.Record(ctx, r.buildID, events, steps)
	if err != nil {
		r.log.Error("record build progress", "build_id", r.buildID, "err", err)
		return
	}
	r.hub.Publish(r.buildID, saved)
}

var stepPlatform = regexp.MustCompile(`^\[([a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9.]+)?)[ \]]`)

func (r *recorder) step(digest string) *builds.Step {
	s := r.byDigest[digest]
	if s == nil {
		s = &builds.Step{Digest: digest, Number: len(r.steps) + 1, Node: r.node}
		if node, _, ok := strings.Cut(digest, "/"); ok {
			s.Node = node
		}
		r.byDigest[digest] = s
		r.steps = append(r.steps, s)
	}
	return s
}

// stepAt is the step recorded under key, or nil.
func (r *recorder) stepAt(key string) *builds.Step { return r.byDigest[key] }

// stepsOn lists the steps that ran on node (all of them for a one-node build).
func (r *recorder) stepsOn(node string, multi bool) []*builds.Step {
	if !multi {
		return r.steps
	}
	var out []*builds.Step
	for _, s := range r.steps {
		if s.Node == node {
			out = append(out, s)
		}
	}
	return out
}

// apply folds one status update into the recorder's state, appending the
// events it makes. Within one update, steps that start come first, then log
// lines, then steps that finish, so a step's output precedes its DONE.
func (r *recorder) apply(st *client.SolveStatus, events []builds.Event, changed map[string]bool) ([]builds.Event, map[string]bool) {
	if changed == nil {
		changed = map[string]bool{}
	}
	var finishing []*client.Vertex
	for _, v := range st.Vertexes {
		if v.Completed != nil {
			finishing = append(finishing, v)
			continue
		}
		events = r.updateStep(v, events, changed)
	}
	for _, l := range st.Logs {
		events = r.addLog(l, events)
	}
	for _, vs := range st.Statuses {
		if vs.Completed == nil || r.statusSeen[vs.Vertex.String()+vs.ID] {
			continue
		}
		r.statusSeen[vs.Vertex.String()+vs.ID] = true
		s := r.step(vs.Vertex.String())
		events = append(events, builds.NewEvent(builds.EventLog, builds.LogEvent{
			Step: s.Digest, Number: s.Number, Stream: 0, Elapsed: -1, Text: statusText(vs), At: vs.Timestamp.UTC(),
		}))
	}
	for _, w := range st.Warnings {
		s := r.step(w.Vertex.String())
		we := builds.WarningEvent{Step: s.Digest, Number: s.Number, Short: string(w.Short), URL: w.URL}
		if len(w.Detail) > 0 {
			we.Detail = string(bytes.Join(w.Detail, []byte("\n")))
		}
		if len(w.Range) > 0 && w.Range[0].Start != nil {
			we.Line = int(w.Range[0].Start.Line)
		}
		events = append(events, builds.NewEvent(builds.EventWarning, we))
	}
	for _, v := range finishing {
		events = r.flushPartial(r.step(v.Digest.String()), events, v.Completed.UTC())
		events = r.updateStep(v, events, changed)
	}
	return events, changed
}

func (r *recorder) updateStep(v *client.Vertex, events []builds.Event, changed map[string]bool) []builds.Event {
	s := r.step(v.Digest.String())
	next := *s
	next.Name = v.Name
	if m := stepPlatform.FindStringSubmatch(v.Name); m != nil {
		if p, err := builds.ParsePlatform(m[1]); err == nil {
			next.Platform = p
		}
	}
	next.Cached = v.Cached
	next.StartedAt = utcPtr(v.Started)
	next.FinishedAt = utcPtr(v.Completed)
	next.Error = v.Error
	if sameStep(*s, next) {
		return events
	}
	*s = next
	changed[s.Digest] = true
	at := time.Now().UTC()
	if s.FinishedAt != nil {
		at = *s.FinishedAt
	} else if s.StartedAt != nil {
		at = *s.StartedAt
	}
	return append(events, builds.NewEvent(builds.EventStep, builds.StepEvent{Step: *s, At: at}))
}

func sameStep(a, b builds.Step) bool {
	return a.Name == b.Name && a.Platform == b.Platform && a.Cached == b.Cached && a.Error == b.Error &&
		timeEq(a.StartedAt, b.StartedAt) && timeEq(a.FinishedAt, b.FinishedAt)
}

func timeEq(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func (r *recorder) addLog(l *client.VertexLog, events []builds.Event) []builds.Event {
	s := r.step(l.Vertex.String())
	key := logKey{s.Digest, l.Stream}
	buf := append(r.partial[key], l.Data...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		events = r.logLine(s, l.Stream, buf[:i], l.Timestamp.UTC(), events)
		buf = buf[i+1:]
	}
	if len(buf) > maxLogLine { // a line without end: cut it here
		events = r.logLine(s, l.Stream, buf, l.Timestamp.UTC(), events)
		buf = nil
	}
	if len(buf) == 0 {
		delete(r.partial, key)
	} else {
		r.partial[key] = bytes.Clone(buf)
	}
	return events
}

func (r *recorder) flushPartial(s *builds.Step, events []builds.Event, at time.Time) []builds.Event {
	for _, stream := range []int{1, 2} {
		key := logKey{s.Digest, stream}
		if buf := r.partial[key]; len(buf) > 0 {
			events = r.logLine(s, stream, buf, at, events)
			delete(r.partial, key)
		}
	}
	return events
}

func (r *recorder) logLine(s *builds.Step, stream int, line []byte, at time.Time, events []builds.Event) []builds.Event {
	if r.truncated {
		return events
	}
	line = bytes.TrimRight(line, "\r")
	if len(line) > maxLogLine {
		line = append(line[:maxLogLine:maxLogLine], " …(line cut)"...)
	}
	r.logBytes += int64(len(line))
	text := strings.ToValidUTF8(string(line), "\uFFFD")
	if r.logBytes > maxLogBytes {
		r.truncated = true
		text = fmt.Sprintf("(output past %d MiB is not kept)", maxLogBytes>>20)
	}
	elapsed := -1.0
	if s.StartedAt != nil {
		elapsed = at.Sub(*s.StartedAt).Seconds()
	}
	return append(events, builds.NewEvent(builds.EventLog, builds.LogEvent{Step: s.Digest, Number: s.Number, Stream: stream, Elapsed: elapsed, Text: text, At: at}))
}

// statusText formats a finished progress status the way buildctl's plain output does.
func statusText(vs *client.VertexStatus) string {
	var b strings.Builder
	b.WriteString(vs.ID)
	if vs.Total != 0 {
		fmt.Fprintf(&b, " %s / %s", humanSize(vs.Current), humanSize(vs.Total))
	} else if vs.Current != 0 {
		fmt.Fprintf(&b, " %s", humanSize(vs.Current))
	}
	if vs.Started != nil && vs.Completed != nil {
		fmt.Fprintf(&b, " %.1fs", vs.Completed.Sub(*vs.Started).Seconds())
	}
	b.WriteString(" done")
	return b.String()
}

// humanSize prints bytes in decimal units, as buildctl does (1.07MB).
func humanSize(n int64) string {
	f := float64(n)
	for _, u := range []string{"B", "kB", "MB", "GB", "TB"} {
		if f < 1000 || u == "TB" {
			if u == "B" {
				return fmt.Sprintf("%dB", n)
			}
			return fmt.Sprintf("%.2f%s", f, u)
		}
		f /= 1000
	}
	return fmt.Sprintf("%dB", n)
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// ownSteps shows Manifold's own work on a build (pushing it, copying its
// result into the store) as steps of its log, through the recorder as
// BuildKit's steps go.
type ownSteps struct {
	ch   chan *client.SolveStatus
	done chan struct{}
}

// own starts recording Manifold's own steps; close ends it.
func (r *recorder) own() *ownSteps {
	s := &ownSteps{ch: make(chan *client.SolveStatus, 16), done: make(chan struct{})}
	go func() { defer close(s.done); r.run(s.ch) }()
	return s
}

// start begins step name (keyed by vertex); the function it returns ends it,
// with the error it failed with or "".
func (s *ownSteps) start(vertex digest.Digest, name string) (end func(errMsg string)) {
	started := time.Now()
	s.ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: vertex, Name: name, Started: &started}}}
	return func(errMsg string) {
		completed := time.Now()
		s.ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: vertex, Name: name, Started: &started, Completed: &completed, Error: errMsg}}}
	}
}

// item records one finished piece of a step (a blob pushed or copied).
func (s *ownSteps) item(vertex digest.Digest, id string, size int64) {
	now := time.Now()
	s.ch <- &client.SolveStatus{Statuses: []*client.VertexStatus{{
		ID: id, Vertex: vertex, Current: size, Total: size, Timestamp: now, Started: &now, Completed: &now,
	}}}
}

// close waits until every step is recorded.
func (s *ownSteps) close() { close(s.ch); <-s.done }
