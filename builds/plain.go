package builds

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// PlainLog writes a build's events as `buildctl --progress=plain` prints a
// build: "#N name", "#N 0.123 output", "#N DONE 0.4s", "#N CACHED",
// "#N ERROR: …", with a blank line whenever the output switches steps.
// static/app.js renders the live stream the same way.
type PlainLog struct {
	w       io.Writer
	steps   map[string]*plainStep
	current int
	err     error
}

type plainStep struct {
	Step
	headed, ended bool
}

// NewPlainLog writes to w.
func NewPlainLog(w io.Writer) *PlainLog {
	return &PlainLog{w: w, steps: map[string]*plainStep{}}
}

func (p *PlainLog) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// head makes s the current step: a blank line when the output switches steps,
// then the step's "#N name" line the first time.
func (p *PlainLog) head(s *plainStep) {
	if p.current != s.Number {
		if p.current != 0 {
			p.printf("\n")
		}
		p.current = s.Number
	}
	if !s.headed {
		s.headed = true
		p.printf("#%d %s\n", s.Number, s.Name)
	}
}

// Add writes what one event adds to the log.
func (p *PlainLog) Add(e Event) error {
	switch e.Type {
	case EventStep:
		var se StepEvent
		if err := json.Unmarshal(e.Data, &se); err != nil {
			return fmt.Errorf("step event %d: %w", e.Seq, err)
		}
		s := p.steps[se.Digest]
		if s == nil {
			s = &plainStep{}
			p.steps[se.Digest] = s
		}
		s.Step = se.Step
		if s.FinishedAt == nil && !s.Cached {
			if s.StartedAt != nil && !s.headed {
				p.head(s)
			}
			return p.err
		}
		if s.ended {
			return p.err
		}
		p.head(s)
		s.ended = true
		switch {
		case s.Error != "":
			p.printf("#%d ERROR: %s\n", s.Number, s.Error)
		case s.Cached:
			p.printf("#%d CACHED\n", s.Number)
		case s.StartedAt != nil:
			p.printf("#%d DONE %.1fs\n", s.Number, s.FinishedAt.Sub(*s.StartedAt).Seconds())
		default:
			p.printf("#%d DONE\n", s.Number)
		}
	case EventLog:
		var le LogEvent
		if err := json.Unmarshal(e.Data, &le); err != nil {
			return fmt.Errorf("log event %d: %w", e.Seq, err)
		}
		s := p.steps[le.Step]
		if s == nil {
			s = &plainStep{Step: Step{Digest: le.Step, Number: le.Number}}
			p.steps[le.Step] = s
		}
		p.head(s)
		p.printf("%s\n", le.Plain())
	case EventWarning:
		var we WarningEvent
		if err := json.Unmarshal(e.Data, &we); err != nil {
			return fmt.Errorf("warning event %d: %w", e.Seq, err)
		}
		line := ""
		if we.Line > 0 {
			line = fmt.Sprintf(" (line %d)", we.Line)
		}
		p.printf("\nWARNING: %s%s\n", strings.TrimSpace(we.Short), line)
		p.current = 0
	case EventStatus:
		var st StatusEvent
		if err := json.Unmarshal(e.Data, &st); err != nil {
			return fmt.Errorf("status event %d: %w", e.Seq, err)
		}
		if st.Status.Final() && st.Status != StatusSucceeded {
			if p.current != 0 {
				p.printf("\n")
			}
			p.current = 0
			p.printf("%s: %s\n", strings.ToUpper(string(st.Status)), st.Error)
		}
	}
	return p.err
}

// Plain is the line as buildctl's plain progress prints it: "#N 1.234 text"
// for a step's output, "#N text" for BuildKit's own progress lines.
func (le LogEvent) Plain() string {
	if le.Elapsed >= 0 && le.Stream != 0 {
		return fmt.Sprintf("#%d %.3f %s", le.Number, le.Elapsed, le.Text)
	}
	return fmt.Sprintf("#%d %s", le.Number, le.Text)
}
