package templates

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"manifold/builds"
)

// Timeline is a build's steps drawn as bars on lanes, one lane per platform
// (and node, when a build ran on several), in SVG coordinates.
type Timeline struct {
	Width, Height int
	Lanes         []TimelineLane
	Bars          []TimelineBar
	Ticks         []TimelineTick
	// Wall is the build's run time; Summed adds up every step's own time
	// (more than Wall when steps ran side by side).
	Wall, Summed time.Duration
	// Cache is each platform's cache hits.
	Cache []CacheHits
}

// TimelineLane is one row of the timeline.
type TimelineLane struct {
	Label string
	Y     int
}

// TimelineBar is one step: where it is drawn, how (classes: cached, failed,
// emulated) and what it says on hover or focus.
type TimelineBar struct {
	X, Y, W, H int
	Class      string
	Title      string
	Number     int
}

// TimelineTick marks a time on the axis.
type TimelineTick struct {
	X     int
	Label string
}

// CacheHits counts a platform's steps found in the cache.
type CacheHits struct {
	Platform      string
	Cached, Steps int
}

// Percent is the share of steps found in the cache.
func (c CacheHits) Percent() int {
	if c.Steps == 0 {
		return 0
	}
	return int(math.Round(100 * float64(c.Cached) / float64(c.Steps)))
}

const (
	timelineLabelW = 170
	timelinePlotW  = 760
	timelineLaneH  = 26
	timelineBarH   = 18
)

// emulatedPlatforms says which of a build's platforms ran under emulation.
func emulatedPlatforms(b *builds.Build) map[string]bool {
	out := map[string]bool{}
	for _, p := range b.Placements {
		out[p.Platform] = p.Emulated
	}
	for _, m := range b.Manifests {
		if m.Node != "" {
			out[m.Platform] = m.Emulated
		}
	}
	return out
}

