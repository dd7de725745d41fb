package db

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"manifold/builds"
)

func TestStepLogCountsAndSearch(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	b := newBuild(t, s, time.Now().UTC())
	// Two steps' lines, interleaved, in two batches, and a warning.
	for batch := range 2 {
		var events []builds.Event
		for i := range 5 {
			for _, n := range []int{1, 2} {
				events = append(events, builds.NewEvent(builds.EventLog, builds.LogEvent{Number: n, Stream: 1, Text: fmt.Sprintf("step %d line %d", n, batch*5+i+1)}))
			}
		}
		events = append(events, builds.NewEvent(builds.EventWarning, builds.WarningEvent{Number: 2, Short: "lint"}))
		if _, err := s.Record(ctx, b.ID, events, nil); err != nil {
			t.Fatal(err)
		}
	}
	counts, last, err := s.LogCounts(ctx, b.ID)
	if err != nil || counts[1] != 10 || counts[2] != 10 || len(counts) != 2 || last != 22 {
		t.Fatalf("counts %v, last %d, %v", counts, last, err)
	}
	lines, err := s.StepEvents(ctx, b.ID, builds.EventLog, 2, 0, 3, false)
	if err != nil || len(lines) != 3 || lines[0].Step != 2 || lines[2].Seq <= lines[1].Seq {
		t.Fatalf("first lines of step 2: %+v %v", lines, err)
	}
	tail, err := s.StepEvents(ctx, b.ID, builds.EventLog, 1, 0, 2, true)
	if err != nil || len(tail) != 2 || string(tail[1].Data) == "" || tail[0].Seq >= tail[1].Seq {
		t.Fatalf("last lines of step 1: %+v %v", tail, err)
	}
	warnings, err := s.StepEvents(ctx, b.ID, builds.EventWarning, -1, 0, 10, false)
	if err != nil || len(warnings) != 2 {
		t.Fatalf("warnings %+v %v", warnings, err)
	}
	// Search is case-blind and numbers each hit within its step.
	hits, total, err := s.SearchLog(ctx, b.ID, "STEP 2 LINE 7", 10)
	if err != nil || total != 1 || len(hits) != 1 || hits[0].Step != 2 || hits[0].Line != 7 {
		t.Fatalf("search: %+v total %d %v", hits, total, err)
	}
	if hits, total, _ := s.SearchLog(ctx, b.ID, "line", 3); total != 20 || len(hits) != 3 {
		t.Fatalf("search with a limit: %d hits of %d", len(hits), total)
	}
}

// TestStepLogQueriesUseIndexes checks the plans of the build page's log
// queries: none reads every event of the build.
func TestStepLogQueriesUseIndexes(t *testing.T) {
	s := openTest(t)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`SELECT seq, type, time, data, step FROM build_events INDEXED BY build_events_by_type WHERE build_id = ? AND type = ? AND seq > ? ORDER BY seq ASC LIMIT ?`, []any{"b", "warning", 0, 10}},
		{`SELECT seq, type, time, data, step FROM build_events INDEXED BY build_events_by_step WHERE build_id = ? AND type = ? AND seq > ? AND step = ? ORDER BY seq DESC LIMIT ?`, []any{"b", "log", 0, 3, 60}},
		{`SELECT step, lines FROM build_log_counts WHERE build_id = ?`, []any{"b"}},
	} {
		joined := fmt.Sprint(queryPlan(t, s.db, q.sql, q.args...))
		if !strings.Contains(joined, "INDEX build_events_by_") && !strings.Contains(joined, "USING PRIMARY KEY") {
			t.Errorf("%s\nplan %s", q.sql, joined)
		}
		if strings.Contains(joined, "USE TEMP B-TREE") {
			t.Errorf("%s sorts: %s", q.sql, joined)
		}
	}
}

// queryPlan is SQLite's EXPLAIN QUERY PLAN for query: one detail line a step.
func queryPlan(t *testing.T, d *DB, query string, args ...any) []string {
	t.Helper()
	rows, err := d.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}
