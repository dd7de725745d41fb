package builds

import (
	"context"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// LogSummary is what a build's page shows of its log before the reader
// opens a step: each step's line count, the warnings, the last lines the
// failing step printed, and the last event's Seq (where a live page's
// event stream picks up).
type LogSummary struct {
	Counts       map[int]int
	LastSeq      int64
	Warnings     []WarningEvent
	FailedOutput []string
}

// failedOutputLines is how many of the failing step's last lines a page shows.
const failedOutputLines = 20

// maxWarnings bounds the warnings a page lists.
const maxWarnings = 200

// LogSummary reads b's log summary without reading its lines.
func (s *Service) LogSummary(ctx context.Context, b *Build) (LogSummary, error) {
	var sum LogSummary
	var err error
	if sum.Counts, sum.LastSeq, err = s.store.LogCounts(ctx, b.ID); err != nil {
		return sum, err
	}
	warnings, err := s.store.StepEvents(ctx, b.ID, EventWarning, -1, 0, maxWarnings, false)
	if err != nil {
		return sum, err
	}
	for _, e := range warnings {
		var we WarningEvent
		if json.Unmarshal(e.Data, &we) == nil {
			sum.Warnings = append(sum.Warnings, we)
		}
	}
	if b.ErrorStep > 0 {
		tail, err := s.store.StepEvents(ctx, b.ID, EventLog, b.ErrorStep, 0, 3*failedOutputLines, true)
		if err != nil {
			return sum, err
		}
		for _, e := range tail {
			var le LogEvent
			if json.Unmarshal(e.Data, &le) == nil && le.Stream != 0 {
				sum.FailedOutput = append(sum.FailedOutput, le.Text)
			}
		}
		if len(sum.FailedOutput) > failedOutputLines {
			sum.FailedOutput = sum.FailedOutput[len(sum.FailedOutput)-failedOutputLines:]
		}
	}
	return sum, nil
}

// LogLine is one line of a step's log, as the build page shows it.
type LogLine struct {
	Seq int64 `json:"seq"`
	LogEvent
}

// maxStepLogPage bounds one page of a step's log.
const maxStepLogPage = 5000

// StepLog reads up to limit lines of step #N's log after the event Seq after.
func (s *Service) StepLog(ctx context.Context, id string, step int, after int64, limit int) ([]LogLine, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	if step < 1 || step > 1_000_000 {
		return nil, CodeErrorf(EInvalid, "invalid_step", "step %d is not a step number (#1, #2, …)", step)
	}
	if after < 0 {
		return nil, CodeErrorf(EInvalid, "invalid_cursor", "after=%d is not an event number", after)
	}
	if limit <= 0 || limit > maxStepLogPage {
		limit = maxStepLogPage
	}
	events, err := s.store.StepEvents(ctx, id, EventLog, step, after, limit, false)
	if err != nil {
		return nil, err
	}
	out := make([]LogLine, 0, len(events))
	for _, e := range events {
		l := LogLine{Seq: e.Seq}
		if json.Unmarshal(e.Data, &l.LogEvent) == nil {
			out = append(out, l)
		}
	}
	return out, nil
}

// SmallLog reads every log line of a build, by step, when it has at most
// limit of them (ok false when it has more): one query for a small log.
func (s *Service) SmallLog(ctx context.Context, id string, limit int) (map[int][]LogLine, bool, error) {
	events, err := s.store.StepEvents(ctx, id, EventLog, -1, 0, limit+1, false)
	if err != nil || len(events) > limit {
		return nil, false, err
	}
	out := map[int][]LogLine{}
	for _, e := range events {
		l := LogLine{Seq: e.Seq}
		if json.Unmarshal(e.Data, &l.LogEvent) == nil {
			out[l.Number] = append(out[l.Number], l)
		}
	}
	return out, true, nil
}

// LogHit is a log line a search found, with its line number in its step.
type LogHit struct {
	LogLine
	Line int `json:"line"`
}

// maxLogHits bounds the hits a search returns (all are counted).
const maxLogHits = 1000

// SearchLog finds the log lines of a build that hold q, in any case.
func (s *Service) SearchLog(ctx context.Context, id, q string) ([]LogHit, int, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, 0, err
	}
	q = strings.TrimSpace(q)
	switch {
	case q == "":
		return nil, 0, CodeErrorf(EInvalid, "invalid_query", "give the text to search for in q=")
	case utf8.RuneCountInString(q) > 200:
		return nil, 0, CodeErrorf(EInvalid, "invalid_query", "q is %d characters; search for at most 200", utf8.RuneCountInString(q))
	}
	matches, total, err := s.store.SearchLog(ctx, id, q, maxLogHits)
	if err != nil {
		return nil, 0, err
	}
	out := make([]LogHit, 0, len(matches))
	for _, m := range matches {
		h := LogHit{LogLine: LogLine{Seq: m.Seq}, Line: m.Line}
		if json.Unmarshal(m.Data, &h.LogEvent) == nil {
			out = append(out, h)
		}
	}
	return out, total, nil
}
