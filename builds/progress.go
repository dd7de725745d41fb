package builds

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
)

// flushEvery is how often recorded steps and log lines are written to the store.
const flushEvery = 200 * time.Millisecond

// recorder turns BuildKit's SolveStatus stream into steps and plain-text log
// lines (the same text `buildctl --progress=plain` prints) and persists them.
type recorder struct {
	store   Store
	buildID string
	log     *slog.Logger

	mu      sync.Mutex
	steps   []*Step
	byDig   map[string]*Step
	dirty   bool
	lines   []LogLine
	partial []byte
	seq     int64
}

func newRecorder(store Store, buildID string, log *slog.Logger) *recorder {
	return &recorder{store: store, buildID: buildID, log: log, byDig: map[string]*Step{}}
}

// run consumes ch until it is closed, then writes what is left. Only a
// background context is used for the final writes: a cancelled build still
// keeps its log.
func (r *recorder) run(ch chan *client.SolveStatus) {
	display, err := progressui.NewDisplay(r, progressui.PlainMode)
	if err != nil {
		r.log.Error("progress display", "err", err)
		for range ch {
		}
		return
	}
	plain := make(chan *client.SolveStatus, 16)
	displayDone := make(chan struct{})
	go func() {
		defer close(displayDone)
		_, _ = display.UpdateFrom(context.Background(), plain)
	}()

	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for open := true; open; {
		select {
		case st, ok := <-ch:
			if !ok {
				open = false
				break
			}
			r.track(st)
			plain <- st
		case <-tick.C:
			r.flush()
		}
	}
	close(plain)
	<-displayDone
	r.mu.Lock()
	if len(r.partial) > 0 {
		r.addLine(string(r.partial))
		r.partial = nil
	}
	r.mu.Unlock()
	r.flush()
}

// Write receives the plain display's output and cuts it into lines.
func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.partial = append(r.partial, p...)
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			break
		}
		r.addLine(string(r.partial[:i]))
		r.partial = r.partial[i+1:]
	}
	return len(p), nil
}

func (r *recorder) addLine(s string) {
	r.seq++
	r.lines = append(r.lines, LogLine{Seq: r.seq, Time: time.Now().UTC(), Text: s})
}

var stepPlatform = regexp.MustCompile(`^\[([a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9.]+)?)[ \]]`)

func (r *recorder) track(st *client.SolveStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range st.Vertexes {
		d := v.Digest.String()
		s := r.byDig[d]
		if s == nil {
			s = &Step{Digest: d}
			r.byDig[d] = s
			r.steps = append(r.steps, s)
		}
		s.Name = v.Name
		if m := stepPlatform.FindStringSubmatch(v.Name); m != nil {
			if p, err := ParsePlatform(m[1]); err == nil {
				s.Platform = p
			}
		}
		s.Cached = v.Cached
		s.StartedAt = utcPtr(v.Started)
		s.FinishedAt = utcPtr(v.Completed)
		s.Error = v.Error
		r.dirty = true
	}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func (r *recorder) flush() {
	r.mu.Lock()
	lines := r.lines
	r.lines = nil
	var steps []Step
	if r.dirty {
		steps = make([]Step, len(r.steps))
		for i, s := range r.steps {
			steps[i] = *s
		}
		r.dirty = false
	}
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(lines) > 0 {
		if err := r.store.AppendLog(ctx, r.buildID, lines); err != nil {
			r.log.Error("save log lines", "build_id", r.buildID, "err", err)
		}
	}
	if steps != nil {
		if err := r.store.SaveSteps(ctx, r.buildID, steps); err != nil {
			r.log.Error("save steps", "build_id", r.buildID, "err", err)
		}
	}
}
