package explore

import (
	"slices"
	"time"

	"manifold/builds"
)

// TrendLimit is how many of a tag's newest builds a trend covers.
const TrendLimit = 50

// JumpRatio is the change of a platform's image size from one succeeded
// build to the next that counts as a sudden jump (and JumpMinBytes the
// least change in bytes, so a few bytes on a tiny image do not count).
const (
	JumpRatio    = 1.2
	JumpMinBytes = 64 << 10
)

// Trend is how a tag or repository's builds evolve: duration and image size
// per platform and the cache hit rate, oldest build first.
type Trend struct {
	Tag       string       `json:"tag"`
	Platforms []string     `json:"platforms"`
	Builds    []TrendBuild `json:"builds"`
	Jumps     []SizeJump   `json:"jumps"`
}

// TrendBuild is one build of a trend.
type TrendBuild struct {
	ID        string        `json:"id"`
	Status    builds.Status `json:"status"`
	CreatedAt time.Time     `json:"created_at"`
	// CachePercent is the share of its steps BuildKit answered from cache; -1 when it has no steps.
	CachePercent float64                       `json:"cache_hit_percent"`
	Platforms    map[string]TrendPlatformPoint `json:"platforms"`
}

// TrendPlatformPoint is one platform of one build: how long its steps took
// (first start to last end; 0 when it never ran) and its image's compressed
// size (0 unless the build succeeded).
type TrendPlatformPoint struct {
	DurationSeconds float64 `json:"duration_seconds"`
	ImageSize       int64   `json:"image_size"`
}

// SizeJump is a sudden change of one platform's image size between two
// succeeded builds in a row; From is the older build.
type SizeJump struct {
	Platform string `json:"platform"`
	From     string `json:"from"`
	To       string `json:"to"`
	FromSize int64  `json:"from_size"`
	ToSize   int64  `json:"to_size"`
}

// Trends turns a page of the history (newest first, as ListBuilds gives it)
// into a trend, oldest first.
func Trends(tag string, list []*builds.Build) Trend {
	t := Trend{Tag: tag, Platforms: []string{}, Builds: []TrendBuild{}, Jumps: []SizeJump{}}
	for i := len(list) - 1; i >= 0; i-- {
		b := list[i]
		tb := TrendBuild{ID: b.ID, Status: b.Status, CreatedAt: b.CreatedAt, CachePercent: -1, Platforms: map[string]TrendPlatformPoint{}}
		cached, steps := 0, 0
		for _, st := range b.Steps {
			if st.StartedAt == nil && !st.Cached {
				continue
			}
			steps++
			if st.Cached {
				cached++
			}
		}
		if steps > 0 {
			tb.CachePercent = 100 * float64(cached) / float64(steps)
		}
		for _, p := range b.Platforms {
			if !slices.Contains(t.Platforms, p) {
				t.Platforms = append(t.Platforms, p)
			}
			pt := TrendPlatformPoint{DurationSeconds: platformDuration(b, p).Seconds()}
			if b.Status == builds.StatusSucceeded {
				for _, m := range b.Manifests {
					if m.Platform == p {
						pt.ImageSize = m.ImageSize
					}
				}
			}
			tb.Platforms[p] = pt
		}
		t.Builds = append(t.Builds, tb)
	}
	for _, p := range t.Platforms {
		var prev *TrendBuild
		for i := range t.Builds {
			cur := &t.Builds[i]
			if cur.Platforms[p].ImageSize == 0 {
				continue
			}
			if prev != nil {
				a, b := prev.Platforms[p].ImageSize, cur.Platforms[p].ImageSize
				hi, lo := max(a, b), min(a, b)
				if float64(hi) >= JumpRatio*float64(lo) && hi-lo >= JumpMinBytes {
					t.Jumps = append(t.Jumps, SizeJump{Platform: p, From: prev.ID, To: cur.ID, FromSize: a, ToSize: b})
				}
			}
			prev = cur
		}
	}
	return t
}

// platformDuration is the span of a platform's steps (steps of no platform,
// such as loading the Dockerfile, count for every platform); without steps,
// the build's own duration.
func platformDuration(b *builds.Build, p string) time.Duration {
	var first, last time.Time
	for _, st := range b.Steps {
		if st.StartedAt == nil || st.FinishedAt == nil || (st.Platform != "" && st.Platform != p) {
			continue
		}
		if first.IsZero() || st.StartedAt.Before(first) {
			first = *st.StartedAt
		}
		if st.FinishedAt.After(last) {
			last = *st.FinishedAt
		}
	}
	if first.IsZero() {
		if b.FinishedAt == nil {
			return 0
		}
		return b.Duration(time.Now())
	}
	return last.Sub(first)
}
