package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
	"manifold/builds/buildkit"
	"manifold/builds/content"
	"manifold/builds/explore"
	"manifold/builds/registry"
)

// Builds implements builds.Store.
type Builds struct{ db *DB }

// NewBuilds returns the build store over d.
func NewBuilds(d *DB) *Builds { return &Builds{db: d} }

// Builds keeps what the lifecycle, the content store, the explorer and the
// pull API record about builds.
var (
	_ builds.Store     = (*Builds)(nil)
	_ buildkit.Records = (*Builds)(nil)
	_ content.Records  = (*Builds)(nil)
	_ explore.Records  = (*Builds)(nil)
	_ registry.Records = (*Builds)(nil)
)

const buildColumns = `id, status, platforms, dockerfile, options, ref, created_at, started_at, finished_at, error, error_step, error_line, index_digest, tags, pushed, push_wanted, pinned, created_by, via`

type scanner interface{ Scan(dest ...any) error }

func scanBuild(row scanner) (*builds.Build, error) {
	var (
		b                   builds.Build
		plats, tags, create string
		opts                string
		started, finished   sql.NullString
		pushed              int
	)
	if err := row.Scan(&b.ID, &b.Status, &plats, &b.Dockerfile, &opts, &b.Ref, &create, &started, &finished,
		&b.Error, &b.ErrorStep, &b.ErrorLine, &b.IndexDigest, &tags, &pushed, &b.PushWanted, &b.Pinned, &b.CreatedBy, &b.Via); err != nil {
		return nil, err
	}
	var err error
	if b.CreatedAt, err = parseTime(create); err != nil {
		return nil, err
	}
	if b.StartedAt, err = parseTimePtr(started); err != nil {
		return nil, err
	}
	if b.FinishedAt, err = parseTimePtr(finished); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(plats), &b.Platforms); err != nil {
		return nil, fmt.Errorf("platforms of %s: %w", b.ID, err)
	}
	if err := json.Unmarshal([]byte(tags), &b.Tags); err != nil {
		return nil, fmt.Errorf("tags of %s: %w", b.ID, err)
	}
	if err := json.Unmarshal([]byte(opts), &b.Options); err != nil {
		return nil, fmt.Errorf("options of %s: %w", b.ID, err)
	}
	b.Pushed = pushed != 0
	b.Manifests = []builds.Manifest{}
	b.Steps = []builds.Step{}
	b.Pushes = []builds.Push{}
	return &b, nil
}

// CreateBuild inserts a new build, the tags it carries and the context it uploaded.
func (s *Builds) CreateBuild(ctx context.Context, b *builds.Build, refs []builds.TagRef) error {
	plats, _ := json.Marshal(b.Platforms)
	tags, _ := json.Marshal(nonNil(b.Tags))
	opts, err := json.Marshal(b.Options)
	if err != nil {
		return fmt.Errorf("db: insert build: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("db: insert build: %w", err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO builds (`+buildColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.ID, b.Status, string(plats), b.Dockerfile, string(opts), b.Ref, formatTime(b.CreatedAt), formatTimePtr(b.StartedAt),
		formatTimePtr(b.FinishedAt), b.Error, b.ErrorStep, b.ErrorLine, b.IndexDigest, string(tags), b.Pushed, b.PushWanted, b.Pinned, b.CreatedBy, b.Via)
	if err != nil {
		return fmt.Errorf("db: insert build: %w", err)
	}
	if err := writeIndex(ctx, tx, b.ID, refs, contextBlob(b)); err != nil {
		return err
	}
	// A retried build starts with the platforms it keeps from the failed one.
	if err := savePlacements(ctx, tx, b.ID, b.CacheKey(), b.Placements); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("db: insert build: %w", err)
	}
	return nil
}

// SavePlacements records where platforms run and how they went.
func (s *Builds) SavePlacements(ctx context.Context, id, key string, ps []builds.Placement) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("db: save placements of %s: %w", id, err)
	}
	defer tx.Rollback()
	if err := savePlacements(ctx, tx, id, key, ps); err != nil {
		return err
	}
	return tx.Commit()
}

