package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"manifold/builds/builder"
)

// BuilderCerts keeps the builder endpoint's issued certificates.
type BuilderCerts struct{ db *DB }

// NewBuilderCerts returns the store of builder certificates.
func NewBuilderCerts(d *DB) *BuilderCerts { return &BuilderCerts{db: d} }

var _ builder.Certs = (*BuilderCerts)(nil)

// SaveCert records an issued certificate.
func (s *BuilderCerts) SaveCert(ctx context.Context, c builder.Issued) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO builder_certs (serial, user, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		c.Serial, c.User, formatTime(c.CreatedAt), formatTime(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("db: record builder certificate: %w", err)
	}
	return nil
}

func scanCert(sc interface{ Scan(...any) error }) (builder.Issued, error) {
	var c builder.Issued
	var created, expires string
	var revoked sql.NullString
	if err := sc.Scan(&c.Serial, &c.User, &created, &expires, &revoked); err != nil {
		return c, err
	}
	var err error
	if c.CreatedAt, err = parseTime(created); err != nil {
		return c, err
	}
	if c.ExpiresAt, err = parseTime(expires); err != nil {
		return c, err
	}
	c.RevokedAt, err = parseTimePtr(revoked)
	return c, err
}

// Cert reads one certificate by serial.
func (s *BuilderCerts) Cert(ctx context.Context, serial string) (builder.Issued, bool, error) {
	c, err := scanCert(s.db.QueryRowContext(ctx, `SELECT serial, user, created_at, expires_at, revoked_at FROM builder_certs WHERE serial = ?`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("db: read builder certificate: %w", err)
	}
	return c, true, nil
}

// ListCerts lists a user's certificates ("" for everyone's), newest first.
func (s *BuilderCerts) ListCerts(ctx context.Context, user string) ([]builder.Issued, error) {
	q, args := `SELECT serial, user, created_at, expires_at, revoked_at FROM builder_certs ORDER BY created_at DESC`, []any{}
	if user != "" {
		q, args = `SELECT serial, user, created_at, expires_at, revoked_at FROM builder_certs WHERE user = ? ORDER BY created_at DESC`, []any{user}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("db: list builder certificates: %w", err)
	}
	defer rows.Close()
	out := []builder.Issued{}
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, fmt.Errorf("db: list builder certificates: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RevokeCert revokes a certificate (of user, unless user is ""); it reports whether one was.
func (s *BuilderCerts) RevokeCert(ctx context.Context, serial, user string, at time.Time) (bool, error) {
	q, args := `UPDATE builder_certs SET revoked_at = ? WHERE serial = ? AND revoked_at IS NULL`, []any{formatTime(at), serial}
	if user != "" {
		q, args = q+` AND user = ?`, append(args, user)
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("db: revoke builder certificate: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}
