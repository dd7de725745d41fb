package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"manifold/builds/registry"
)

// Credentials implements registry.CredentialStore.
type Credentials struct{ db *DB }

// NewCredentials returns the credential store over d.
func NewCredentials(d *DB) *Credentials { return &Credentials{db: d} }

var _ registry.CredentialStore = (*Credentials)(nil)

// PutCredential inserts or replaces host's credential.
func (s *Credentials) PutCredential(ctx context.Context, c registry.Credential, sealed []byte) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO registry_credentials (host, username, secret, insecure, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (host) DO UPDATE SET username = excluded.username, secret = excluded.secret, insecure = excluded.insecure, updated_at = excluded.updated_at`,
		c.Host, c.Username, sealed, c.Insecure, formatTime(c.UpdatedAt))
	if err != nil {
		return fmt.Errorf("db: save credential for %s: %w", c.Host, err)
	}
	return nil
}

// GetCredential reads host's credential.
func (s *Credentials) GetCredential(ctx context.Context, host string) (registry.Credential, []byte, bool, error) {
	var c registry.Credential
	var sealed []byte
	var at string
	err := s.db.QueryRowContext(ctx, `SELECT host, username, secret, insecure, updated_at FROM registry_credentials WHERE host = ?`, host).
		Scan(&c.Host, &c.Username, &sealed, &c.Insecure, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return c, nil, false, nil
	}
	if err != nil {
		return c, nil, false, fmt.Errorf("db: read credential for %s: %w", host, err)
	}
	c.UpdatedAt, err = parseTime(at)
	return c, sealed, true, err
}

// ListCredentials lists every host's credential, without secrets.
func (s *Credentials) ListCredentials(ctx context.Context) ([]registry.Credential, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT host, username, insecure, updated_at FROM registry_credentials ORDER BY host`)
	if err != nil {
		return nil, fmt.Errorf("db: list credentials: %w", err)
	}
	defer rows.Close()
	out := []registry.Credential{}
	for rows.Next() {
		var c registry.Credential
		var at string
		if err := rows.Scan(&c.Host, &c.Username, &c.Insecure, &at); err != nil {
			return nil, fmt.Errorf("db: list credentials: %w", err)
		}
		if c.UpdatedAt, err = parseTime(at); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteCredential removes host's credential, reporting whether there was one.
func (s *Credentials) DeleteCredential(ctx context.Context, host string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM registry_credentials WHERE host = ?`, host)
	if err != nil {
		return false, fmt.Errorf("db: delete credential for %s: %w", host, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