func savePlacements(ctx context.Context, tx *sql.Tx, id, key string, ps []builds.Placement) error {
	for _, p := range ps {
		if _, err := tx.ExecContext(ctx, `INSERT INTO build_placements (build_id, platform, node, emulated, reason, status, error, index_digest, cache_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (build_id, platform) DO UPDATE SET node = excluded.node, emulated = excluded.emulated, reason = excluded.reason,
				status = excluded.status, error = excluded.error, index_digest = excluded.index_digest, cache_key = excluded.cache_key`,
			id, p.Platform, p.Node, p.Emulated, p.Reason, p.Status, p.Error, p.IndexDigest, key); err != nil {
			return fmt.Errorf("db: save placements of %s: %w", id, err)
		}
	}
	return nil
}

// WarmNode is the node that last built platform successfully under key, or "".
func (s *Builds) WarmNode(ctx context.Context, key, platform string) (string, error) {
	var node string
	err := s.db.QueryRowContext(ctx, `SELECT node FROM build_placements WHERE cache_key = ? AND platform = ? AND status = ?
		ORDER BY build_id DESC LIMIT 1`, key, platform, builds.StatusSucceeded).Scan(&node)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("db: warm node: %w", err)
	}
	return node, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// GetBuild reads one build with its manifests and steps.
