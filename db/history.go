package db

import (
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
func historyQuery(opt builds.ListOptions) (string, []any) {
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
		from, key = "build_tags d JOIN builds b ON b.id = d.build_id", "d.build_id"
		where = append(where, "d.repo = ?", "d.tag = ?")
		args = append(args, f.Repo, f.TagName)
	case f.Repo != "":
		from, key = "build_repos d JOIN builds b ON b.id = d.build_id", "d.build_id"
		where = append(where, "d.repo = ?")
		args = append(args, f.Repo)
	case f.Platform != "":
		from, key = "build_platforms d JOIN builds b ON b.id = d.build_id", "d.build_id"
		where = append(where, "d.platform = ?")
		args = append(args, f.Platform)
	case f.Query != "" && f.Status == "" && f.User == "":
		from = "builds_text t JOIN builds b ON b.rowid = t.rowid"
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
	if f.Query != "" && !strings.HasPrefix(from, "builds_text") {
		where = append(where, "b.rowid IN (SELECT rowid FROM builds_text WHERE builds_text MATCH ?)")
		args = append(args, ftsPhrase(f.Query))
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

// ftsPhrase quotes free text as one FTS5 phrase: no operators, any characters.
func ftsPhrase(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
