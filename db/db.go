// Package db stores Manifold's state in one SQLite file: the migrations are
// embedded, every pragma is in the DSN so each pooled connection gets it, and
// raw SQL implements the store interfaces that package builds declares.
package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is an open Manifold database: one connection that writes (SQLite
// takes one writer at a time anyway, and a queue in the pool beats
// busy-waiting on the file lock) and a small fixed pool of read-only
// connections. Both pools keep their connections: SQLite cannot close a
// descriptor while another connection of the process holds a lock on the
// file, so connections opened and closed under load would pile up
// descriptors that never go away.
type DB struct {
	*sql.DB         // the writer; Exec and transactions
	read    *sql.DB // readers; QueryContext and QueryRowContext
}

// Readers is the size of the read-only pool.
var Readers = max(4, 2*runtime.GOMAXPROCS(0))

// QueryContext runs a query on a read-only connection.
func (d *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.read.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a one-row query on a read-only connection.
func (d *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return d.read.QueryRowContext(ctx, query, args...)
}

// Close closes both pools.
func (d *DB) Close() error {
	rerr := d.read.Close()
	if err := d.DB.Close(); err != nil {
		return err
	}
	return rerr
}

func openPool(ctx context.Context, file string, conns int, readOnly bool) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	}
	q.Set("_txlock", "immediate")
	sqldb, err := sql.Open("sqlite", "file:"+file+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("db: open %s: %w", file, err)
	}
	sqldb.SetMaxOpenConns(conns)
	sqldb.SetMaxIdleConns(conns)
	sqldb.SetConnMaxIdleTime(0)
	sqldb.SetConnMaxLifetime(0)
	if err := sqldb.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("db: open %s: %w", file, err)
	}
	return sqldb, nil
}

// Open opens (creating if needed) the database file at file and applies any
// migrations it has not seen.
// The file and its -wal and -shm companions are readable by their owner
// only (SQLite gives the companions the main file's mode).
func Open(ctx context.Context, file string) (*DB, error) {
	return open(ctx, file, migrations)
}

// open is Open with the migrations read from fsys (tests give other sets).
func open(ctx context.Context, file string, fsys fs.FS) (*DB, error) {
	if err := private(file); err != nil {
		return nil, err
	}
	sqldb, err := openPool(ctx, file, 1, false)
	if err != nil {
		return nil, err
	}
	read, err := openPool(ctx, file, Readers, true)
	if err != nil {
		sqldb.Close()
		return nil, err
	}
	d := &DB{DB: sqldb, read: read}
	if err := d.migrate(ctx, fsys); err != nil {
		d.Close()
		return nil, err
	}
	for _, f := range []string{file + "-wal", file + "-shm"} {
		if err := private(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// private makes file exist (the main database only) with mode 0600, and
// tightens it when an older version or another tool left it readable by others.
func private(file string) error {
	if !strings.HasSuffix(file, "-wal") && !strings.HasSuffix(file, "-shm") {
		f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("db: open %s: %w", file, err)
		}
		f.Close()
	}
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(file, 0o600); err != nil {
			return fmt.Errorf("db: %s can be read by other users (mode %v) and cannot be made private: %w", file, fi.Mode().Perm(), err)
		}
	}
	return nil
}

func (d *DB) migrate(ctx context.Context, fsys fs.FS) error {
	if _, err := d.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`); err != nil {
		return fmt.Errorf("db: create schema_migrations: %w", err)
	}
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		num, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("db: migration %s is not named NNN_what.sql", name)
		}
		var n int
		if err := d.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
			return fmt.Errorf("db: read schema_migrations: %w", err)
		}
		if n > 0 {
			continue
		}
		body, err := fs.ReadFile(fsys, path.Join("migrations", name))
		if err != nil {
			return err
		}
		tx, err := d.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("db: migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("db: migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			version, name, formatTime(time.Now())); err != nil {
			tx.Rollback()
			return fmt.Errorf("db: record migration %s: %w", name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("db: migration %s: %w", name, err)
		}
	}
	return nil
}

// timeLayout sorts as text: fixed width, UTC.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func formatTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return formatTime(*t)
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Parse(time.RFC3339Nano, s)
	}
	return t, nil
}

func parseTimePtr(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}
