// Package accounts is who may use Manifold: users and their roles,
// argon2id passwords, browser sessions, scoped API tokens, login back-off,
// the audit log, and each user's sealed build secrets.
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"manifold/builds"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// Sealer seals and opens secrets with associated data (the registry
// credentials' AEAD in Manifold); build secrets are stored only sealed.
type Sealer interface {
	Seal(plain, ad string) ([]byte, error)
	Open(sealed []byte, ad string) (string, error)
}

// Role is what a user may do: viewers read, builders also start, cancel and
// push builds, admins also manage users, registries and settings.
type Role string

// Roles, weakest first.
const (
	RoleViewer  Role = "viewer"
	RoleBuilder Role = "builder"
	RoleAdmin   Role = "admin"
)

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleBuilder:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Allows reports whether r includes need.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && need.rank() > 0 }

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if r.rank() == 0 {
		return "", builds.CodeErrorf(builds.EInvalid, "invalid_role", "role %q is not one of viewer, builder, admin", s)
	}
	return r, nil
}

// ScopeRole maps a token scope (read, build, admin) to the role it grants at most.
func ScopeRole(scope string) (Role, error) {
	switch scope {
	case "read":
		return RoleViewer, nil
	case "build":
		return RoleBuilder, nil
	case "admin":
		return RoleAdmin, nil
	}
	return "", builds.CodeErrorf(builds.EInvalid, "invalid_scope", "scope %q is not one of read, build, admin", scope)
}

// User is an account.
type User struct {
	ID          int64      `json:"id"`
	Name        string     `json:"name"`
	Role        Role       `json:"role"`
	CreatedAt   time.Time  `json:"created_at"`
	LockedUntil *time.Time `json:"locked_until,omitempty"`
}

