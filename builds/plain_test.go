package builds

import (
	"strings"
	"testing"
	"time"
)

func TestPlainLogFormat(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) *time.Time { x := t0.Add(time.Duration(ms) * time.Millisecond); return &x }
	a := Step{Number: 1, Digest: "sha256:a", Name: "[internal] load build definition from Dockerfile"}
	b := Step{Number: 2, Digest: "sha256:b", Name: "[linux/arm64 2/2] RUN uname -m"}
	c := Step{Number: 3, Digest: "sha256:c", Name: "[linux/amd64 1/1] FROM busybox", Cached: true}
	aStart, aDone := a, a
	aStart.StartedAt = at(0)
	aDone.StartedAt, aDone.FinishedAt = at(0), at(40)
	bStart, bFail := b, b
	bStart.StartedAt = at(100)
	bFail.StartedAt, bFail.FinishedAt, bFail.Error = at(100), at(600), "exit code: 1"
	events := []Event{
		NewEvent(EventStatus, StatusEvent{Status: StatusRunning}),
		NewEvent(EventStep, StepEvent{Step: aStart}),
		NewEvent(EventLog, LogEvent{Step: a.Digest, Number: 1, Stream: 0, Elapsed: -1, Text: "transferring dockerfile: 56B done"}),
		NewEvent(EventStep, StepEvent{Step: bStart}),
		NewEvent(EventStep, StepEvent{Step: aDone}),
		NewEvent(EventStep, StepEvent{Step: aDone}), // repeated updates print nothing
		NewEvent(EventStep, StepEvent{Step: c}),
		NewEvent(EventLog, LogEvent{Step: b.Digest, Number: 2, Stream: 1, Elapsed: 0.25, Text: "aarch64"}),
		NewEvent(EventStep, StepEvent{Step: bFail}),
		NewEvent(EventStatus, StatusEvent{Status: StatusFailed, Error: "step #2 failed"}),
	}
	var sb strings.Builder
	p := NewPlainLog(&sb)
	for _, e := range events {
		if err := p.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	want := `#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 56B done

#2 [linux/arm64 2/2] RUN uname -m

#1 DONE 0.0s

#3 [linux/amd64 1/1] FROM busybox
#3 CACHED

#2 0.250 aarch64
#2 ERROR: exit code: 1

FAILED: step #2 failed
`
	if sb.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", sb.String(), want)
	}
}
