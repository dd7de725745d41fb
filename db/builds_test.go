package db

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"manifold/builds"
)

func openTest(t *testing.T) *Builds {
	t.Helper()
	d, err := Open(context.Background(), filepath.Join(t.TempDir(), "manifold.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return NewBuilds(d)
}

func newBuild(t *testing.T, s *Builds, at time.Time) *builds.Build {
	t.Helper()
	id := builds.NewID(at)
	b := &builds.Build{ID: id, Status: builds.StatusQueued, Platforms: []string{"linux/amd64", "linux/arm64"},
		CreatedAt: at, Dockerfile: "FROM busybox:1\n", Ref: id,
		Options: builds.Options{BuildArgs: map[string]string{"A": "1"}, Labels: map[string]string{}}}
	if err := s.CreateBuild(context.Background(), b, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMigrationsAreRecordedOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for range 2 {
		d, err := Open(ctx, filepath.Join(dir, "m.db"))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := d.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		entries, _ := migrations.ReadDir("migrations")
		if n != len(entries) || n < 4 {
			t.Fatalf("schema_migrations has %d rows, want one per migration (%d)", n, len(entries))
		}
		var fk, timeout int
		var mode string
		_ = d.QueryRow(`PRAGMA foreign_keys`).Scan(&fk)
		_ = d.QueryRow(`PRAGMA busy_timeout`).Scan(&timeout)
		_ = d.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
		if fk != 1 || timeout != 10000 || mode != "wal" {
			t.Fatalf("pragmas foreign_keys=%d busy_timeout=%d journal_mode=%s", fk, timeout, mode)
		}
		d.Close()
	}
}

func TestBuildLifecycle(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Now().UTC()
	b := newBuild(t, s, now)

	ok, started, err := s.StartBuild(ctx, b.ID, now.Add(time.Second), builds.StartEvents(now.Add(time.Second)))
	if err != nil || !ok || len(started) != 1 || started[0].Seq != 1 || started[0].Type != builds.EventStatus {
		t.Fatalf("StartBuild = %v, %+v, %v", ok, started, err)
	}
	if ok, _, _ := s.StartBuild(ctx, b.ID, now, builds.StartEvents(now)); ok {
		t.Fatal("a running build was started twice")
	}
	t0 := now.Add(2 * time.Second)
	steps := []builds.Step{{Number: 1, Digest: "sha256:a", Name: "[linux/amd64 1/2] FROM busybox", Platform: "linux/amd64", StartedAt: &t0}}
	if _, err := s.Record(ctx, b.ID, nil, steps); err != nil {
		t.Fatal(err)
	}
	steps[0].FinishedAt, steps[0].Cached = &t0, true
	steps = append(steps, builds.Step{Number: 2, Digest: "sha256:b", Name: "exporting", Error: "boom"})
	logs := []builds.Event{
		builds.NewEvent(builds.EventLog, builds.LogEvent{Step: "sha256:a", Number: 1, Stream: 1, Text: "hello"}),
		builds.NewEvent(builds.EventLog, builds.LogEvent{Step: "sha256:a", Number: 1, Stream: 2, Text: "world"}),
	}
	saved, err := s.Record(ctx, b.ID, logs, steps)
	if err != nil || len(saved) != 2 || saved[0].Seq != 2 || saved[1].Seq != 3 {
		t.Fatalf("Record = %+v, %v; want seq 2 and 3", saved, err)
	}
	res := builds.Result{Status: builds.StatusSucceeded, IndexDigest: "sha256:idx", Manifests: []builds.Manifest{
		{Platform: "linux/amd64", Digest: "sha256:m1", ConfigDigest: "sha256:c1", Size: 481, ImageSize: 1000, MediaType: "application/vnd.oci.image.manifest.v1+json"},
		{Platform: "linux/arm64", Digest: "sha256:m2", ConfigDigest: "sha256:c2", Size: 482, ImageSize: 900, MediaType: "application/vnd.oci.image.manifest.v1+json"},
	}}
	at := now.Add(time.Second)
	done, err := s.FinishBuild(ctx, b.ID, now.Add(3*time.Second), res, builds.FinishEvents(res, &at, now.Add(3*time.Second)))
	if err != nil || len(done) != 2 || done[1].Type != builds.EventDone || done[1].Seq != 5 {
		t.Fatalf("FinishBuild = %+v, %v", done, err)
	}
	got, err := s.GetBuild(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != builds.StatusSucceeded || got.IndexDigest != "sha256:idx" || len(got.Manifests) != 2 ||
		got.Manifests[1].Platform != "linux/arm64" || got.Manifests[1].Size != 482 || got.Manifests[0].ConfigDigest != "sha256:c1" {
		t.Fatalf("unexpected build %+v", got)
	}
	if len(got.Steps) != 2 || !got.Steps[0].Cached || got.Steps[0].FinishedAt == nil || got.Steps[1].Error != "boom" {
		t.Fatalf("unexpected steps %+v", got.Steps)
	}
	if got.Options.BuildArgs["A"] != "1" || got.StartedAt == nil || !got.StartedAt.Equal(now.Add(time.Second)) {
		t.Fatalf("options or times not kept: %+v", got)
	}
	events, err := s.Events(ctx, b.ID, 1, 100)
	if err != nil || len(events) != 4 || events[0].Seq != 2 || events[3].Type != builds.EventDone {
		t.Fatalf("events after 1 = %+v, %v", events, err)
	}
	if page, _ := s.Events(ctx, b.ID, 0, 2); len(page) != 2 || page[1].Seq != 2 {
		t.Fatalf("a page of 2 events = %+v", page)
	}
	if got.Steps[0].Number != 1 || got.Steps[1].Number != 2 {
		t.Fatalf("step numbers %+v", got.Steps)
	}
	if _, err := s.GetBuild(ctx, builds.NewID(now)); builds.ErrorKind(err) != builds.ENotFound {
		t.Fatalf("missing build: error %v, want not found", err)
	}
}

func TestListBuildsKeysetPaging(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	start := time.Now().UTC()
	var ids []string
	for i := range 7 {
		ids = append(ids, newBuild(t, s, start.Add(time.Duration(i)*time.Millisecond)).ID)
	}
	var seen []string
	before := ""
	for page := 0; ; page++ {
		list, err := s.ListBuilds(ctx, builds.ListOptions{Limit: 3, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range list {
			seen = append(seen, b.ID)
			if len(b.Platforms) != 2 || b.Manifests == nil || b.Steps == nil {
				t.Fatalf("list item incomplete: %+v", b)
			}
		}
		if len(list) < 3 {
			break
		}
		before = list[len(list)-1].ID
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 7 {
		t.Fatalf("saw %d builds over the pages, want 7", len(seen))
	}
	for i := range seen {
		if seen[i] != ids[len(ids)-1-i] {
			t.Fatalf("page order %v, want newest first %v", seen, ids)
		}
	}
}

func TestUnfinished(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Now().UTC()
	running := newBuild(t, s, now)
	queued1 := newBuild(t, s, now.Add(time.Millisecond))
	queued2 := newBuild(t, s, now.Add(2*time.Millisecond))
	done := newBuild(t, s, now.Add(3*time.Millisecond))
	if ok, _, err := s.StartBuild(ctx, running.ID, now, builds.StartEvents(now)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	res := builds.Result{Status: builds.StatusFailed, Error: "x"}
	if _, err := s.FinishBuild(ctx, done.ID, now, res, builds.FinishEvents(res, nil, now)); err != nil {
		t.Fatal(err)
	}
	run, queued, err := s.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(run) != 1 || run[0] != running.ID || len(queued) != 2 || queued[0] != queued1.ID || queued[1] != queued2.ID {
		t.Fatalf("Unfinished = %v, %v; want the running one and the two queued oldest first", run, queued)
	}
}