// Token is an API token; its secret is shown once and stored hashed.
type Token struct {
	ID        int64      `json:"id"`
	User      string     `json:"user"`
	Name      string     `json:"name"`
	Scope     string     `json:"scope"`
	CreatedAt time.Time  `json:"created_at"`
	LastUsed  *time.Time `json:"last_used"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// Session is a browser login.
type Session struct {
	User      User
	CSRF      string
	LastSeen  time.Time
	ExpiresAt time.Time
}

// AuditEntry is one thing someone did.
type AuditEntry struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	IP     string    `json:"ip"`
	Detail string    `json:"detail"`
}

// Identity is who a request acts for.
type Identity struct {
	User   string
	UserID int64
	Role   Role
	// Via is "session", "token", "setup" (no accounts yet, loopback) or "anonymous".
	Via     string
	CSRF    string // the session's CSRF token
	TokenID int64
}

// Store keeps users, sessions, tokens, the audit log and secrets.
type Store interface {
	CountUsers(ctx context.Context) (int, error)
	CreateUser(ctx context.Context, u User, hash string) (User, error)
	UserByName(ctx context.Context, name string) (u User, hash string, failed int, err error)
	ListUsers(ctx context.Context) ([]User, error)
	UpdateUser(ctx context.Context, name string, role Role, hash string) error
	DeleteUser(ctx context.Context, name string) error
	LoginFailed(ctx context.Context, id int64, lockUntil *time.Time) error
	LoginSucceeded(ctx context.Context, id int64) error

	CreateSession(ctx context.Context, idHash string, userID int64, csrf string, at, expires time.Time) error
	SessionByHash(ctx context.Context, idHash string) (Session, error)
	TouchSession(ctx context.Context, idHash string, at time.Time) error
	DeleteSession(ctx context.Context, idHash string) error

	CreateToken(ctx context.Context, userID int64, name, hash, scope string, at time.Time) (Token, error)
	TokenByHash(ctx context.Context, hash string) (Token, User, error)
	TouchToken(ctx context.Context, id int64, at time.Time) error
	ListTokens(ctx context.Context, user string) ([]Token, error)
	RevokeToken(ctx context.Context, id int64, user string, at time.Time) error

	AddAudit(ctx context.Context, e AuditEntry) error
	ListAudit(ctx context.Context, before int64, limit int) ([]AuditEntry, error)

	PutSecret(ctx context.Context, userID int64, name string, sealed []byte, at time.Time) error
	SecretNames(ctx context.Context, userID int64) ([]string, error)
	GetSecret(ctx context.Context, userID int64, name string) ([]byte, bool, error)
	DeleteSecret(ctx context.Context, userID int64, name string) (bool, error)
}

// Config tunes sessions and lockouts.
type Config struct {
	IdleTimeout     time.Duration // a session unused this long ends; 12 h when zero
	AbsoluteTimeout time.Duration // a session ends this long after login whatever; 7 days when zero
	MaxFailures     int           // failed logins in a row, per user name and address, before each next try waits; 5 when zero
	Lockout         time.Duration // the longest such wait (it doubles from 15 s); 5 min when zero
	IPAttempts      int           // failed logins per IP per minute before it must wait; 30 when zero
}

// Service is the account service: users, logins, sessions, tokens, audit, secrets.
type Service struct {
	store  Store
	sealer Sealer // seals build secrets
	cfg    Config

	mu         sync.Mutex
	ipAttempts map[string][]time.Time
	backoff    map[string]*loginBackoff // by user name and address
	dummyHash  string
	// hasUsers latches once an account exists: no route deletes the last
	// one (nobody deletes themselves), so setup mode never comes back.
	hasUsers atomic.Bool
}

// New wires the account service.
func New(store Store, sealer Sealer, cfg Config) *Service {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 12 * time.Hour
	}
	if cfg.AbsoluteTimeout <= 0 {
		cfg.AbsoluteTimeout = 7 * 24 * time.Hour
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 5
	}
	if cfg.Lockout <= 0 {
		cfg.Lockout = 5 * time.Minute
	}
	if cfg.IPAttempts <= 0 {
		cfg.IPAttempts = 30
	}
	return &Service{store: store, sealer: sealer, cfg: cfg, ipAttempts: map[string][]time.Time{}, backoff: map[string]*loginBackoff{}, dummyHash: HashPassword("not a real password, for timing")}
}

// Argon2id parameters (RFC 9106's second recommendation, lighter on memory).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword hashes a password with argon2id and a random salt.
func HashPassword(password string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// checkPassword compares in constant time.
func checkPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// RandomSecret returns a URL-safe random string with 256 bits in it.
func RandomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(b), "="))
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// SetupMode reports whether no account exists yet.
// Every request without credentials asks, so the answer is cached once false.
func (a *Service) SetupMode(ctx context.Context) (bool, error) {
	if a.hasUsers.Load() {
		return false, nil
	}
	n, err := a.store.CountUsers(ctx)
	if err == nil && n > 0 {
		a.hasUsers.Store(true)
	}
	return n == 0, err
}

// CreateUser adds an account.
func (a *Service) CreateUser(ctx context.Context, name, password string, role Role) (User, error) {
	if !userName.MatchString(name) {
		return User{}, builds.CodeErrorf(builds.EInvalid, "invalid_user", "user name %q is not valid; use 1 to 64 lower-case letters, digits, '.', '_' or '-'", name)
	}
	if role.rank() == 0 {
		return User{}, builds.CodeErrorf(builds.EInvalid, "invalid_role", "role %q is not one of viewer, builder, admin", role)
	}
	if err := checkNewPassword(password); err != nil {
		return User{}, err
	}
	return a.store.CreateUser(ctx, User{Name: name, Role: role, CreatedAt: time.Now().UTC()}, HashPassword(password))
}

func checkNewPassword(p string) error {
	if len(p) < 10 {
		return builds.CodeErrorf(builds.EInvalid, "weak_password", "the password has %d characters; use at least 10", len(p))
	}
	if len(p) > 1024 {
		return builds.CodeErrorf(builds.EInvalid, "weak_password", "the password is over 1024 characters")
	}
	return nil
}

// UpdateUser changes a user's role and, when password is not empty, password.
func (a *Service) UpdateUser(ctx context.Context, name string, role Role, password string) error {
	if role.rank() == 0 {
		return builds.CodeErrorf(builds.EInvalid, "invalid_role", "role %q is not one of viewer, builder, admin", role)
	}
	hash := ""
	if password != "" {
		if err := checkNewPassword(password); err != nil {
			return err
		}
		hash = HashPassword(password)
	}
	return a.store.UpdateUser(ctx, name, role, hash)
}

// DeleteUser removes an account with its sessions, tokens and secrets.
func (a *Service) DeleteUser(ctx context.Context, name string) error {
	return a.store.DeleteUser(ctx, name)
}

// Users lists the accounts.
func (a *Service) Users(ctx context.Context) ([]User, error) { return a.store.ListUsers(ctx) }

// errBadLogin is the one answer for an unknown user and a wrong password.
var errBadLogin = builds.CodeErrorf(builds.EUnauthorized, "bad_login", "wrong user name or password")

// allowIP applies the per-IP limit: an address with too many failed logins
// in the last minute waits; successful logins never count against it.
func (a *Service) allowIP(ip string) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	var recent []time.Time
	for _, t := range a.ipAttempts[ip] {
		if now.Sub(t) < time.Minute {
			recent = append(recent, t)
		}
	}
	a.ipAttempts[ip] = recent
	if len(recent) >= a.cfg.IPAttempts {
		return time.Minute - now.Sub(recent[0]), false
	}
	return 0, true
}

// ipFailed records a failed login from ip.
func (a *Service) ipFailed(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.ipAttempts) > 100_000 { // bounded: forget every caller wholesale
		a.ipAttempts = map[string][]time.Time{}
	}
	a.ipAttempts[ip] = append(a.ipAttempts[ip], time.Now())
}

func waitText(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%d seconds", int(d.Seconds())+1)
	}
	return fmt.Sprintf("%d minutes", int(d.Minutes())+1)
}

// loginBackoff slows down guessing one user name from one address.
type loginBackoff struct {
	failures int
	until    time.Time // no try before this
	last     time.Time
}

// firstBackoff is the first wait after MaxFailures failures; each further failure doubles it.
const firstBackoff = 15 * time.Second

func backoffKey(name, ip string) string { return strings.ToLower(name) + "\x00" + ip }

// waiting reports how long name must wait from ip before its next try.
func (a *Service) waiting(name, ip string, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if b := a.backoff[backoffKey(name, ip)]; b != nil && now.Before(b.until) {
		return b.until.Sub(now)
	}
	return 0
}

// loginFailed counts a failure of name from ip and returns the wait it now
// has before the next try (0 for the first MaxFailures failures).
func (a *Service) loginFailed(name, ip string, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.backoff) > 100_000 { // bounded: drop what is stale, else everything
		for k, b := range a.backoff {
			if now.Sub(b.last) > time.Hour {
				delete(a.backoff, k)
			}
		}
		if len(a.backoff) > 100_000 {
			a.backoff = map[string]*loginBackoff{}
		}
	}
	k := backoffKey(name, ip)
	b := a.backoff[k]
	if b == nil || now.Sub(b.last) > time.Hour {
		b = &loginBackoff{}
		a.backoff[k] = b
	}
	b.failures++
	b.last = now
	if b.failures < a.cfg.MaxFailures {
		return 0
	}
	wait := a.cfg.Lockout
	if n := b.failures - a.cfg.MaxFailures; n < 16 {
		wait = min(firstBackoff<<n, a.cfg.Lockout)
	}
	b.until = now.Add(wait)
	return wait
}

func (a *Service) loginSucceeded(name, ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.backoff, backoffKey(name, ip))
}

func tooManyFailures(wait time.Duration) error {
	return builds.CodeErrorf(builds.ETooMany, "too_many_failures", "too many failed logins for this user name from your address; try again in %s", waitText(wait))
}

// Login checks a password and opens a session; it returns the session's secret.
// An unknown user and a wrong password get the same answer in the same time.
// Failures slow down further tries of that name from that address only, so
// nobody elsewhere can lock the real user out; there is no account-wide lock.
func (a *Service) Login(ctx context.Context, name, password, ip string) (string, Session, error) {
	if wait, ok := a.allowIP(ip); !ok {
		return "", Session{}, builds.CodeErrorf(builds.ETooMany, "too_many_attempts", "too many login attempts from your address; try again in %s", waitText(wait))
	}
	now := time.Now().UTC()
	if wait := a.waiting(name, ip, now); wait > 0 {
		return "", Session{}, tooManyFailures(wait)
	}
	fail := func() error {
		a.ipFailed(ip)
		if wait := a.loginFailed(name, ip, now); wait > 0 {
			return tooManyFailures(wait)
		}
		return errBadLogin
	}
	u, hash, _, err := a.store.UserByName(ctx, name)
	if err != nil {
		if builds.ErrorKind(err) == builds.ENotFound {
			checkPassword(a.dummyHash, password) // the same work as for a real user
			return "", Session{}, fail()
		}
		return "", Session{}, err
	}
	if !checkPassword(hash, password) {
		// Counted for the admin's view; it never locks the account.
		if err := a.store.LoginFailed(ctx, u.ID, nil); err != nil {
			return "", Session{}, err
		}
		return "", Session{}, fail()
	}
	a.loginSucceeded(name, ip)
	if err := a.store.LoginSucceeded(ctx, u.ID); err != nil {
		return "", Session{}, err
	}
	secret, csrf := RandomSecret(), RandomSecret()
	s := Session{User: u, CSRF: csrf, LastSeen: now, ExpiresAt: now.Add(a.cfg.AbsoluteTimeout)}
	if err := a.store.CreateSession(ctx, hashSecret(secret), u.ID, csrf, now, s.ExpiresAt); err != nil {
		return "", Session{}, err
	}
	return secret, s, nil
}

// Logout ends a session for good.
func (a *Service) Logout(ctx context.Context, secret string) error {
	return a.store.DeleteSession(ctx, hashSecret(secret))
}

// SessionIdentity resolves a session cookie, enforcing idle and absolute expiry.
func (a *Service) SessionIdentity(ctx context.Context, secret string) (Identity, error) {
	s, err := a.store.SessionByHash(ctx, hashSecret(secret))
	if err != nil {
		return Identity{}, builds.CodeErrorf(builds.EUnauthorized, "session_expired", "your session has ended; log in again")
	}
	now := time.Now().UTC()
	if now.After(s.ExpiresAt) || now.Sub(s.LastSeen) > a.cfg.IdleTimeout {
		_ = a.store.DeleteSession(ctx, hashSecret(secret))
		return Identity{}, builds.CodeErrorf(builds.EUnauthorized, "session_expired", "your session has ended; log in again")
	}
	if now.Sub(s.LastSeen) > time.Minute { // write at most once a minute
		_ = a.store.TouchSession(ctx, hashSecret(secret), now)
	}
	return Identity{User: s.User.Name, UserID: s.User.ID, Role: s.User.Role, Via: "session", CSRF: s.CSRF}, nil
}

// TokenIdentity resolves an API token; its role is the lesser of the user's and the scope's.
func (a *Service) TokenIdentity(ctx context.Context, secret string) (Identity, error) {
	t, u, err := a.store.TokenByHash(ctx, hashSecret(secret))
	if err != nil || t.RevokedAt != nil {
		return Identity{}, builds.CodeErrorf(builds.EUnauthorized, "bad_token", "the API token is unknown or revoked")
	}
	role, _ := ScopeRole(t.Scope)
	if u.Role.rank() < role.rank() {
		role = u.Role
	}
	now := time.Now().UTC()
	if t.LastUsed == nil || now.Sub(*t.LastUsed) > time.Minute {
		_ = a.store.TouchToken(ctx, t.ID, now)
	}
	return Identity{User: u.Name, UserID: u.ID, Role: role, Via: "token", TokenID: t.ID}, nil
}

// CreateToken makes an API token for user; the secret is returned once.
func (a *Service) CreateToken(ctx context.Context, user, name, scope string) (string, Token, error) {
	if _, err := ScopeRole(scope); err != nil {
		return "", Token{}, err
	}
	if name == "" {
		name = "token"
	}
	if len(name) > 100 || strings.ContainsAny(name, "\x00\n\r") {
		return "", Token{}, builds.CodeErrorf(builds.EInvalid, "invalid_token_name", "a token name is at most 100 characters on one line")
	}
	u, _, _, err := a.store.UserByName(ctx, user)
	if err != nil {
		return "", Token{}, err
	}
	secret := "mf_" + RandomSecret()
	t, err := a.store.CreateToken(ctx, u.ID, name, hashSecret(secret), scope, time.Now().UTC())
	return secret, t, err
}

// MayBuild says whether user exists with the builder role or above (the
// builder endpoint asks at every handshake).
func (a *Service) MayBuild(ctx context.Context, user string) error {
	u, _, _, err := a.store.UserByName(ctx, user)
	if err != nil {
		return err
	}
	if !u.Role.Allows(RoleBuilder) {
		return builds.CodeErrorf(builds.EForbidden, "forbidden", "user %s has the %s role; building needs builder or admin", user, u.Role)
	}
	return nil
}

// Tokens lists a user's tokens ("" for everyone's).
func (a *Service) Tokens(ctx context.Context, user string) ([]Token, error) {
	return a.store.ListTokens(ctx, user)
}

// RevokeToken revokes a token of user ("" when an admin revokes anyone's).
func (a *Service) RevokeToken(ctx context.Context, id int64, user string) error {
	return a.store.RevokeToken(ctx, id, user, time.Now().UTC())
}

// Audit records what someone did; a failure to record is logged, not fatal.
func (a *Service) Audit(ctx context.Context, actor, action, target, ip, detail string) error {
	return a.store.AddAudit(context.WithoutCancel(ctx), AuditEntry{At: time.Now().UTC(), Actor: actor, Action: action, Target: target, IP: ip, Detail: detail})
}

// AuditLog pages through the audit log, newest first.
func (a *Service) AuditLog(ctx context.Context, before int64, limit int) ([]AuditEntry, error) {
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	return a.store.ListAudit(ctx, before, limit)
}

type identityKey struct{}

// WithIdentity returns ctx carrying who the request acts for.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns who the request acts for; ok is false for nobody.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok && id.Role != ""
}

var secretName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// MaxSecretSize bounds one build secret.
const MaxSecretSize = 512 << 10

func secretAD(userID int64, name string) string { return fmt.Sprintf("secret/%d/%s", userID, name) }

// SetSecret stores a build secret for a user, sealed like registry passwords.
func (a *Service) SetSecret(ctx context.Context, userID int64, name, value string) error {
	if !secretName.MatchString(name) {
		return builds.CodeErrorf(builds.EInvalid, "invalid_secret", "secret name %q is not valid; use letters, digits, '.', '_' and '-' (at most 64)", name)
	}
	if len(value) > MaxSecretSize {
		return builds.CodeErrorf(builds.EInvalid, "invalid_secret", "the secret is over %d bytes", MaxSecretSize)
	}
	if userID == 0 {
		return builds.CodeErrorf(builds.EInvalid, "no_user", "secrets belong to users; create a user first")
	}
	sealed, err := a.sealer.Seal(value, secretAD(userID, name))
	if err != nil {
		return err
	}
	return a.store.PutSecret(ctx, userID, name, sealed, time.Now().UTC())
}

// SecretNames lists a user's secrets (never their values).
func (a *Service) SecretNames(ctx context.Context, userID int64) ([]string, error) {
	return a.store.SecretNames(ctx, userID)
}

// DeleteSecret removes a user's secret.
func (a *Service) DeleteSecret(ctx context.Context, userID int64, name string) error {
	ok, err := a.store.DeleteSecret(ctx, userID, name)
	if err != nil {
		return err
	}
	if !ok {
		return builds.CodeErrorf(builds.ENotFound, "secret_not_found", "you have no secret named %q", name)
	}
	return nil
}

// CheckSecrets reports the first of names the user has no secret for.
func (a *Service) CheckSecrets(ctx context.Context, userID int64, names []string) error {
	for _, n := range names {
		if !secretName.MatchString(n) {
			return builds.CodeErrorf(builds.EInvalid, "invalid_secret", "secret name %q is not valid", n)
		}
		if _, ok, err := a.store.GetSecret(ctx, userID, n); err != nil {
			return err
		} else if !ok {
			return builds.CodeErrorf(builds.EInvalid, "secret_not_found", "you have no secret named %q; add it under Account first", n)
		}
	}
	return nil
}

// BuildSecrets opens a user's named secrets for one solve.
func (a *Service) BuildSecrets(ctx context.Context, user string, names []string) (map[string][]byte, error) {
	u, _, _, err := a.store.UserByName(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("the build's owner %q is gone, and with them the secrets it asked for", user)
	}
	out := map[string][]byte{}
	for _, n := range names {
		sealed, ok, err := a.store.GetSecret(ctx, u.ID, n)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("secret %q is no longer stored for %s", n, user)
		}
		v, err := a.sealer.Open(sealed, secretAD(u.ID, n))
		if err != nil {
			return nil, err
		}
		out[n] = []byte(v)
	}
	return out, nil
}
