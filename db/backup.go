package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"

	sqlite "modernc.org/sqlite"
)

// Snapshot copies the database file src into dst (which must not exist)
// with SQLite's online backup API: the copy is taken in one step under one
// read transaction, so it is the database as one moment left it, while other
// connections and processes go on writing. It runs no migrations on src.
// The copy is written with mode 0600.
func Snapshot(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("db: snapshot: %w", err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("db: snapshot: %s already exists", dst)
	}
	// The destination is made private before SQLite writes a page into it.
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("db: snapshot: %w", err)
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	sqldb, err := sql.Open("sqlite", "file:"+src+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("db: snapshot open %s: %w", src, err)
	}
	defer sqldb.Close()
	conn, err := sqldb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("db: snapshot open %s: %w", src, err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(interface {
			NewBackup(string) (*sqlite.Backup, error)
		})
		if !ok {
			return errors.New("the SQLite driver offers no backup API")
		}
		b, err := c.NewBackup(dst)
		if err != nil {
			return err
		}
		// All pages in one step: one read transaction, one moment.
		if _, err := b.Step(-1); err != nil {
			b.Finish()
			return err
		}
		return b.Finish()
	})
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("db: snapshot %s: %w", src, err)
	}
	return nil
}

// ReferencedDigests opens the database file read-only (no migrations) and
// lists every blob digest a build references: its recorded blobs and its
// index. A backup or a restore is complete when the store holds all of them.
func ReferencedDigests(ctx context.Context, file string) ([]string, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	sqldb, err := sql.Open("sqlite", "file:"+file+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("db: open %s: %w", file, err)
	}
	defer sqldb.Close()
	var ok string
	if err := sqldb.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&ok); err != nil {
		return nil, fmt.Errorf("db: check %s: %w", file, err)
	}
	if ok != "ok" {
		return nil, fmt.Errorf("db: %s is damaged: %s", file, ok)
	}
	rows, err := sqldb.QueryContext(ctx, `SELECT digest FROM build_blobs
		UNION SELECT index_digest FROM builds WHERE index_digest != ''`)
	if err != nil {
		return nil, fmt.Errorf("db: list referenced blobs of %s: %w", file, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("db: list referenced blobs of %s: %w", file, err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