// BuildTimeline lays out b's steps; nil when no step has run.
func BuildTimeline(b *builds.Build, now time.Time) *Timeline {
	var start, end time.Time
	for _, s := range b.Steps {
		if s.StartedAt == nil {
			continue
		}
		if start.IsZero() || s.StartedAt.Before(start) {
			start = *s.StartedAt
		}
		f := now
		if s.FinishedAt != nil {
			f = *s.FinishedAt
		}
		if f.After(end) {
			end = f
		}
	}
	if start.IsZero() {
		return nil
	}
	if b.StartedAt != nil && b.StartedAt.Before(start) {
		start = *b.StartedAt
	}
	if b.FinishedAt != nil && b.FinishedAt.After(end) {
		end = *b.FinishedAt
	}
	total := end.Sub(start)
	if total <= 0 {
		total = time.Millisecond
	}
	nodes := map[string]bool{}
	for _, s := range b.Steps {
		if s.Node != "" {
			nodes[s.Node] = true
		}
	}
	laneOf := func(s builds.Step) string {
		l := s.Platform
		if l == "" {
			l = "shared"
		}
		if len(nodes) > 1 && s.Node != "" {
			l += " · " + s.Node
		}
		return l
	}
	var labels []string
	for _, s := range b.Steps {
		if l := laneOf(s); !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	sort.SliceStable(labels, func(i, j int) bool { return labels[i] != "shared" && labels[j] == "shared" })
	t := &Timeline{Width: timelineLabelW + timelinePlotW + 10, Height: len(labels)*timelineLaneH + 28, Wall: total}
	for i, l := range labels {
		t.Lanes = append(t.Lanes, TimelineLane{Label: l, Y: i * timelineLaneH})
	}
	emulated := emulatedPlatforms(b)
	cache := map[string]*CacheHits{}
	for _, s := range b.Steps {
		if s.Platform != "" {
			c := cache[s.Platform]
			if c == nil {
				c = &CacheHits{Platform: s.Platform}
				cache[s.Platform] = c
			}
			c.Steps++
			if s.Cached {
				c.Cached++
			}
		}
		if s.StartedAt == nil {
			continue
		}
		f := now
		if s.FinishedAt != nil {
			f = *s.FinishedAt
		}
		d := f.Sub(*s.StartedAt)
		if !s.Cached {
			t.Summed += d
		}
		x := timelineLabelW + int(float64(timelinePlotW)*float64(s.StartedAt.Sub(start))/float64(total))
		w := max(2, int(float64(timelinePlotW)*float64(d)/float64(total)))
		var class []string
		state := HumanDuration(d)
		switch {
		case s.Error != "":
			class, state = append(class, "failed"), "failed after "+state
		case s.Cached:
			class, state = append(class, "cached"), "cached"
		case s.FinishedAt == nil:
			class, state = append(class, "running"), "running for "+state
		}
		if emulated[s.Platform] {
			class, state = append(class, "emulated"), state+", emulated"
		}
		lane := slices.Index(labels, laneOf(s))
		t.Bars = append(t.Bars, TimelineBar{
			X: x, Y: lane*timelineLaneH + (timelineLaneH-timelineBarH)/2, W: min(w, timelinePlotW+timelineLabelW-x), H: timelineBarH,
			Class: strings.Join(class, " "), Title: fmt.Sprintf("#%d %s — %s", s.Number, s.Name, state), Number: s.Number,
		})
	}
	for _, p := range slices.Sorted(mapKeys(cache)) {
		t.Cache = append(t.Cache, *cache[p])
	}
	step := niceStep(total)
	for at := time.Duration(0); at <= total; at += step {
		label := HumanDuration(at)
		if at == 0 {
			label = "0s"
		}
		t.Ticks = append(t.Ticks, TimelineTick{X: timelineLabelW + int(float64(timelinePlotW)*float64(at)/float64(total)), Label: label})
	}
	return t
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// niceStep is an axis interval giving 4 to 10 ticks.
func niceStep(total time.Duration) time.Duration {
	for _, s := range []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour} {
		if total/s <= 8 {
			return s
		}
	}
	return total / 8
}

// Emulation compares the Dockerfile steps that ran for several platforms.
type Emulation struct {
	// Rows are the steps that cost most under emulation (at most
	// maxEmulationRows of them); More counts the others.
	Rows []EmulationRow
	More int
	// Lost is the time emulated steps took beyond their native twins.
	Lost time.Duration
	// RunShare is the share of the build's step time spent in emulated RUN steps.
	RunShare float64
}

// EmulationRow is one Dockerfile step, timed per platform.
type EmulationRow struct {
	Step      string
	Platforms []PlatformTime
}

// PlatformTime is one platform's run of a step, and its ratio to the
// fastest native run (0 when no platform ran it natively).
type PlatformTime struct {
	Platform string
	Duration time.Duration
	Emulated bool
	Ratio    float64
}

// RatioText says the ratio the way a person reads it: "7.8× linux/amd64".
func (p PlatformTime) RatioText(base string) string {
	if p.Ratio == 0 || base == "" {
		return ""
	}
	return strconv.FormatFloat(p.Ratio, 'f', 1, 64) + "× " + base
}

// Fastest is the platform the ratios compare with.
func (r EmulationRow) Fastest() string {
	var best PlatformTime
	for _, p := range r.Platforms {
		if !p.Emulated && (best.Platform == "" || p.Duration < best.Duration) {
			best = p
		}
	}
	return best.Platform
}

// stepName splits "[linux/arm64 2/3] RUN make" into the platform and the
// step without it ("2/3] RUN make"), so the platforms' runs can be matched.
var stepName = regexp.MustCompile(`^\[([a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9.]+)?) (.*)$`)

// BuildEmulation matches each Dockerfile step's runs across platforms (not
// cached, finished) and times them against the fastest native run; nil
// when no step ran for two platforms.
func BuildEmulation(b *builds.Build) *Emulation {
	emulated := emulatedPlatforms(b)
	type run struct {
		platform string
		d        time.Duration
		run      bool
	}
	byStep := map[string][]run{}
	var order []string
	var summed, emulatedRun time.Duration
	for _, s := range b.Steps {
		if s.Cached || s.StartedAt == nil || s.FinishedAt == nil || s.Error != "" {
			continue
		}
		d := s.FinishedAt.Sub(*s.StartedAt)
		summed += d
		m := stepName.FindStringSubmatch(s.Name)
		if m == nil || strings.HasPrefix(m[2], "internal]") {
			continue // BuildKit's own steps (metadata loads) are not the Dockerfile's
		}
		isRun := strings.Contains(m[2], "] RUN ")
		if isRun && emulated[m[1]] {
			emulatedRun += d
		}
		if _, ok := byStep[m[2]]; !ok {
			order = append(order, m[2])
		}
		byStep[m[2]] = append(byStep[m[2]], run{m[1], d, isRun})
	}
	e := &Emulation{}
	if summed > 0 {
		e.RunShare = float64(emulatedRun) / float64(summed)
	}
	for _, k := range order {
		runs := byStep[k]
		if len(runs) < 2 {
			continue
		}
		row := EmulationRow{Step: "[" + k}
		var fastest time.Duration
		for _, r := range runs {
			if !emulated[r.platform] && (fastest == 0 || r.d < fastest) {
				fastest = r.d
			}
		}
		for _, r := range runs {
			pt := PlatformTime{Platform: r.platform, Duration: r.d, Emulated: emulated[r.platform]}
			if fastest > 0 {
				pt.Ratio = float64(r.d) / float64(fastest)
				if pt.Emulated && r.d > fastest {
					e.Lost += r.d - fastest
				}
			}
			row.Platforms = append(row.Platforms, pt)
		}
		e.Rows = append(e.Rows, row)
	}
	if len(e.Rows) == 0 {
		return nil
	}
	// The steps emulation cost most come first; a long Dockerfile shows its worst few.
	sort.SliceStable(e.Rows, func(i, j int) bool { return e.Rows[i].lost() > e.Rows[j].lost() })
	if len(e.Rows) > maxEmulationRows {
		e.More, e.Rows = len(e.Rows)-maxEmulationRows, e.Rows[:maxEmulationRows]
	}
	return e
}

// maxEmulationRows bounds the steps the emulation table lists.
const maxEmulationRows = 12

// lost is what emulation cost this step: its slowest emulated run over its fastest native one.
func (r EmulationRow) lost() time.Duration {
	var fastest, slowest time.Duration
	for _, p := range r.Platforms {
		if !p.Emulated && (fastest == 0 || p.Duration < fastest) {
			fastest = p.Duration
		}
		if p.Emulated && p.Duration > slowest {
			slowest = p.Duration
		}
	}
	if fastest == 0 {
		return 0
	}
	return slowest - fastest
}

// Advice is what to do when emulation dominates a build: cross-compile
// (for a toolchain found in the Dockerfile), or add a native node.
type Advice struct {
	Share     float64
	Saving    time.Duration
	Toolchain string // "Go", "Rust", "C/C++", or "" when none was recognised
	Snippet   string
}

var toolchains = []struct {
	name    string
	pattern *regexp.Regexp
	snippet string
}{
	{"Go", regexp.MustCompile(`(?im)^\s*FROM\s+(\S*/)?golang\b|\bgo (build|install)\b`), `FROM --platform=$BUILDPLATFORM golang:1 AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .

FROM busybox:1
COPY --from=build /out/app /app`},
	{"Rust", regexp.MustCompile(`(?im)^\s*FROM\s+(\S*/)?rust\b|\bcargo (build|install)\b`), `FROM --platform=$BUILDPLATFORM tonistiigi/xx AS xx
FROM --platform=$BUILDPLATFORM rust:1 AS build
COPY --from=xx / /
ARG TARGETPLATFORM
RUN xx-cargo build --release --target-dir /out && xx-verify /out/$(xx-cargo --print-target-triple)/release/app`},
	{"C/C++", regexp.MustCompile(`(?im)\b(gcc|g\+\+|clang|cmake|make)\b`), `FROM --platform=$BUILDPLATFORM tonistiigi/xx AS xx
FROM --platform=$BUILDPLATFORM alpine AS build
COPY --from=xx / /
ARG TARGETPLATFORM
RUN apk add clang lld && xx-apk add gcc musl-dev
RUN xx-clang -o /out/app main.c && xx-verify /out/app`},
}

// BuildAdvice says what to do when emulated RUN steps take at least half of
// the build's step time; nil otherwise.
func BuildAdvice(b *builds.Build, e *Emulation) *Advice {
	if e == nil || e.RunShare < 0.5 {
		return nil
	}
	a := &Advice{Share: e.RunShare, Saving: e.Lost}
	for _, tc := range toolchains {
		if tc.pattern.MatchString(b.Dockerfile) {
			a.Toolchain, a.Snippet = tc.name, tc.snippet
			break
		}
	}
	return a
}

// Percent formats a share as a whole percentage.
func Percent(f float64) string { return strconv.Itoa(int(math.Round(100*f))) + " %" }

// BuildxCommand is the `docker buildx build` line that makes the same build
// from a shell: the Dockerfile from stdin when it was typed in, "." for an
// uploaded folder, the git URL for a git context.
func BuildxCommand(b *builds.Build) string {
	args := []string{"docker", "buildx", "build", "--platform", strings.Join(b.Platforms, ",")}
	if b.DockerfilePath != "" {
		args = append(args, "-f", b.DockerfilePath)
	}
	if b.Target != "" {
		args = append(args, "--target", b.Target)
	}
	for _, k := range slices.Sorted(mapKeys(b.BuildArgs)) {
		args = append(args, "--build-arg", k+"="+b.BuildArgs[k])
	}
	for _, k := range slices.Sorted(mapKeys(b.Labels)) {
		args = append(args, "--label", k+"="+b.Labels[k])
	}
	if b.NoCache {
		args = append(args, "--no-cache")
	}
	for _, s := range b.Secrets {
		args = append(args, "--secret", "id="+s)
	}
	if b.Provenance != "" {
		args = append(args, "--provenance", "mode="+b.Provenance)
	}
	if b.SBOM {
		args = append(args, "--sbom=true")
	}
	for _, t := range b.Tags {
		args = append(args, "-t", t)
	}
	if b.PushWanted {
		args = append(args, "--push")
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	line := strings.Join(quoted, " ")
	switch {
	case b.Git != nil:
		ref := b.Git.URL
		if b.Git.Ref != "" || b.Git.Subdir != "" {
			ref += "#" + b.Git.Ref
			if b.Git.Subdir != "" {
				ref += ":" + b.Git.Subdir
			}
		}
		return line + " " + shellQuote(ref)
	case b.Context.Type == "upload" && b.Dockerfile != "":
		return line + " -f Dockerfile ." // run in the uploaded folder, with the Dockerfile shown above saved as ./Dockerfile
	case b.Context.Type == "upload":
		return line + " ."
	}
	return line + " - < Dockerfile"
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
