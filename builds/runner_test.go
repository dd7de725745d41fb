package builds_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"manifold/builds"
	"manifold/db"
)

// fakeSolver stands in for BuildKit: each solve waits until released (or
// cancelled) and says how many ran at once and in which order they started.
type fakeSolver struct {
	mu       sync.Mutex
	started  []string
	running  int
	most     int
	release  chan struct{}
	startedC chan string
}

func (f *fakeSolver) Solve(ctx context.Context, b *builds.Build, _ *slog.Logger) builds.Result {
	f.mu.Lock()
	f.started = append(f.started, b.ID)
	f.running++
	f.most = max(f.most, f.running)
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.running--; f.mu.Unlock() }()
	f.startedC <- b.ID
	select {
	case <-f.release:
		return builds.Result{Status: builds.StatusSucceeded, IndexDigest: "sha256:" + b.ID}
	case <-ctx.Done():
		return builds.Result{Status: builds.StatusFailed, Error: "stopped"}
	}
}

// newFakeRunner is a Runner on a real SQLite database with a fake Solver and
// no BuildKit and no nodes.
func newFakeRunner(t *testing.T, limit int) (*builds.Service, *builds.Runner, *fakeSolver, context.CancelFunc) {
	t.Helper()
	dir := t.TempDir()
	d, err := db.Open(context.Background(), filepath.Join(dir, "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	fake := &fakeSolver{release: make(chan struct{}), startedC: make(chan string, 100)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := builds.NewRunner(builds.RunnerConfig{Store: db.NewBuilds(d), Log: log, Limit: limit, Solver: fake})
	svc := builds.NewService(r, builds.ServiceConfig{WorkDir: dir, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	r.Start(ctx)
	t.Cleanup(func() { cancel(); r.Wait() })
	return svc, r, fake, cancel
}

func waitFinal(t *testing.T, svc *builds.Service, id string) *builds.Build {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := svc.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if b.Status.Final() {
			return b
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("build %s did not finish", id)
	return nil
}

func TestRunnerKeepsOrderAndLimit(t *testing.T) {
	for _, limit := range []int{1, 2} {
		svc, _, fake, _ := newFakeRunner(t, limit)
		ctx := context.Background()
		var ids []string
		for range 6 {
			b, err := svc.Start(ctx, builds.Request{Dockerfile: "FROM busybox:1\n", CreatedBy: "u"})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, b.ID)
		}
		for range 6 {
			<-fake.startedC
			fake.release <- struct{}{}
		}
		for _, id := range ids {
			if b := waitFinal(t, svc, id); b.Status != builds.StatusSucceeded {
				t.Fatalf("%s: %s %s", id, b.Status, b.Error)
			}
		}
		fake.mu.Lock()
		if fake.most > limit {
			t.Fatalf("%d solves ran at once with a limit of %d", fake.most, limit)
		}
		// One worker takes the queue strictly first in, first out (with more,
		// a worker's own database writes may let a later build reach BuildKit first).
		if limit == 1 && strings.Join(fake.started, ",") != strings.Join(ids, ",") {
			t.Fatalf("start order %v, queued %v", fake.started, ids)
		}
		fake.mu.Unlock()
	}
}

func TestRunnerCancelWaitsForTheFinalState(t *testing.T) {
	svc, _, fake, _ := newFakeRunner(t, 1)
	ctx := context.Background()
	running, _ := svc.Start(ctx, builds.Request{Dockerfile: "FROM busybox:1\n", CreatedBy: "u"})
	queued, _ := svc.Start(ctx, builds.Request{Dockerfile: "FROM busybox:1\n", CreatedBy: "u"})
	<-fake.startedC
	b, err := svc.Cancel(ctx, running.ID)
	if err != nil || b.Status != builds.StatusCanceled {
		t.Fatalf("cancel a running build: %v %+v", err, b)
	}
	<-fake.startedC // the queued one starts next
	q, err := svc.Cancel(ctx, queued.ID)
	if err != nil || q.Status != builds.StatusCanceled {
		t.Fatalf("cancel the next build: %v %+v", err, q)
	}
	if _, err := svc.Cancel(ctx, running.ID); builds.ErrorKind(err) != builds.EConflict {
		t.Fatalf("cancel a finished build: %v", err)
	}
}

func TestRunnerShutdownInterrupts(t *testing.T) {
	svc, r, fake, stop := newFakeRunner(t, 1)
	ctx := context.Background()
	b, _ := svc.Start(ctx, builds.Request{Dockerfile: "FROM busybox:1\n", CreatedBy: "u"})
	<-fake.startedC
	stop()
	r.Wait()
	got, err := svc.Get(ctx, b.ID)
	if err != nil || got.Status != builds.StatusInterrupted {
		t.Fatalf("after shutdown: %v %+v", err, got)
	}
}

// TestRunExternal records a build a client runs itself: running at once
// (never queued), its end recorded like any build's, and Cancel reaching
// the follower.
func TestRunExternal(t *testing.T) {
	svc, _, _, _ := newFakeRunner(t, 1)
	ctx := context.Background()
	seen := make(chan *builds.Build, 1)
	done := make(chan error, 1)
	go func() {
		done <- svc.RunExternal(ctx, &builds.Build{Ref: "ref1", Platforms: []string{"linux/amd64"}, CreatedBy: "sam", Via: builds.ViaBuildx},
			func(b *builds.Build) { seen <- b },
			func(ctx context.Context, b *builds.Build) builds.Result {
				<-ctx.Done() // runs until canceled in Manifold
				return builds.Result{Status: builds.StatusFailed, Error: "the client's solve ended"}
			})
	}()
	b := <-seen
	got, err := svc.Get(ctx, b.ID)
	if err != nil || got.Status != builds.StatusRunning || got.Via != builds.ViaBuildx || got.Ref != "ref1" || got.StartedAt == nil {
		t.Fatalf("recorded: %+v %v", got, err)
	}
	if err := got.Rebuildable(); err == nil {
		t.Fatal("a buildx build can be rebuilt")
	}
	c, err := svc.Cancel(ctx, b.ID)
	if err != nil || c.Status != builds.StatusCanceled {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ok := make(chan *builds.Build, 1)
	if err := svc.RunExternal(ctx, &builds.Build{Ref: "ref2", Platforms: []string{"linux/amd64"}, CreatedBy: "sam", Via: builds.ViaBuildx},
		func(b *builds.Build) { ok <- b },
		func(context.Context, *builds.Build) builds.Result {
			return builds.Result{Status: builds.StatusSucceeded, IndexDigest: "sha256:" + strings.Repeat("a", 64)}
		}); err != nil {
		t.Fatal(err)
	}
	if f, _ := svc.Get(ctx, (<-ok).ID); f.Status != builds.StatusSucceeded || f.IndexDigest == "" || f.FinishedAt == nil {
		t.Fatalf("finished: %+v", f)
	}
}
