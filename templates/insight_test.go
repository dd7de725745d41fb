package templates

import (
	"strings"
	"testing"
	"time"

	"manifold/builds"
)

func at(base time.Time, ms int) *time.Time {
	t := base.Add(time.Duration(ms) * time.Millisecond)
	return &t
}

// twoPlatformBuild is an archfile-style build: the same RUN for amd64
// (native) and arm64 (emulated, 8× slower), a cached FROM, and a shared step.
func twoPlatformBuild() *builds.Build {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	return &builds.Build{
		ID: "b1", Status: builds.StatusSucceeded, Platforms: []string{"linux/amd64", "linux/arm64"},
		StartedAt: at(t0, 0), FinishedAt: at(t0, 10_000),
		Dockerfile: "FROM golang:1.23\nRUN go build -o /app .\n",
		Placements: []builds.Placement{{Platform: "linux/amd64", Node: "n"}, {Platform: "linux/arm64", Node: "n", Emulated: true}},
		Steps: []builds.Step{
			{Number: 1, Name: "[internal] load build definition from Dockerfile", StartedAt: at(t0, 0), FinishedAt: at(t0, 50)},
			{Number: 2, Name: "[linux/amd64 1/2] FROM docker.io/library/golang:1.23", Platform: "linux/amd64", Cached: true, StartedAt: at(t0, 100), FinishedAt: at(t0, 100)},
			{Number: 3, Name: "[linux/arm64 1/2] FROM docker.io/library/golang:1.23", Platform: "linux/arm64", Cached: true, StartedAt: at(t0, 100), FinishedAt: at(t0, 100)},
			{Number: 4, Name: "[linux/amd64 2/2] RUN go build -o /app .", Platform: "linux/amd64", StartedAt: at(t0, 200), FinishedAt: at(t0, 1200)},
			{Number: 5, Name: "[linux/arm64 2/2] RUN go build -o /app .", Platform: "linux/arm64", StartedAt: at(t0, 200), FinishedAt: at(t0, 8200)},
		},
	}
}

func TestTimeline(t *testing.T) {
	b := twoPlatformBuild()
	tl := BuildTimeline(b, time.Now())
	if tl == nil || len(tl.Bars) != 5 || len(tl.Lanes) != 3 || tl.Lanes[2].Label != "shared" {
		t.Fatalf("timeline %+v", tl)
	}
	byStep := map[int]TimelineBar{}
	for _, bar := range tl.Bars {
		byStep[bar.Number] = bar
	}
	if c := byStep[3].Class; c != "cached emulated" {
		t.Errorf("cached arm64 FROM: class %q", c)
	}
	if c := byStep[5].Class; c != "emulated" || !strings.Contains(byStep[5].Title, "8.0s, emulated") {
		t.Errorf("arm64 RUN: class %q title %q", c, byStep[5].Title)
	}
	if byStep[4].Class != "" || byStep[4].Y == byStep[5].Y {
		t.Errorf("amd64 RUN: class %q, on the arm64 lane %v", byStep[4].Class, byStep[4].Y == byStep[5].Y)
	}
	// The 8 s bar is 8 times the 1 s one, within rounding.
	if r := float64(byStep[5].W) / float64(byStep[4].W); r < 7.8 || r > 8.2 {
		t.Errorf("bar widths %d and %d", byStep[5].W, byStep[4].W)
	}
	if tl.Wall != 10*time.Second || tl.Summed != 9050*time.Millisecond {
		t.Errorf("wall %v summed %v", tl.Wall, tl.Summed)
	}
	if len(tl.Cache) != 2 || tl.Cache[0].Platform != "linux/amd64" || tl.Cache[0].Percent() != 50 {
		t.Errorf("cache hits %+v", tl.Cache)
	}
	b.Steps[4].Error, b.Steps[4].FinishedAt = "exit code 1", nil
	tl = BuildTimeline(b, *b.FinishedAt)
	for _, bar := range tl.Bars {
		if bar.Number == 5 && bar.Class != "failed emulated" {
			t.Errorf("failed step class %q", bar.Class)
		}
	}
	if BuildTimeline(&builds.Build{}, time.Now()) != nil {
		t.Error("a build without steps has a timeline")
	}
}

func TestEmulationAndAdvice(t *testing.T) {
	b := twoPlatformBuild()
	e := BuildEmulation(b)
	if e == nil || len(e.Rows) != 1 || e.Rows[0].Step != "[2/2] RUN go build -o /app ." {
		t.Fatalf("emulation %+v", e)
	}
	row := e.Rows[0]
	if row.Fastest() != "linux/amd64" || row.Platforms[1].RatioText(row.Fastest()) != "8.0× linux/amd64" || !row.Platforms[1].Emulated {
		t.Errorf("row %+v", row)
	}
	if e.Lost != 7*time.Second || e.RunShare < 0.85 {
		t.Errorf("lost %v share %.2f", e.Lost, e.RunShare)
	}
	a := BuildAdvice(b, e)
	if a == nil || a.Toolchain != "Go" || !strings.Contains(a.Snippet, "--platform=$BUILDPLATFORM") || a.Saving != 7*time.Second {
		t.Fatalf("advice %+v", a)
	}
	// A build whose emulated RUN steps are a small share gets no advice.
	b.Steps[4].FinishedAt = at(*b.Steps[4].StartedAt, 1100)
	b.Steps = append(b.Steps, builds.Step{Number: 6, Name: "exporting to oci image format", StartedAt: at(*b.StartedAt, 1300), FinishedAt: at(*b.StartedAt, 9000)})
	if a := BuildAdvice(b, BuildEmulation(b)); a != nil {
		t.Errorf("advice for a build emulation does not dominate: %+v", a)
	}
	if e := BuildEmulation(&builds.Build{Steps: b.Steps[:1]}); e != nil {
		t.Errorf("emulation rows without two platforms: %+v", e)
	}
}

func TestBuildxCommand(t *testing.T) {
	b := &builds.Build{Platforms: []string{"linux/amd64", "linux/arm64"}, Tags: []string{"r.example/app:1"}, PushWanted: true,
		Options: builds.Options{BuildArgs: map[string]string{"B": "two words", "A": "it's"}, Labels: map[string]string{"x": "1"}, Target: "final", NoCache: true,
			Provenance: "max", Git: &builds.GitSource{URL: "https://g.example/r.git", Ref: "v1", Subdir: "app"}}}
	want := `docker buildx build --platform linux/amd64,linux/arm64 --target final --build-arg 'A=it'\''s' --build-arg 'B=two words' --label x=1 --no-cache --provenance mode=max -t r.example/app:1 --push 'https://g.example/r.git#v1:app'`
	if got := BuildxCommand(b); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	inline := &builds.Build{Platforms: []string{"linux/amd64"}, Dockerfile: "FROM busybox:1\n"}
	if got := BuildxCommand(inline); got != "docker buildx build --platform linux/amd64 - < Dockerfile" {
		t.Errorf("inline: %s", got)
	}
}