func (s *Builds) GetBuild(ctx context.Context, id string) (*builds.Build, error) {
	b, err := scanBuild(s.db.QueryRowContext(ctx, `SELECT `+buildColumns+` FROM builds WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, builds.CodeErrorf(builds.ENotFound, "build_not_found", "no build has the id %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("db: get build %s: %w", id, err)
	}
	if err := s.attach(ctx, []*builds.Build{b}); err != nil {
		return nil, err
	}
	return b, nil
}

// ListBuilds pages newest first by id (ids are time-ordered), narrowed by opt.Filter.
func (s *Builds) ListBuilds(ctx context.Context, opt builds.ListOptions) ([]*builds.Build, error) {
	rare := true
	if opt.Filter.Query != "" {
		var err error
		if rare, err = s.rareText(ctx, opt.Filter.Query); err != nil {
			return nil, err
		}
	}
	query, args := historyQuery(opt, rare)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("db: list builds: %w", err)
	}
	defer rows.Close()
	out := []*builds.Build{}
	for rows.Next() {
		b, err := scanBuild(rows)
		if err != nil {
			return nil, fmt.Errorf("db: list builds: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: list builds: %w", err)
	}
	if err := s.attach(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// attach loads the manifests and steps of a page of builds in one query each.
func (s *Builds) attach(ctx context.Context, bs []*builds.Build) error {
	if len(bs) == 0 {
		return nil
	}
	byID := make(map[string]*builds.Build, len(bs))
	args := make([]any, 0, len(bs))
	for _, b := range bs {
		byID[b.ID] = b
		args = append(args, b.ID)
	}
	in := "(" + strings.TrimSuffix(strings.Repeat("?,", len(bs)), ",") + ")"

	rows, err := s.db.QueryContext(ctx, `SELECT build_id, platform, digest, media_type, config_digest, size, image_size, node, emulated
		FROM build_manifests WHERE build_id IN `+in+` ORDER BY build_id, position`, args...)
	if err != nil {
		return fmt.Errorf("db: read manifests: %w", err)
	}
	for rows.Next() {
		var id string
		var m builds.Manifest
		if err := rows.Scan(&id, &m.Platform, &m.Digest, &m.MediaType, &m.ConfigDigest, &m.Size, &m.ImageSize, &m.Node, &m.Emulated); err != nil {
			rows.Close()
			return fmt.Errorf("db: read manifests: %w", err)
		}
		byID[id].Manifests = append(byID[id].Manifests, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("db: read manifests: %w", err)
	}

	rows, err = s.db.QueryContext(ctx, `SELECT build_id, target, digest, at, ok, error FROM build_pushes WHERE build_id IN `+in+` ORDER BY build_id, seq`, args...)
	if err != nil {
		return fmt.Errorf("db: read pushes: %w", err)
	}
	for rows.Next() {
		var id, at string
		var p builds.Push
		if err := rows.Scan(&id, &p.Target, &p.Digest, &at, &p.OK, &p.Error); err != nil {
			rows.Close()
			return fmt.Errorf("db: read pushes: %w", err)
		}
		if p.At, err = parseTime(at); err != nil {
			rows.Close()
			return err
		}
		byID[id].Pushes = append(byID[id].Pushes, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("db: read pushes: %w", err)
	}

	rows, err = s.db.QueryContext(ctx, `SELECT build_id, platform, node, emulated, reason, status, error, index_digest
		FROM build_placements WHERE build_id IN `+in+` ORDER BY build_id, platform`, args...)
	if err != nil {
		return fmt.Errorf("db: read placements: %w", err)
	}
	for rows.Next() {
		var id string
		var p builds.Placement
		if err := rows.Scan(&id, &p.Platform, &p.Node, &p.Emulated, &p.Reason, &p.Status, &p.Error, &p.IndexDigest); err != nil {
			rows.Close()
			return fmt.Errorf("db: read placements: %w", err)
		}
		byID[id].Placements = append(byID[id].Placements, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("db: read placements: %w", err)
	}

	rows, err = s.db.QueryContext(ctx, `SELECT build_id, number, digest, name, platform, cached, started_at, finished_at, error, node
		FROM build_steps WHERE build_id IN `+in+` ORDER BY build_id, number`, args...)
	if err != nil {
		return fmt.Errorf("db: read steps: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var st builds.Step
		var cached int
		var started, finished sql.NullString
		if err := rows.Scan(&id, &st.Number, &st.Digest, &st.Name, &st.Platform, &cached, &started, &finished, &st.Error, &st.Node); err != nil {
			return fmt.Errorf("db: read steps: %w", err)
		}
		st.Cached = cached != 0
		if st.StartedAt, err = parseTimePtr(started); err != nil {
			return fmt.Errorf("db: read steps: %w", err)
		}
		if st.FinishedAt, err = parseTimePtr(finished); err != nil {
			return fmt.Errorf("db: read steps: %w", err)
		}
		byID[id].Steps = append(byID[id].Steps, st)
	}
	return rows.Err()
}

// StartBuild moves a queued build to running and records the status event.
func (s *Builds) StartBuild(ctx context.Context, id string, at time.Time, events []builds.Event) (bool, []builds.Event, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, nil, fmt.Errorf("db: start build %s: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE builds SET status = ?, started_at = ? WHERE id = ? AND status = ?`,
		builds.StatusRunning, formatTime(at), id, builds.StatusQueued)
	if err != nil {
		return false, nil, fmt.Errorf("db: start build %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, nil, err
	}
	saved, err := appendEvents(ctx, tx, id, events)
	if err != nil {
		return false, nil, err
	}
	return true, saved, tx.Commit()
}

// FinishBuild records a build's final state, its manifests and blobs on success, and the events it is given.
func (s *Builds) FinishBuild(ctx context.Context, id string, at time.Time, r builds.Result, events []builds.Event) ([]builds.Event, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("db: finish build %s: %w", id, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE builds SET status = ?, finished_at = ?, error = ?, error_step = ?, error_line = ?, index_digest = ? WHERE id = ?`,
		r.Status, formatTime(at), r.Error, r.ErrorStep, r.ErrorLine, r.IndexDigest, id); err != nil {
		return nil, fmt.Errorf("db: finish build %s: %w", id, err)
	}
	if r.Dockerfile != "" {
		if _, err := tx.ExecContext(ctx, `UPDATE builds SET dockerfile = ? WHERE id = ? AND dockerfile = ''`, r.Dockerfile, id); err != nil {
			return nil, fmt.Errorf("db: finish build %s: %w", id, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM build_manifests WHERE build_id = ?`, id); err != nil {
		return nil, fmt.Errorf("db: finish build %s: %w", id, err)
	}
	for i, m := range r.Manifests {
		if _, err := tx.ExecContext(ctx, `INSERT INTO build_manifests (build_id, position, platform, digest, media_type, config_digest, size, image_size, node, emulated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, i, m.Platform, m.Digest, m.MediaType, m.ConfigDigest, m.Size, m.ImageSize, m.Node, m.Emulated); err != nil {
			return nil, fmt.Errorf("db: insert manifest of %s: %w", id, err)
		}
	}
	if err := addBlobs(ctx, tx, id, r.Blobs); err != nil {
		return nil, err
	}
	saved, err := appendEvents(ctx, tx, id, events)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("db: finish build %s: %w", id, err)
	}
	return saved, nil
}

// Record appends events and saves changed steps in one transaction.
func (s *Builds) Record(ctx context.Context, id string, events []builds.Event, steps []builds.Step) ([]builds.Event, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("db: record events of %s: %w", id, err)
	}
	defer tx.Rollback()
	if len(steps) > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO build_steps (build_id, digest, number, name, platform, cached, started_at, finished_at, error, node)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (build_id, digest) DO UPDATE SET number = excluded.number, name = excluded.name, platform = excluded.platform,
				cached = excluded.cached, started_at = excluded.started_at, finished_at = excluded.finished_at, error = excluded.error,
				node = excluded.node`)
		if err != nil {
			return nil, fmt.Errorf("db: save steps of %s: %w", id, err)
		}
		defer stmt.Close()
		for _, st := range steps {
			if _, err := stmt.ExecContext(ctx, id, st.Digest, st.Number, st.Name, st.Platform, st.Cached,
				formatTimePtr(st.StartedAt), formatTimePtr(st.FinishedAt), st.Error, st.Node); err != nil {
				return nil, fmt.Errorf("db: save steps of %s: %w", id, err)
			}
		}
	}
	saved, err := appendEvents(ctx, tx, id, events)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("db: record events of %s: %w", id, err)
	}
	return saved, nil
}

// appendEvents numbers events after the build's last one and inserts them.
func appendEvents(ctx context.Context, tx *sql.Tx, id string, events []builds.Event) ([]builds.Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM build_events WHERE build_id = ?`, id).Scan(&last); err != nil {
		return nil, fmt.Errorf("db: append events of %s: %w", id, err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO build_events (build_id, seq, type, time, data, step) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("db: append events of %s: %w", id, err)
	}
	defer stmt.Close()
	out := make([]builds.Event, len(events))
	lines := map[int]int{}
	for i, e := range events {
		last++
		e.Seq = last
		if _, err := stmt.ExecContext(ctx, id, e.Seq, string(e.Type), formatTime(e.Time), string(e.Data), e.Step); err != nil {
			return nil, fmt.Errorf("db: append events of %s: %w", id, err)
		}
		if e.Type == builds.EventLog {
			lines[e.Step]++
		}
		out[i] = e
	}
	// Each step's line count, kept so a page need not count 20,000 lines.
	for step, n := range lines {
		if _, err := tx.ExecContext(ctx, `INSERT INTO build_log_counts (build_id, step, lines) VALUES (?, ?, ?)
			ON CONFLICT (build_id, step) DO UPDATE SET lines = lines + excluded.lines`, id, step, n); err != nil {
			return nil, fmt.Errorf("db: count the log of %s: %w", id, err)
		}
	}
	return out, nil
}

// Events reads up to limit events with seq > after.
func (s *Builds) Events(ctx context.Context, id string, after int64, limit int) ([]builds.Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, type, time, data, step FROM build_events WHERE build_id = ? AND seq > ? ORDER BY seq LIMIT ?`, id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("db: read events of %s: %w", id, err)
	}
	return scanEvents(rows, id)
}

