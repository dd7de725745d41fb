package db

import (
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"manifold/builds"
)

// The fixture is a database as the first migration set (001 only, the oldest
// schema this release upgrades) left it, with one finished build in it. It
// is committed; -write-fixture makes it again.
var writeFixture = flag.Bool("write-fixture", false, "rewrite testdata/schema001.db from migration 001")

const fixture = "testdata/schema001.db"
const fixtureBuild = "0000000000001-fixture"

// firstMigrations is the embedded set cut to migrations numbered up to n.
func firstMigrations(t *testing.T, n string) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name()[:3] <= n {
			b, err := fs.ReadFile(migrations, "migrations/"+e.Name())
			if err != nil {
				t.Fatal(err)
			}
			out["migrations/"+e.Name()] = &fstest.MapFile{Data: b}
		}
	}
	return out
}

func makeFixture(t *testing.T) {
	ctx := context.Background()
	os.Remove(fixture)
	d, err := open(ctx, fixture, firstMigrations(t, "001"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, q := range []string{
		`INSERT INTO builds (id, status, platforms, dockerfile, options, ref, created_at, started_at, finished_at, index_digest, tags)
		 VALUES ('` + fixtureBuild + `', 'succeeded', '["linux/amd64","linux/arm64"]', 'FROM busybox:1
CMD ["sh"]
', '{"build_args":{"A":"1"},"target":"","labels":{"l":"v"},"no_cache":false}', '` + fixtureBuild + `',
		 '2026-01-02T03:04:05.000000000Z', '2026-01-02T03:04:06.000000000Z', '2026-01-02T03:04:07.000000000Z',
		 'sha256:1111111111111111111111111111111111111111111111111111111111111111', '["example/app:v1"]')`,
		`INSERT INTO build_manifests VALUES ('` + fixtureBuild + `', 0, 'linux/amd64', 'sha256:2222222222222222222222222222222222222222222222222222222222222222',
		 'application/vnd.oci.image.manifest.v1+json', 'sha256:3333333333333333333333333333333333333333333333333333333333333333', 480, 2100000)`,
		`INSERT INTO build_steps VALUES ('` + fixtureBuild + `', 'sha256:4444444444444444444444444444444444444444444444444444444444444444', 1,
		 '[linux/amd64 1/1] FROM docker.io/library/busybox:1', 'linux/amd64', 1, '2026-01-02T03:04:06.000000000Z', '2026-01-02T03:04:06.500000000Z', '')`,
		`INSERT INTO build_events VALUES ('` + fixtureBuild + `', 1, 'log', '2026-01-02T03:04:06.100000000Z', '{"step":1,"text":"hello"}')`,
	} {
		if _, err := d.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
}

// schema is every table, index and trigger as SQLite keeps it.
func schema(t *testing.T, d *DB) string {
	t.Helper()
	rows, err := d.QueryContext(context.Background(), `SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return strings.Join(out, "\n")
}

func TestUpgradeFromTheFirstSchema(t *testing.T) {
	if *writeFixture {
		makeFixture(t)
	}
	ctx := context.Background()
	b, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "manifold.db")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(ctx, file)
	if err != nil {
		t.Fatalf("upgrading a schema-001 database: %v", err)
	}
	defer d.Close()

	var applied int
	if err := d.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	all, _ := fs.ReadDir(migrations, "migrations")
	if applied != len(all) {
		t.Fatalf("%d migrations recorded after the upgrade, want %d", applied, len(all))
	}
	// The upgraded schema is exactly a new database's.
	fresh, err := Open(ctx, filepath.Join(t.TempDir(), "fresh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if got, want := schema(t, d), schema(t, fresh); got != want {
		t.Fatalf("upgraded schema differs from a new database's:\n%s\n---\n%s", got, want)
	}

	// The old build reads back whole through today's store.
	s := NewBuilds(d)
	got, err := s.GetBuild(ctx, fixtureBuild)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != builds.StatusSucceeded || len(got.Platforms) != 2 || got.Options.BuildArgs["A"] != "1" ||
		len(got.Manifests) != 1 || got.Manifests[0].ImageSize != 2100000 || len(got.Steps) != 1 || !got.Steps[0].Cached ||
		len(got.Tags) != 1 || got.Tags[0] != "example/app:v1" || got.FinishedAt == nil || !got.FinishedAt.Equal(time.Date(2026, 1, 2, 3, 4, 7, 0, time.UTC)) {
		t.Fatalf("the fixture's build after the upgrade: %+v", got)
	}
	ev, err := s.Events(ctx, fixtureBuild, 0, 10)
	if err != nil || len(ev) != 1 || string(ev[0].Data) != `{"step":1,"text":"hello"}` {
		t.Fatalf("events after the upgrade: %+v %v", ev, err)
	}
	// And the upgraded database takes new builds.
	newBuild(t, s, time.Now())
}

func TestFailingMigrationLeavesTheDatabaseAsItWas(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "manifold.db")
	d, err := Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	s := NewBuilds(d)
	b := newBuild(t, s, time.Now())
	if _, _, err := s.StartBuild(ctx, b.ID, time.Now(), builds.StartEvents(time.Now())); err != nil {
		t.Fatal(err)
	}
	before := schema(t, d)
	var events int
	if err := d.QueryRowContext(ctx, `SELECT count(*) FROM build_events WHERE build_id = ?`, b.ID).Scan(&events); err != nil || events == 0 {
		t.Fatalf("events before: %d %v", events, err)
	}
	d.Close()

	// A new migration that changes the schema and the data, then fails part way.
	set := firstMigrations(t, "999")
	set["migrations/998_broken.sql"] = &fstest.MapFile{Data: []byte(`
ALTER TABLE builds ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE TABLE half_done (x INTEGER);
UPDATE builds SET status = 'failed', dockerfile = 'changed';
DELETE FROM build_events;
INSERT INTO no_such_table VALUES (1);
`)}
	_, err = open(ctx, file, set)
	if err == nil || !strings.Contains(err.Error(), "migration 998_broken.sql") || !strings.Contains(err.Error(), "no_such_table") {
		t.Fatalf("a failing migration: %v", err)
	}

	d, err = Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if after := schema(t, d); after != before {
		t.Fatalf("a failed migration changed the schema:\n%s\n---\n%s", after, before)
	}
	var n int
	if err := d.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = 998`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the failed migration is recorded: %d %v", n, err)
	}
	got, err := NewBuilds(d).GetBuild(ctx, b.ID)
	if err != nil || got.Status != builds.StatusRunning || got.Dockerfile != b.Dockerfile {
		t.Fatalf("the build after a failed migration: %+v %v", got, err)
	}
	if err := d.QueryRowContext(ctx, `SELECT count(*) FROM build_events WHERE build_id = ?`, b.ID).Scan(&n); err != nil || n != events {
		t.Fatalf("events after a failed migration: %d, before %d (%v)", n, events, err)
	}
}
