package db

import (
	"context"
	"fmt"
	"strings"
	"time"

	"manifold/builds"
)

// Metrics answers the figures /metrics reports, computed by SQLite at
// scrape time from the rows builds already keep (nothing else is written).
type Metrics struct{ db *DB }

// NewMetrics reads metrics from d.
func NewMetrics(d *DB) *Metrics { return &Metrics{db: d} }

// BuildCounts counts builds by status and platform (a build of two
// platforms counts once for each).
func (m *Metrics) BuildCounts(ctx context.Context) ([]builds.BuildCount, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT b.status, p.value, COUNT(*) FROM builds b, json_each(b.platforms) p GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("db: count builds: %w", err)
	}
	defer rows.Close()
	var out []builds.BuildCount
	for rows.Next() {
		var c builds.BuildCount
		if err := rows.Scan(&c.Status, &c.Platform, &c.Count); err != nil {
			return nil, fmt.Errorf("db: count builds: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// StatusCounts counts whole builds by status.
func (m *Metrics) StatusCounts(ctx context.Context) (map[builds.Status]int, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT status, COUNT(*) FROM builds GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("db: count builds by status: %w", err)
	}
	defer rows.Close()
	out := map[builds.Status]int{}
	for rows.Next() {
		var s builds.Status
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("db: count builds by status: %w", err)
		}
		out[s] = n
	}
	return out, rows.Err()
}

// Durations is a histogram per platform of one kind of duration
// (builds.DurationBuild, DurationStep or DurationQueueWait), bucketed by
// SQLite so a scrape reads one row per platform whatever the history's size.
func (m *Metrics) Durations(ctx context.Context, kind string, bounds []float64) (map[string]builds.Histogram, error) {
	platform, from, d := "p.value", "", ""
	switch kind {
	case builds.DurationBuild:
		from = `builds b, json_each(b.platforms) p WHERE b.started_at IS NOT NULL AND b.finished_at IS NOT NULL`
		d = `(julianday(b.finished_at) - julianday(b.started_at)) * 86400`
	case builds.DurationQueueWait:
		from = `builds b, json_each(b.platforms) p WHERE b.started_at IS NOT NULL`
		d = `(julianday(b.started_at) - julianday(b.created_at)) * 86400`
	case builds.DurationStep:
		platform = `s.platform`
		from = `build_steps s WHERE s.started_at IS NOT NULL AND s.finished_at IS NOT NULL AND s.cached = 0`
		d = `(julianday(s.finished_at) - julianday(s.started_at)) * 86400`
	default:
		return nil, fmt.Errorf("db: unknown duration %q", kind)
	}
	var cols strings.Builder
	for _, b := range bounds {
		fmt.Fprintf(&cols, ", SUM(CASE WHEN d <= %g THEN 1 ELSE 0 END)", b)
	}
	q := `SELECT platform, COUNT(*), COALESCE(SUM(d), 0)` + cols.String() +
		` FROM (SELECT ` + platform + ` AS platform, MAX(` + d + `, 0) AS d FROM ` + from + `) GROUP BY platform`
	rows, err := m.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("db: %s durations: %w", kind, err)
	}
	defer rows.Close()
	out := map[string]builds.Histogram{}
	for rows.Next() {
		var platform string
		h := builds.Histogram{Buckets: make([]uint64, len(bounds))}
		dest := []any{&platform, &h.Count, &h.Sum}
		for i := range h.Buckets {
			dest = append(dest, &h.Buckets[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("db: %s durations: %w", kind, err)
		}
		out[platform] = h
	}
	return out, rows.Err()
}

// Writable proves the database takes a write: it records the time in
// readiness (one row) and commits.
func (m *Metrics) Writable(ctx context.Context) error {
	if _, err := m.db.ExecContext(ctx, `INSERT INTO readiness (id, checked_at) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at`, formatTime(time.Now())); err != nil {
		return fmt.Errorf("db: write readiness: %w", err)
	}
	return nil
}