func scanEvents(rows *sql.Rows, id string) ([]builds.Event, error) {
	defer rows.Close()
	var out []builds.Event
	for rows.Next() {
		var e builds.Event
		var typ, t, data string
		if err := rows.Scan(&e.Seq, &typ, &t, &data, &e.Step); err != nil {
			return nil, fmt.Errorf("db: read events of %s: %w", id, err)
		}
		e.Type = builds.EventType(typ)
		e.Data = json.RawMessage(data)
		var err error
		if e.Time, err = parseTime(t); err != nil {
			return nil, fmt.Errorf("db: read events of %s: %w", id, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// StepEvents reads one step's log lines or warnings (every step's when step < 0).
func (s *Builds) StepEvents(ctx context.Context, id string, t builds.EventType, step int, after int64, limit int, last bool) ([]builds.Event, error) {
	// Named indexes: without statistics SQLite would walk the whole build by
	// its primary key (build_id, seq) to keep the order, reading every line.
	from, where, args := `build_events INDEXED BY build_events_by_type`, `build_id = ? AND type = ? AND seq > ?`, []any{id, string(t), after}
	if step >= 0 {
		from, where, args = `build_events INDEXED BY build_events_by_step`, where+` AND step = ?`, append(args, step)
	}
	order := "ASC"
	if last {
		order = "DESC"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, type, time, data, step FROM `+from+` WHERE `+where+` ORDER BY seq `+order+` LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("db: read the log of %s: %w", id, err)
	}
	out, err := scanEvents(rows, id)
	if last {
		slices.Reverse(out)
	}
	return out, err
}

// LogCounts counts each step's log lines and reads the last event's seq.
func (s *Builds) LogCounts(ctx context.Context, id string) (map[int]int, int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT step, lines FROM build_log_counts WHERE build_id = ?`, id)
	if err != nil {
		return nil, 0, fmt.Errorf("db: count the log of %s: %w", id, err)
	}
	defer rows.Close()
	counts := map[int]int{}
	for rows.Next() {
		var step, n int
		if err := rows.Scan(&step, &n); err != nil {
			return nil, 0, fmt.Errorf("db: count the log of %s: %w", id, err)
		}
		counts[step] = n
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	var last int64
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM build_events WHERE build_id = ?`, id).Scan(&last); err != nil {
		return nil, 0, fmt.Errorf("db: count the log of %s: %w", id, err)
	}
	return counts, last, nil
}

// SearchLog finds log lines holding q, with their line number within their step.
func (s *Builds) SearchLog(ctx context.Context, id, q string, limit int) ([]builds.LogMatch, int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, type, time, data, step, line, count(*) OVER () FROM (
			SELECT seq, type, time, data, step, row_number() OVER (PARTITION BY step ORDER BY seq) AS line
			FROM build_events INDEXED BY build_events_by_type WHERE build_id = ? AND type = 'log')
		WHERE instr(lower(json_extract(data, '$.text')), lower(?)) > 0 ORDER BY seq LIMIT ?`, id, q, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("db: search the log of %s: %w", id, err)
	}
	defer rows.Close()
	var out []builds.LogMatch
	total := 0
	for rows.Next() {
		var m builds.LogMatch
		var typ, t, data string
		if err := rows.Scan(&m.Seq, &typ, &t, &data, &m.Step, &m.Line, &total); err != nil {
			return nil, 0, fmt.Errorf("db: search the log of %s: %w", id, err)
		}
		m.Type, m.Data = builds.EventType(typ), json.RawMessage(data)
		if m.Time, err = parseTime(t); err != nil {
			return nil, 0, err
		}
		out = append(out, m)
	}
	return out, total, rows.Err()
}

// Unfinished lists the builds left running and queued, oldest first.
func (s *Builds) Unfinished(ctx context.Context) (running, queued []string, err error) {
	if running, err = s.strings(ctx, `SELECT id FROM builds WHERE status = ? ORDER BY id`, builds.StatusRunning); err != nil {
		return nil, nil, fmt.Errorf("db: list running builds: %w", err)
	}
	if queued, err = s.strings(ctx, `SELECT id FROM builds WHERE status = ? ORDER BY id`, builds.StatusQueued); err != nil {
		return nil, nil, fmt.Errorf("db: list queued builds: %w", err)
	}
	return running, queued, nil
}

// RecordPush appends a push to a build's history; pushed tells whether every
// tag the build asked for has now been pushed.
func (s *Builds) RecordPush(ctx context.Context, id string, p builds.Push, pushed bool) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("db: record push of %s: %w", id, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO build_pushes (build_id, seq, target, digest, at, ok, error)
		VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM build_pushes WHERE build_id = ?), ?, ?, ?, ?, ?)`,
		id, id, p.Target, p.Digest, formatTime(p.At), p.OK, p.Error); err != nil {
		return fmt.Errorf("db: record push of %s: %w", id, err)
	}
	if pushed {
		if _, err := tx.ExecContext(ctx, `UPDATE builds SET pushed = 1 WHERE id = ?`, id); err != nil {
			return fmt.Errorf("db: record push of %s: %w", id, err)
		}
	}
	return tx.Commit()
}

// TagBuild is the newest succeeded build carrying repo:tag, or "".
func (s *Builds) TagBuild(ctx context.Context, repo, tag string) (string, error) {
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT t.build_id FROM build_tags t JOIN builds b ON b.id = t.build_id
		WHERE t.repo = ? AND t.tag = ? AND b.status = 'succeeded' ORDER BY t.build_id DESC LIMIT 1`, repo, tag).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("db: resolve %s:%s: %w", repo, tag, err)
	}
	return id, nil
}

// RepoKnown reports whether any build carries a tag in repo.
func (s *Builds) RepoKnown(ctx context.Context, repo string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM build_tags WHERE repo = ? LIMIT 1)`, repo).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("db: look up repository %s: %w", repo, err)
	}
	return n > 0, nil
}

