package explore

import (
	"testing"
	"time"

	"manifold/builds"
)

func TestTrends(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) *time.Time { x := t0.Add(time.Duration(s) * time.Second); return &x }
	mk := func(id string, st builds.Status, amdSize, armSize int64) *builds.Build {
		return &builds.Build{ID: id, Status: st, Platforms: []string{"linux/amd64", "linux/arm64"}, CreatedAt: t0,
			Manifests: []builds.Manifest{{Platform: "linux/amd64", ImageSize: amdSize}, {Platform: "linux/arm64", ImageSize: armSize}},
			Steps: []builds.Step{
				{Name: "load", StartedAt: at(0), FinishedAt: at(1)},
				{Name: "RUN a", Platform: "linux/amd64", StartedAt: at(1), FinishedAt: at(3)},
				{Name: "RUN a", Platform: "linux/arm64", StartedAt: at(1), FinishedAt: at(9)},
				{Name: "COPY", Platform: "linux/arm64", Cached: true},
			}}
	}
	// Newest first, as the history lists them.
	list := []*builds.Build{
		mk("c", builds.StatusSucceeded, 1<<20, 3<<20), // arm64 jumps from 1 MiB to 3 MiB
		mk("b", builds.StatusFailed, 0, 0),
		mk("a", builds.StatusSucceeded, 1<<20+100, 1<<20),
	}
	tr := Trends("team/app:v1", list)
	if len(tr.Builds) != 3 || tr.Builds[0].ID != "a" || tr.Builds[2].ID != "c" {
		t.Fatalf("builds oldest first: %+v", tr.Builds)
	}
	if d := tr.Builds[0].Platforms["linux/arm64"].DurationSeconds; d != 9 {
		t.Fatalf("arm64 duration = %v, want 9 (the platform-less step counts)", d)
	}
	if d := tr.Builds[0].Platforms["linux/amd64"].DurationSeconds; d != 3 {
		t.Fatalf("amd64 duration = %v, want 3", d)
	}
	if c := tr.Builds[0].CachePercent; c != 25 {
		t.Fatalf("cache hit = %v, want 25", c)
	}
	if s := tr.Builds[1].Platforms["linux/amd64"].ImageSize; s != 0 {
		t.Fatalf("a failed build has no size, got %d", s)
	}
	if len(tr.Jumps) != 1 || tr.Jumps[0] != (SizeJump{Platform: "linux/arm64", From: "a", To: "c", FromSize: 1 << 20, ToSize: 3 << 20}) {
		t.Fatalf("jumps = %+v, want arm64 a → c only (amd64 changed by 100 bytes)", tr.Jumps)
	}
}
