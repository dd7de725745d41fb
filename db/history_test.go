package db

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"manifold/builds"
)

// seedHistory records n builds that differ in status, platform, tag, user
// and Dockerfile, one minute apart, oldest first.
func seedHistory(t *testing.T, s *Builds, n int, start time.Time) []*builds.Build {
	t.Helper()
	var out []*builds.Build
	for i := range n {
		at := start.Add(time.Duration(i) * time.Minute)
		// NewID never goes back in time within a process; these builds are in the past.
		id := builds.IDFloor(at)[:10] + fmt.Sprintf("%016d", i)
		plats := []string{"linux/amd64"}
		if i%3 == 0 {
			plats = append(plats, "linux/arm64")
		}
		tags := []string{fmt.Sprintf("registry.example.com/team/app%d:v%d", i%4, i)}
		if i%4 == 1 {
			tags = append(tags, "registry.example.com/team/app1:latest")
		}
		refs, err := builds.ParseTags(tags)
		if err != nil {
			t.Fatal(err)
		}
		st := []builds.Status{builds.StatusSucceeded, builds.StatusFailed, builds.StatusCanceled}[i%3]
		b := &builds.Build{ID: id, Status: st, Platforms: plats, CreatedAt: at, Ref: id,
			Dockerfile: fmt.Sprintf("FROM busybox:1\nRUN echo step-%d\n", i), Tags: tags,
			CreatedBy: []string{"alice", "bob"}[i%2], Options: builds.Options{BuildArgs: map[string]string{}, Labels: map[string]string{}}}
		if i%5 == 2 {
			b.Via = builds.ViaBuildx
		}
		if err := s.CreateBuild(context.Background(), b, refs); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestHistoryFilters(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	all := seedHistory(t, s, 120, start)
	parse := func(q string) builds.Filter {
		f, err := builds.ParseFilter(func(k string) string {
			for _, kv := range strings.Split(q, "&") {
				if k2, v, _ := strings.Cut(kv, "="); k2 == k {
					return v
				}
			}
			return ""
		})
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return f
	}
	for _, tc := range []struct {
		query string
		keep  func(i int, b *builds.Build) bool
	}{
		{"", func(int, *builds.Build) bool { return true }},
		{"status=failed", func(i int, _ *builds.Build) bool { return i%3 == 1 }},
		{"platform=linux/arm64", func(i int, _ *builds.Build) bool { return i%3 == 0 }},
		{"tag=registry.example.com/team/app1", func(i int, _ *builds.Build) bool { return i%4 == 1 }},
		{"tag=registry.example.com/team/app1:latest", func(i int, _ *builds.Build) bool { return i%4 == 1 }},
		{"tag=registry.example.com/team/app2:v6", func(i int, _ *builds.Build) bool { return i == 6 }},
		{"tag=other.example.com/team/app1", func(int, *builds.Build) bool { return false }},
		{"user=bob", func(i int, _ *builds.Build) bool { return i%2 == 1 }},
		{"since=2026-11-01T13:00:00Z&until=2026-11-01T13:30:00Z", func(i int, _ *builds.Build) bool { return i >= 60 && i < 90 }},
		{"q=step-11", func(i int, _ *builds.Build) bool { return i == 11 || (i >= 110 && i < 120) }},
		{"q=TEAM/APP3", func(i int, _ *builds.Build) bool { return i%4 == 3 }},
		{"status=succeeded&user=alice&q=busybox", func(i int, _ *builds.Build) bool { return i%6 == 0 }},
		{"platform=linux/arm64&tag=registry.example.com/team/app1&status=failed", func(int, *builds.Build) bool { return false }},
		{"platform=linux/arm64&tag=registry.example.com/team/app1", func(i int, _ *builds.Build) bool { return i%3 == 0 && i%4 == 1 }},
		{"via=buildx", func(i int, _ *builds.Build) bool { return i%5 == 2 }},
		{"via=manifold&status=failed", func(i int, _ *builds.Build) bool { return i%5 != 2 && i%3 == 1 }},
	} {
		for _, rare := range []int{1000, 0} { // both ways of free text
			rareMatches = rare
			var want []string
			for i := len(all) - 1; i >= 0; i-- {
				if tc.keep(i, all[i]) {
					want = append(want, all[i].ID)
				}
			}
			// Pages of 7, following the cursor, give exactly the matches newest first.
			var got []string
			before := ""
			for range 50 {
				page, err := s.ListBuilds(ctx, builds.ListOptions{Limit: 7, Before: before, Filter: parse(tc.query)})
				if err != nil {
					t.Fatalf("%s: %v", tc.query, err)
				}
				for _, b := range page {
					got = append(got, b.ID)
				}
				if len(page) < 7 {
					break
				}
				before = page[len(page)-1].ID
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s (rare below %d): got %d builds, want %d\n got %v\nwant %v", tc.query, rare, len(got), len(want), got, want)
			}
		}
	}
	rareMatches = 1000
}

// TestHistoryQueryPlans checks that every filtered page reads builds through
// an index: no step of the plan scans builds, and only free text alone sorts.
func TestHistoryQueryPlans(t *testing.T) {
	s := openTest(t)
	seedHistory(t, s, 50, time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	for _, q := range []string{
		"status=failed", "platform=linux/arm64", "tag=team/app1", "tag=team/app1:v5", "user=bob",
		"since=2026-11-01", "until=2026-11-02", "q=busybox", "status=failed&q=busybox", "user=bob&status=failed",
		"platform=linux/amd64&status=succeeded&user=alice&q=step&since=2026-11-01", "via=buildx", "via=manifold&user=bob",
	} {
		f, err := builds.ParseFilter(func(k string) string {
			for _, kv := range strings.Split(q, "&") {
				if k2, v, _ := strings.Cut(kv, "="); k2 == k {
					return v
				}
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			before string
			rare   bool
		}{{"", true}, {builds.NewID(time.Now()), true}, {"", false}, {builds.NewID(time.Now()), false}} {
			before := c.before
			if !c.rare && f.Query == "" {
				continue
			}
			query, args := historyQuery(builds.ListOptions{Limit: 50, Before: before, Filter: f}, c.rare)
			plan := queryPlan(t, s.db, query, args...)
			text := strings.Join(plan, "\n")
			for _, line := range plan {
				// Virtual-table lines are the FTS5 index answering MATCH; json_each reads one build's tags.
				// A common word alone walks builds newest first by key (stopping at the page).
				walk := !c.rare && q == "q=busybox" && line == "SCAN b USING INDEX sqlite_autoindex_builds_1"
				if strings.HasPrefix(line, "SCAN") && !strings.Contains(line, "VIRTUAL TABLE INDEX") && !walk {
					t.Errorf("%s (before=%q): the plan scans a table:\n%s", q, before, text)
				}
			}
			if strings.Contains(text, "TEMP B-TREE FOR ORDER BY") && !(q == "q=busybox" && c.rare) {
				t.Errorf("%s: the plan sorts instead of reading an index in order:\n%s", q, text)
			}
			t.Logf("%s (rare %v):\n%s", q, c.rare, text)
		}
	}
}