// CountQueued counts user's builds that wait in the queue.
func (s *Builds) CountQueued(ctx context.Context, user string) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM builds WHERE status = 'queued' AND created_by = ?`, user).Scan(&n); err != nil {
		return 0, fmt.Errorf("db: count queued builds of %s: %w", user, err)
	}
	return n, nil
}

// RepoTags lists repo's tags of succeeded builds after last, in order.
func (s *Builds) RepoTags(ctx context.Context, repo, last string, n int) ([]string, error) {
	return s.strings(ctx, `SELECT DISTINCT t.tag FROM build_tags t JOIN builds b ON b.id = t.build_id
		WHERE t.repo = ? AND t.tag > ? AND b.status = 'succeeded' ORDER BY t.tag LIMIT ?`, repo, last, n)
}

// SucceededIDs lists succeeded builds' ids after last, oldest first.
func (s *Builds) SucceededIDs(ctx context.Context, last string, n int) ([]string, error) {
	return s.strings(ctx, `SELECT id FROM builds WHERE status = 'succeeded' AND id > ? ORDER BY id LIMIT ?`, last, n)
}

func (s *Builds) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("db: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("db: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// BuildRoots lists every kept build with what it references in the store.
func (s *Builds) BuildRoots(ctx context.Context) ([]content.BuildRoot, error) {
	// A platform's own index (kept for a retry to merge) is a root as well.
	rows, err := s.db.QueryContext(ctx, `SELECT id, status, pinned, index_digest,
		COALESCE(CASE WHEN json_extract(options, '$.context.type') = 'upload' THEN json_extract(options, '$.context.digest') END, '')
		FROM builds
		UNION ALL
		SELECT p.build_id, b.status, b.pinned, p.index_digest, '' FROM build_placements p JOIN builds b ON b.id = p.build_id
		WHERE p.index_digest != '' AND p.index_digest != b.index_digest
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("db: list build roots: %w", err)
	}
	defer rows.Close()
	var out []content.BuildRoot
	for rows.Next() {
		var r content.BuildRoot
		if err := rows.Scan(&r.ID, &r.Status, &r.Pinned, &r.IndexDigest, &r.ContextDigest); err != nil {
			return nil, fmt.Errorf("db: list build roots: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SetPinned pins or unpins a build.
func (s *Builds) SetPinned(ctx context.Context, id string, pinned bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE builds SET pinned = ? WHERE id = ?`, pinned, id)
	if err != nil {
		return fmt.Errorf("db: pin %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return builds.CodeErrorf(builds.ENotFound, "build_not_found", "no build has the id %q", id)
	}
	return nil
}

// DeleteBuild removes a finished build and everything recorded with it.
func (s *Builds) DeleteBuild(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM builds WHERE id = ? AND status NOT IN ('queued', 'running')`, id)
	if err != nil {
		return fmt.Errorf("db: delete build %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return builds.CodeErrorf(builds.EConflict, "build_active", "build %q does not exist or is still queued or running", id)
	}
	return nil
}

// RetentionCandidates lists finished, unpinned builds that retention removes:
// created before cutoff (when cutoff is set), or past the newest perTag
// succeeded builds of every tag they carry (when perTag > 0).
func (s *Builds) RetentionCandidates(ctx context.Context, cutoff time.Time, perTag int) ([]string, error) {
	var out []string
	if !cutoff.IsZero() {
		old, err := s.strings(ctx, `SELECT id FROM builds WHERE created_at < ? AND pinned = 0 AND status NOT IN ('queued', 'running') ORDER BY id`, formatTime(cutoff))
		if err != nil {
			return nil, err
		}
		out = append(out, old...)
	}
	if perTag > 0 {
		// A build goes when, for every tag it carries, newer succeeded builds
		// with that tag already fill the quota.
		beyond, err := s.strings(ctx, `
			WITH ranked AS (
				SELECT t.build_id, ROW_NUMBER() OVER (PARTITION BY t.repo, t.tag ORDER BY t.build_id DESC) AS n
				FROM build_tags t JOIN builds b ON b.id = t.build_id WHERE b.status = 'succeeded')
			SELECT b.id FROM builds b
			WHERE b.pinned = 0 AND b.status = 'succeeded'
			  AND EXISTS (SELECT 1 FROM ranked r WHERE r.build_id = b.id)
			  AND NOT EXISTS (SELECT 1 FROM ranked r WHERE r.build_id = b.id AND r.n <= ?)
			ORDER BY b.id`, perTag)
		if err != nil {
			return nil, err
		}
		out = append(out, beyond...)
	}
	return out, nil
}

// ArchiveSums returns the stored checksums of a build's downloads, keyed "format/platform".
func (s *Builds) ArchiveSums(ctx context.Context, id string) (map[string]content.ArchiveSum, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT format, platform, size, sha256 FROM build_archives WHERE build_id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("db: read archive sums of %s: %w", id, err)
	}
	defer rows.Close()
	out := map[string]content.ArchiveSum{}
	for rows.Next() {
		var a content.ArchiveSum
		if err := rows.Scan(&a.Format, &a.Platform, &a.Size, &a.SHA256); err != nil {
			return nil, fmt.Errorf("db: read archive sums of %s: %w", id, err)
		}
		out[a.Format+"/"+a.Platform] = a
	}
	return out, rows.Err()
}

// SaveArchiveSum records one download's checksum.
func (s *Builds) SaveArchiveSum(ctx context.Context, id string, a content.ArchiveSum) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO build_archives (build_id, format, platform, size, sha256) VALUES (?, ?, ?, ?, ?)`,
		id, a.Format, a.Platform, a.Size, a.SHA256)
	if err != nil {
		return fmt.Errorf("db: save archive sum of %s: %w", id, err)
	}
	return nil
}

// LayerListing reads a cached layer listing, with its files when files is set; nil when none.
func (s *Builds) LayerListing(ctx context.Context, digest string, files bool) (*explore.LayerListing, error) {
	l := &explore.LayerListing{Digest: digest, Files: []explore.FileEntry{}}
	err := s.db.QueryRowContext(ctx, `SELECT uncompressed, entries, truncated FROM layer_listings WHERE digest = ?`, digest).
		Scan(&l.UncompressedSize, &l.Entries, &l.Truncated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("db: read layer listing: %w", err)
	}
	if !files {
		return l, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT path, type, size, mode, uid, gid, link FROM layer_files WHERE digest = ? ORDER BY seq`, digest)
	if err != nil {
		return nil, fmt.Errorf("db: read layer files: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var f explore.FileEntry
		if err := rows.Scan(&f.Path, &f.Type, &f.Size, &f.Mode, &f.UID, &f.GID, &f.Link); err != nil {
			return nil, fmt.Errorf("db: read layer files: %w", err)
		}
		l.Files = append(l.Files, f)
	}
	return l, rows.Err()
}

// SaveLayerListing caches a layer listing in one transaction.
func (s *Builds) SaveLayerListing(ctx context.Context, l *explore.LayerListing) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO layer_listings (digest, uncompressed, entries, truncated, listed_at) VALUES (?, ?, ?, ?, ?)`,
		l.Digest, l.UncompressedSize, l.Entries, l.Truncated, formatTime(time.Now())); err != nil {
		return fmt.Errorf("db: save layer listing: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM layer_files WHERE digest = ?`, l.Digest); err != nil {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO layer_files (digest, seq, path, type, size, mode, uid, gid, link) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i, f := range l.Files {
		if _, err := stmt.ExecContext(ctx, l.Digest, i, f.Path, f.Type, f.Size, f.Mode, f.UID, f.GID, f.Link); err != nil {
			return fmt.Errorf("db: save layer files: %w", err)
		}
	}
	return tx.Commit()
}

// SaveOrigins remembers where blobs of a remote image come from.
func (s *Builds) SaveOrigins(ctx context.Context, name string, descs []ocispec.Descriptor) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, d := range descs {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO remote_origins (digest, name, media_type, size) VALUES (?, ?, ?, ?)`,
			d.Digest.String(), name, d.MediaType, d.Size); err != nil {
			return fmt.Errorf("db: save origins: %w", err)
		}
	}
	return tx.Commit()
}

// Origin says where a remote blob comes from; found is false for none.
func (s *Builds) Origin(ctx context.Context, dg string) (string, ocispec.Descriptor, bool, error) {
	var name, mt string
	var size int64
	err := s.db.QueryRowContext(ctx, `SELECT name, media_type, size FROM remote_origins WHERE digest = ?`, dg).Scan(&name, &mt, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ocispec.Descriptor{}, false, nil
	}
	if err != nil {
		return "", ocispec.Descriptor{}, false, fmt.Errorf("db: read origin: %w", err)
	}
	return name, ocispec.Descriptor{Digest: digest.Digest(dg), MediaType: mt, Size: size}, true, nil
}
