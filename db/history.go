package db

import (
	"context"
	"fmt"
	"strings"

	"manifold/builds"
)

// historyQuery is the SQL of one page of the history. The most selective
// filter that has its own index drives the page, read in id order, so
// SQLite stops after LIMIT matches and never sorts: a tag by build_tags'
// key (repo, tag, build_id), a repository by build_repos, a platform by
// build_platforms, else builds' own indexes (status, id) and (created_by, id)
// or its key. The other filters are checked on each candidate by key.
// Free text goes through the FTS5 index builds_text (trigram, so any
// substring of three or more characters); alone, it drives from that index
// and sorts only its matches.
//
// A common text (more than rareMatches builds have it) is checked build by
// build instead (LIKE on the row's tags and Dockerfile), walking builds
// newest first: the page fills long before the walk ends, where collecting
// and sorting every match would not.
func historyQuery(opt builds.ListOptions, rare bool) (string, []any) {
	f := opt.Filter
	var (
		from  = "builds b"
		key   = "b.id"
		where []string
		args  []any
	)
	cols := "b." + strings.ReplaceAll(buildColumns, ", ", ", b.")
	switch {
	case f.Repo != "" && f.TagName != "":
		// CROSS JOIN keeps d outside: its key order is the page's order.
		from, key = "build_tags d CROSS JOIN builds b ON b.id = d.build_id", "d.build_id"
		where = append(where, "d.repo = ?", "d.tag = ?")
		args = append(args, f.Repo, f.TagName)
	case f.Repo != "":
		from, key = "build_repos d CROSS JOIN builds b ON b.id = d.build_id", "d.build_id"
		where = append(where, "d.repo = ?")
		args = append(args, f.Repo)
	case f.Platform != "":
		from, key = "build_platforms d CROSS JOIN builds b ON b.id = d.build_id", "d.build_id"
		where = append(where, "d.platform = ?")
		args = append(args, f.Platform)
	case f.Query != "" && rare && f.Status == "" && f.User == "":
		from = "builds_text t CROSS JOIN builds b ON b.rowid = t.rowid"
		where = append(where, "builds_text MATCH ?")
		args = append(args, ftsPhrase(f.Query))
	}
	if f.Platform != "" && !strings.HasPrefix(from, "build_platforms") {
		where = append(where, "EXISTS (SELECT 1 FROM build_platforms p WHERE p.platform = ? AND p.build_id = b.id)")
		args = append(args, f.Platform)
	}
	if f.Status != "" {
		where = append(where, "b.status = ?")
		args = append(args, string(f.Status))
	}
	if f.User != "" {
		where = append(where, "b.created_by = ?")
		args = append(args, f.User)
	}
	switch f.Via {
	case builds.ViaManifold:
		where = append(where, "b.via = ''")
	case "":
	default:
		where = append(where, "b.via = ?")
		args = append(args, f.Via)
	}
	switch {
	case f.Query == "" || strings.HasPrefix(from, "builds_text"):
	case rare:
		where = append(where, "b.rowid IN (SELECT rowid FROM builds_text WHERE builds_text MATCH ?)")
		args = append(args, ftsPhrase(f.Query))
	default:
		// The same substring test as the trigram index, on the row at hand (microseconds a row).
		where = append(where, `(b.tags LIKE ? ESCAPE '\' OR b.dockerfile LIKE ? ESCAPE '\')`)
		args = append(args, likePattern(f.Query), likePattern(f.Query))
	}
	if !f.Since.IsZero() {
		where = append(where, key+" >= ?")
		args = append(args, builds.IDFloor(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, key+" < ?")
		args = append(args, builds.IDFloor(f.Until))
	}
	if opt.Before != "" {
		where = append(where, key+" < ?")
		args = append(args, opt.Before)
	}
	q := "SELECT " + cols + " FROM " + from
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + key + " DESC LIMIT ?"
	return q, append(args, opt.Limit)
}

// rareMatches is how many builds may match free text for the matches to be
// collected first; above it, each candidate build is checked instead.
// (A variable so the tests can take both ways.)
var rareMatches = 1000

// rareText reports whether at most rareMatches builds contain q.
func (s *Builds) rareText(ctx context.Context, q string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT rowid FROM builds_text WHERE builds_text MATCH ? LIMIT ?)`,
		ftsPhrase(q), rareMatches+1).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("db: count text matches: %w", err)
	}
	return n <= rareMatches, nil
}

// likePattern matches s anywhere, its % and _ taken literally.
func likePattern(s string) string {
	return "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s) + "%"
}

// ftsPhrase quotes free text as one FTS5 phrase: no operators, any characters.
func ftsPhrase(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
