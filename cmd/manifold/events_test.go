package main

import (
	"bufio"
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"manifold/builds"
	"manifold/builds/buildkittest"
	"manifold/db"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id         int64
	name, data string
}

// readSSE reads events until done (or the stream ends), with a deadline.
func readSSE(t *testing.T, url, lastID string, stopAfter int) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" {
				out = append(out, cur)
				if cur.name == "done" || (stopAfter > 0 && len(out) >= stopAfter) {
					return out
				}
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id, _ = strconv.ParseInt(line[4:], 10, 64)
		case strings.HasPrefix(line, "event: "):
			cur.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		}
	}
	return out
}

func TestEventsReplayWithLastEventID(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	id := a.startBuild(t, map[string]any{
		"dockerfile": "FROM busybox:1\nRUN for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done\n",
		"platforms":  []string{"linux/amd64"}, "no_cache": true,
	})
	// Live: follow from the start until done.
	live := readSSE(t, a.URL+"/api/v1/builds/"+id+"/events", "", 0)
	if len(live) < 5 || live[len(live)-1].name != "done" {
		t.Fatalf("live stream ended without done: %+v", live)
	}
	var names []string
	for i, e := range live {
		if e.id != int64(i+1) {
			t.Fatalf("event %d has id %d; ids must count from 1 without gaps", i, e.id)
		}
		names = append(names, e.name)
	}
	joined := strings.Join(names, " ")
	for _, want := range []string{"status", "step", "log", "done"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("stream lacks %s events: %s", want, joined)
		}
	}
	var lines int
	for _, e := range live {
		if e.name == "log" && strings.Contains(e.data, `"text":"line `) {
			lines++
		}
	}
	if lines != 5 {
		t.Fatalf("saw %d of the 5 output lines", lines)
	}
	// Replay after event k gives exactly the rest, from the database.
	k := len(live) / 2
	rest := readSSE(t, a.URL+"/api/v1/builds/"+id+"/events", strconv.FormatInt(live[k-1].id, 10), 0)
	if len(rest) != len(live)-k {
		t.Fatalf("replay after id %d gave %d events, want %d", live[k-1].id, len(rest), len(live)-k)
	}
	for i, e := range rest {
		if e != live[k+i] {
			t.Fatalf("replayed event %+v differs from live %+v", e, live[k+i])
		}
	}
	// Past the end: only done, so the client stops.
	end := readSSE(t, a.URL+"/api/v1/builds/"+id+"/events", strconv.FormatInt(live[len(live)-1].id, 10), 0)
	if len(end) != 1 || end[0].name != "done" {
		t.Fatalf("after the last id: %+v", end)
	}
	code, body := a.do(t, "GET", "/api/v1/builds/"+id+"/events", "")
	_ = body
	if code != 200 {
		t.Fatalf("events of a finished build = %d", code)
	}
	resp, err := http.Get(a.URL + "/api/v1/builds/" + id + "/events?after=abc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("bad Last-Event-ID = %d, want 400", resp.StatusCode)
	}
}

func TestRestartInterruptsRunningAndRunsQueued(t *testing.T) {
	data := t.TempDir()
	// A previous process left one build running and one queued.
	d, err := db.Open(context.Background(), filepath.Join(data, "manifold.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := db.NewBuilds(d)
	now := time.Now().UTC()
	mk := func(at time.Time) string {
		id := builds.NewID(at)
		if err := store.CreateBuild(context.Background(), &builds.Build{ID: id, Status: builds.StatusQueued, Platforms: []string{"linux/amd64"},
			CreatedAt: at, Dockerfile: example, Ref: id, Options: builds.Options{Context: builds.Source{Type: "none"}}}, nil); err != nil {
			t.Fatal(err)
		}
		return id
	}
	running, queued := mk(now), mk(now.Add(time.Millisecond))
	if ok, _, err := store.StartBuild(context.Background(), running, now, builds.StartEvents(now)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	d.Close()

	a := startApp(t, data, "--buildkit", env.Addr())
	r := a.wait(t, running)
	if r.Status != builds.StatusInterrupted || !strings.Contains(r.Error, "stopped while the build was running") {
		t.Fatalf("left-running build: %s %q", r.Status, r.Error)
	}
	// Its stream says so and ends: the Service recorded the status and done events.
	if code, body := a.do(t, "GET", "/api/v1/builds/"+running+"/events", ""); code != 200 ||
		!strings.Contains(string(body), "event: done") || !strings.Contains(string(body), `"interrupted"`) {
		t.Fatalf("events of the interrupted build = %d:\n%s", code, body)
	}
	if q := a.wait(t, queued); q.Status != builds.StatusSucceeded {
		t.Fatalf("left-queued build: %s %q", q.Status, q.Error)
	}
	// A build running when manifold stops is interrupted, not lost.
	id := a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN sleep 30\n", "platforms": []string{"linux/amd64"}, "no_cache": true})
	waitStatus(t, a, id, builds.StatusRunning)
	a.stop()
	b := startApp(t, data, "--buildkit", env.Addr())
	if got := b.wait(t, id); got.Status != builds.StatusInterrupted {
		t.Fatalf("build running at shutdown: %s %q", got.Status, got.Error)
	}
}

func waitStatus(t *testing.T, a *app, id string, want builds.Status) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		// The build's own status: placements carry a status of their own.
		if getBuild(t, a, id).Status == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("build %s never reached %s", id, want)
}

func TestBuildkitdKilledMidBuild(t *testing.T) {
	own, err := buildkittest.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	a := startApp(t, "", "--buildkit", own.Addr())
	id := a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN sleep 60\n", "platforms": []string{"linux/amd64"}, "no_cache": true})
	waitStatus(t, a, id, builds.StatusRunning)
	time.Sleep(500 * time.Millisecond) // into the RUN step
	if err := syscall.Kill(own.Daemon.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	b := a.wait(t, id)
	if b.Status != builds.StatusFailed || !strings.Contains(b.Error, "builder was lost") {
		t.Fatalf("build after buildkitd died: %s %q", b.Status, b.Error)
	}
	t.Logf("failed %.1fs after the kill: %s", time.Since(killed).Seconds(), b.Error)
	// The supervisor brings the daemon back and builds work again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := a.do(t, "GET", "/healthz", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("buildkitd did not come back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64"}})); b.Status != builds.StatusSucceeded {
		t.Fatalf("build after the restart: %s %q", b.Status, b.Error)
	}
}
