package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"manifold/builds"
	"manifold/builds/accounts"
)

// Accounts implements accounts.Store.
type Accounts struct{ db *DB }

// NewAccounts returns the account store over d.
func NewAccounts(d *DB) *Accounts { return &Accounts{db: d} }

var _ accounts.Store = (*Accounts)(nil)

func noUser(name string) error {
	return builds.CodeErrorf(builds.ENotFound, "user_not_found", "no user is named %q", name)
}

// CountUsers counts accounts.
func (s *Accounts) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("db: count users: %w", err)
	}
	return n, nil
}

// CreateUser inserts an account.
func (s *Accounts) CreateUser(ctx context.Context, u accounts.User, hash string) (accounts.User, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?)`,
		u.Name, hash, u.Role, formatTime(u.CreatedAt))
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return u, builds.CodeErrorf(builds.EConflict, "user_exists", "a user named %q exists already", u.Name)
		}
		return u, fmt.Errorf("db: create user: %w", err)
	}
	u.ID, _ = res.LastInsertId()
	return u, nil
}

func scanUser(row scanner) (accounts.User, string, int, error) {
	var u accounts.User
	var hash, created string
	var failed int
	var locked sql.NullString
	if err := row.Scan(&u.ID, &u.Name, &hash, &u.Role, &created, &failed, &locked); err != nil {
		return u, "", 0, err
	}
	var err error
	if u.CreatedAt, err = parseTime(created); err != nil {
		return u, "", 0, err
	}
	u.LockedUntil, err = parseTimePtr(locked)
	return u, hash, failed, err
}

const userColumns = `id, name, password_hash, role, created_at, failed_logins, locked_until`

// UserByName reads one account with its password hash and failure count.
func (s *Accounts) UserByName(ctx context.Context, name string) (accounts.User, string, int, error) {
	u, hash, failed, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return u, "", 0, noUser(name)
	}
	if err != nil {
		return u, "", 0, fmt.Errorf("db: read user: %w", err)
	}
	return u, hash, failed, nil
}

// ListUsers lists accounts by name.
func (s *Accounts) ListUsers(ctx context.Context) ([]accounts.User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("db: list users: %w", err)
	}
	defer rows.Close()
	out := []accounts.User{}
	for rows.Next() {
		u, _, _, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("db: list users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// UpdateUser sets a role and, when hash is not empty, a new password (which ends the user's sessions).
func (s *Accounts) UpdateUser(ctx context.Context, name string, role accounts.Role, hash string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE users SET role = ? WHERE name = ?`, role, name)
	if err != nil {
		return fmt.Errorf("db: update user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return noUser(name)
	}
	if hash != "" {
		if _, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE name = ?`, hash, name); err != nil {
			return fmt.Errorf("db: update user: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?)`, name); err != nil {
			return fmt.Errorf("db: update user: %w", err)
		}
	}
	return tx.Commit()
}

// DeleteUser removes an account; sessions, tokens and secrets go with it.
func (s *Accounts) DeleteUser(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("db: delete user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return noUser(name)
	}
	return nil
}

// LoginFailed counts a failure and sets a lock when given.
func (s *Accounts) LoginFailed(ctx context.Context, id int64, lockUntil *time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE users SET failed_logins = CASE WHEN ? IS NULL THEN failed_logins + 1 ELSE 0 END, locked_until = ? WHERE id = ?`,
		formatTimePtr(lockUntil), formatTimePtr(lockUntil), id)
	if err != nil {
		return fmt.Errorf("db: record failed login: %w", err)
	}
	return nil
}

// LoginSucceeded clears the failure count.
func (s *Accounts) LoginSucceeded(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?`, id)
	return err
}

// CreateSession stores a session by its hashed id.
func (s *Accounts) CreateSession(ctx context.Context, idHash string, userID int64, csrf string, at, expires time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions (id_hash, user_id, csrf, created_at, last_seen, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
		idHash, userID, csrf, formatTime(at), formatTime(at), formatTime(expires))
	if err != nil {
		return fmt.Errorf("db: create session: %w", err)
	}
	return nil
}

