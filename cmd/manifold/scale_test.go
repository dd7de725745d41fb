package main

import (
	"context"
	"encoding/json"
	mcontent "manifold/builds/content"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"manifold/builds/buildkittest"
	"manifold/db"
)

// seedBuilds writes n succeeded builds straight into data's database, as a
// busy instance would hold them: each with an index, a manifest, a config
// and a layer of its own, and one base layer all share; a tenth carry a tag.
// It returns the bytes they reference and the shared base layer's size.
func seedBuilds(tb testing.TB, data string, n int) (referenced, shared int64) {
	tb.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, filepath.Join(data, "manifold.db"))
	if err != nil {
		tb.Fatal(err)
	}
	defer d.Close()
	// The usage triggers cost three statements a row: off while seeding,
	// then the sums they keep are computed once, and the triggers come back
	// as migration 009 wrote them.
	root, err := buildkittest.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	ddl, err := os.ReadFile(filepath.Join(root, "db", "migrations", "009_build_blobs.sql"))
	if err != nil {
		tb.Fatal(err)
	}
	triggers := regexp.MustCompile(`(?s)CREATE TRIGGER (\w+) .*?\nEND;`).FindAllStringSubmatch(string(ddl), -1)
	if len(triggers) != 5 {
		tb.Fatalf("migration 009 has %d triggers, the seed expects 5", len(triggers))
	}
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	for _, tr := range triggers {
		if _, err := tx.ExecContext(ctx, "DROP TRIGGER "+tr[1]); err != nil {
			tb.Fatal(err)
		}
	}
	// Set-based inserts: ids that sort by n ("01m8000000" and 16 digits are
	// valid ids), digests of digits, times one second apart up to now.
	const base = 2 << 20
	seq := `WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < ?) `
	for _, q := range []string{
		seq + `INSERT INTO builds (id, status, platforms, dockerfile, options, ref, created_at, started_at, finished_at, index_digest, tags, indexed, total_bytes)
			SELECT printf('01m8000000%016d', n), 'succeeded', '["linux/amd64"]', 'FROM busybox:1', '{"context":{"type":"none"}}', printf('01m8000000%016d', n),
				strftime('%Y-%m-%dT%H:%M:%S.000000000Z', 'now', printf('-%d seconds', ?1 - n)),
				strftime('%Y-%m-%dT%H:%M:%S.000000000Z', 'now', printf('-%d seconds', ?1 - n)),
				strftime('%Y-%m-%dT%H:%M:%S.000000000Z', 'now', printf('-%d seconds', ?1 - n)),
				printf('sha256:%064d', n * 10 + 1),
				CASE WHEN n % 10 = 0 THEN printf('["registry.example.com/team/app%d:v%d"]', n % 50, n) ELSE '[]' END,
				1, 400 + 600 + 1500 + 1000 + n % 5000 + ` + strconv.Itoa(base) + ` FROM seq`,
		seq + `INSERT INTO build_blobs (build_id, digest, size, image)
			SELECT printf('01m8000000%016d', n), printf('sha256:%064d', n * 10 + k),
				CASE k WHEN 1 THEN 400 WHEN 2 THEN 600 WHEN 3 THEN 1500 WHEN 4 THEN 1000 + n % 5000 END, 1
			FROM seq, (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4)`,
		seq + `INSERT INTO build_blobs (build_id, digest, size, image)
			SELECT printf('01m8000000%016d', n), 'sha256:` + strings.Repeat("b", 64) + `', ` + strconv.Itoa(base) + `, 1 FROM seq`,
		seq + `INSERT INTO build_tags (build_id, repo, tag)
			SELECT printf('01m8000000%016d', n), printf('registry.example.com/team/app%d', n % 50), printf('v%d', n) FROM seq WHERE n % 10 = 0`,
	} {
		if _, err := tx.ExecContext(ctx, q, n); err != nil {
			tb.Fatalf("seed: %v\n%s", err, q)
		}
	}
	for i := range n {
		referenced += int64(400 + 600 + 1500 + 1000 + i%5000)
	}
	for _, q := range []string{
		`INSERT INTO blob_usage (digest, size, builds) SELECT digest, max(size), count(*) FROM build_blobs GROUP BY digest`,
		`UPDATE storage_totals SET referenced_bytes = (SELECT COALESCE(SUM(size), 0) FROM blob_usage),
			shared_bytes = (SELECT COALESCE(SUM(size), 0) FROM blob_usage WHERE builds > 1), blobs = (SELECT count(*) FROM blob_usage)`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			tb.Fatal(err)
		}
	}
	for _, tr := range triggers {
		if _, err := tx.ExecContext(ctx, tr[0]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return referenced + base, base
}

// TestStorageAtScale: with 100,000 builds the storage API and page answer
// one page of builds (keyset, newest or largest first) and the totals the
// triggers keep, never every build.
func TestStorageAtScale(t *testing.T) {
	data := t.TempDir()
	began := time.Now()
	referenced, shared := seedBuilds(t, data, 100_000)
	t.Logf("seeded 100,000 builds in %v", time.Since(began))
	a := startApp(t, data, "--buildkit", env.Addr())
	var u mcontent.Usage
	if code := getJSON(t, a, "/api/v1/storage", &u); code != 200 {
		t.Fatalf("storage = %d", code)
	}
	if u.BuildCount != 100_000 || u.ReferencedBytes != referenced || u.SharedBytes != shared || len(u.Builds) != 50 || u.Next == "" {
		t.Fatalf("totals: %d builds, %d referenced (want %d), %d shared (want %d), a page of %d, next %q",
			u.BuildCount, u.ReferencedBytes, referenced, u.SharedBytes, shared, len(u.Builds), u.Next)
	}
	first := u.Builds[0]
	if first.SharedBytes != shared || first.UniqueBytes != first.TotalBytes-shared {
		t.Fatalf("newest build's share: %+v", first)
	}
	// Keyset paging walks on without repeats, newest first, then largest first.
	var next mcontent.Usage
	getJSON(t, a, "/api/v1/storage?after="+u.Next, &next)
	if len(next.Builds) != 50 || next.Builds[0].ID >= u.Builds[49].ID {
		t.Fatalf("second page starts at %s after %s", next.Builds[0].ID, u.Builds[49].ID)
	}
	var big, big2 mcontent.Usage
	getJSON(t, a, "/api/v1/storage?sort=size&limit=20", &big)
	getJSON(t, a, "/api/v1/storage?sort=size&limit=20&after="+big.Next, &big2)
	if len(big.Builds) != 20 || len(big2.Builds) != 20 || big2.Builds[0].TotalBytes > big.Builds[19].TotalBytes {
		t.Fatalf("largest first: %d then %d rows", len(big.Builds), len(big2.Builds))
	}
	for i := 1; i < 20; i++ {
		if big.Builds[i].TotalBytes > big.Builds[i-1].TotalBytes {
			t.Fatalf("largest first is out of order at %d", i)
		}
	}
	code, page := get(t, a.URL+"/storage")
	if code != 200 || strings.Count(page, `data-testid="usage-row"`) != 50 || !strings.Contains(page, `data-testid="usage-next"`) || len(page) > 200<<10 {
		t.Fatalf("storage page = %d, %d rows, %d bytes", code, strings.Count(page, `data-testid="usage-row"`), len(page))
	}
	if code, body := a.do(t, "GET", "/api/v1/storage?after=bogus", ""); code != 400 {
		t.Fatalf("a bad cursor = %d %s", code, body)
	}
	// Deleting a build takes its unique bytes off the totals at once.
	if code, body := a.do(t, "DELETE", "/api/v1/builds/"+first.ID, ""); code != 204 {
		t.Fatalf("delete = %d %s", code, body)
	}
	var after mcontent.Usage
	getJSON(t, a, "/api/v1/storage?limit=1", &after)
	if after.BuildCount != 99_999 || after.ReferencedBytes != referenced-first.UniqueBytes {
		raw, _ := json.Marshal(after)
		t.Fatalf("after deleting %s: %s", first.ID, raw)
	}
}
