package builds

import (
	"encoding/json"
	"sync"
	"time"
)

// EventType names what an Event carries; the SSE stream uses it as the event name.
type EventType string

// Event types, in the order a build emits them: status (running), steps, log
// lines and warnings as they come, status (final), done.
const (
	EventStep    EventType = "step"
	EventLog     EventType = "log"
	EventWarning EventType = "warning"
	EventStatus  EventType = "status"
	EventDone    EventType = "done"
	// EventPing is never stored: Watch hands it out when the stream was idle,
	// so the transport can send a keep-alive.
	EventPing EventType = "ping"
	// EventOpen is never stored either: Watch hands it out first, once the
	// build is known, so the transport can start its answer.
	EventOpen EventType = "open"
)

// Event is one persisted happening of a build. Seq counts from 1 per build
// and is the SSE event id.
type Event struct {
	Seq  int64           `json:"seq"`
	Type EventType       `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
	// Step is the #N of the step a log line or warning belongs to, 0 for other events.
	Step int `json:"-"`
}

// LogEvent is one line of a step's output.
type LogEvent struct {
	Step   string `json:"step"`   // the step's digest
	Number int    `json:"number"` // the step's #N
	// Stream is 1 for stdout, 2 for stderr, 0 for BuildKit's own progress lines.
	Stream int `json:"stream"`
	// Elapsed is seconds since the step started, as buildctl prints it; negative when unknown.
	Elapsed float64 `json:"elapsed"`
	Text    string  `json:"text"`
	// At is when BuildKit produced the line.
	At time.Time `json:"at"`
}

// StepEvent is a step's new state.
type StepEvent struct {
	Step
	// At is the BuildKit time of the change: the step's finish, else its start.
	At time.Time `json:"at"`
}

// WarningEvent is a warning BuildKit raised, such as a Dockerfile lint.
type WarningEvent struct {
	Step   string `json:"step"`
	Number int    `json:"number"`
	Short  string `json:"short"`
	Detail string `json:"detail,omitempty"`
	URL    string `json:"url,omitempty"`
	Line   int    `json:"line,omitempty"`
}

// StatusEvent is a change of the build's status.
type StatusEvent struct {
	Status     Status     `json:"status"`
	Error      string     `json:"error,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// NewEvent encodes data into an Event of type t, stamped now.
func NewEvent(t EventType, data any) Event {
	b, err := json.Marshal(data)
	if err != nil {
		b = []byte("null") // the payloads above always encode
	}
	e := Event{Type: t, Time: time.Now().UTC(), Data: b}
	switch d := data.(type) {
	case LogEvent:
		e.Step = d.Number
	case WarningEvent:
		e.Step = d.Number
	}
	return e
}

// subBuffer is how many events a watcher may fall behind before it is dropped.
const subBuffer = 512

// Hub fans events out to the watchers of each build. A watcher that falls
// more than subBuffer events behind is dropped (its channel is closed); it
// reconnects and replays from the database, so nothing is lost.
type Hub struct {
	mu     sync.Mutex
	subs   map[string]map[*Subscription]struct{}
	closed bool // shutting down: every subscription ends, new ones at once
}

// Subscription receives one build's events until it is dropped or cancelled.
type Subscription struct {
	C       chan Event
	buildID string
	closed  bool
}

// NewHub returns an empty Hub.
func NewHub() *Hub { return &Hub{subs: map[string]map[*Subscription]struct{}{}} }

// Subscribe starts receiving buildID's events.
func (h *Hub) Subscribe(buildID string) *Subscription {
	s := &Subscription{C: make(chan Event, subBuffer), buildID: buildID}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.closed = true
		close(s.C)
		return s
	}
	if h.subs[buildID] == nil {
		h.subs[buildID] = map[*Subscription]struct{}{}
	}
	h.subs[buildID][s] = struct{}{}
	return s
}

// Unsubscribe stops s; it is safe to call more than once.
func (h *Hub) Unsubscribe(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drop(s)
}

func (h *Hub) drop(s *Subscription) {
	if s.closed {
		return
	}
	s.closed = true
	close(s.C)
	delete(h.subs[s.buildID], s)
	if len(h.subs[s.buildID]) == 0 {
		delete(h.subs, s.buildID)
	}
}

// Publish hands persisted events to every watcher of buildID without blocking.
func (h *Hub) Publish(buildID string, events []Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[buildID] {
		for _, e := range events {
			select {
			case s.C <- e:
			default:
				h.drop(s) // too slow: it replays from the database when it comes back
			}
			if s.closed {
				break
			}
		}
	}
}

// StartEvents are what starting a build records: its running status.
func StartEvents(at time.Time) []Event {
	return []Event{NewEvent(EventStatus, StatusEvent{Status: StatusRunning, StartedAt: &at})}
}

// FinishEvents are what finishing a build records: its final status, then done.
func FinishEvents(r Result, startedAt *time.Time, at time.Time) []Event {
	st := StatusEvent{Status: r.Status, Error: r.Error, StartedAt: startedAt, FinishedAt: &at}
	return []Event{NewEvent(EventStatus, st), NewEvent(EventDone, st)}
}

// Close ends every subscription, and any made later at once: when the
// server shuts down, event streams end instead of holding it up. Their
// clients reconnect with Last-Event-ID to the next process.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, subs := range h.subs {
		for s := range subs {
			h.drop(s)
		}
	}
}

// Watchers counts the current subscriptions of buildID.
func (h *Hub) Watchers(buildID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[buildID])
}