// SessionByHash reads a session and its user.
func (s *Accounts) SessionByHash(ctx context.Context, idHash string) (accounts.Session, error) {
	var sess accounts.Session
	var last, exp string
	row := s.db.QueryRowContext(ctx, `SELECT s.csrf, s.last_seen, s.expires_at, `+prefixed("u.", userColumns)+`
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?`, idHash)
	var u accounts.User
	var hash, created string
	var failed int
	var locked sql.NullString
	if err := row.Scan(&sess.CSRF, &last, &exp, &u.ID, &u.Name, &hash, &u.Role, &created, &failed, &locked); err != nil {
		return sess, err
	}
	sess.User = u
	var err error
	if sess.LastSeen, err = parseTime(last); err != nil {
		return sess, err
	}
	sess.ExpiresAt, err = parseTime(exp)
	return sess, err
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// TouchSession records activity.
func (s *Accounts) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_seen = ? WHERE id_hash = ?`, formatTime(at), idHash)
	return err
}

// DeleteSession ends a session.
func (s *Accounts) DeleteSession(ctx context.Context, idHash string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash)
	return err
}

// CreateToken stores a token by its hash.
func (s *Accounts) CreateToken(ctx context.Context, userID int64, name, hash, scope string, at time.Time) (accounts.Token, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO tokens (user_id, name, hash, scope, created_at) VALUES (?, ?, ?, ?, ?)`,
		userID, name, hash, scope, formatTime(at))
	if err != nil {
		return accounts.Token{}, fmt.Errorf("db: create token: %w", err)
	}
	id, _ := res.LastInsertId()
	var user string
	_ = s.db.QueryRowContext(ctx, `SELECT name FROM users WHERE id = ?`, userID).Scan(&user)
	return accounts.Token{ID: id, User: user, Name: name, Scope: scope, CreatedAt: at}, nil
}

const tokenColumns = `t.id, u.name, t.name, t.scope, t.created_at, t.last_used, t.revoked_at`

func scanToken(row scanner, extra ...any) (accounts.Token, error) {
	var t accounts.Token
	var created string
	var used, revoked sql.NullString
	if err := row.Scan(append([]any{&t.ID, &t.User, &t.Name, &t.Scope, &created, &used, &revoked}, extra...)...); err != nil {
		return t, err
	}
	var err error
	if t.CreatedAt, err = parseTime(created); err != nil {
		return t, err
	}
	if t.LastUsed, err = parseTimePtr(used); err != nil {
		return t, err
	}
	t.RevokedAt, err = parseTimePtr(revoked)
	return t, err
}

// TokenByHash reads a token and its user.
func (s *Accounts) TokenByHash(ctx context.Context, hash string) (accounts.Token, accounts.User, error) {
	var u accounts.User
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+`, u.id, u.role FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`, hash), &u.ID, &u.Role)
	u.Name = t.User
	return t, u, err
}

// TouchToken records a use.
func (s *Accounts) TouchToken(ctx context.Context, id int64, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE tokens SET last_used = ? WHERE id = ?`, formatTime(at), id)
	return err
}

// ListTokens lists a user's tokens, or everyone's when user is "".
func (s *Accounts) ListTokens(ctx context.Context, user string) ([]accounts.Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens t JOIN users u ON u.id = t.user_id
		WHERE ? = '' OR u.name = ? ORDER BY t.id DESC`, user, user)
	if err != nil {
		return nil, fmt.Errorf("db: list tokens: %w", err)
	}
	defer rows.Close()
	out := []accounts.Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("db: list tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes a token, of user when user is not "".
func (s *Accounts) RevokeToken(ctx context.Context, id int64, user string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?
		AND (? = '' OR user_id = (SELECT id FROM users WHERE name = ?))`, formatTime(at), id, user, user)
	if err != nil {
		return fmt.Errorf("db: revoke token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return builds.CodeErrorf(builds.ENotFound, "token_not_found", "no token %d is yours to revoke", id)
	}
	return nil
}

// AddAudit appends to the audit log.
func (s *Accounts) AddAudit(ctx context.Context, e accounts.AuditEntry) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit (at, actor, action, target, ip, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		formatTime(e.At), e.Actor, e.Action, e.Target, e.IP, e.Detail)
	if err != nil {
		return fmt.Errorf("db: audit: %w", err)
	}
	return nil
}

// ListAudit pages newest first by id.
func (s *Accounts) ListAudit(ctx context.Context, before int64, limit int) ([]accounts.AuditEntry, error) {
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, actor, action, target, ip, detail FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("db: list audit: %w", err)
	}
	defer rows.Close()
	out := []accounts.AuditEntry{}
	for rows.Next() {
		var e accounts.AuditEntry
		var at string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Target, &e.IP, &e.Detail); err != nil {
			return nil, err
		}
		if e.At, err = parseTime(at); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// PutSecret stores a sealed build secret.
func (s *Accounts) PutSecret(ctx context.Context, userID int64, name string, sealed []byte, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO secrets (user_id, name, sealed, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`, userID, name, sealed, formatTime(at))
	if err != nil {
		return fmt.Errorf("db: save secret: %w", err)
	}
	return nil
}

// SecretNames lists a user's secrets.
func (s *Accounts) SecretNames(ctx context.Context, userID int64) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM secrets WHERE user_id = ? ORDER BY name`, userID)
	if err != nil {
		return nil, fmt.Errorf("db: list secrets: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// GetSecret reads one sealed secret.
func (s *Accounts) GetSecret(ctx context.Context, userID int64, name string) ([]byte, bool, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, `SELECT sealed FROM secrets WHERE user_id = ? AND name = ?`, userID, name).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	return sealed, err == nil, err
}

// DeleteSecret removes a secret.
func (s *Accounts) DeleteSecret(ctx context.Context, userID int64, name string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM secrets WHERE user_id = ? AND name = ?`, userID, name)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}
