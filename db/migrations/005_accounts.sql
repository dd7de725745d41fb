-- Accounts: users with roles, browser sessions, API tokens, the audit log,
-- and build secrets. Session ids and tokens are stored as SHA-256 hashes.
CREATE TABLE users (
	id            INTEGER PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	role          TEXT NOT NULL CHECK (role IN ('viewer', 'builder', 'admin')),
	created_at    TEXT NOT NULL,
	failed_logins INTEGER NOT NULL DEFAULT 0,
	locked_until  TEXT
) STRICT;

CREATE TABLE sessions (
	id_hash    TEXT PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	csrf       TEXT NOT NULL,
	created_at TEXT NOT NULL,
	last_seen  TEXT NOT NULL,
	expires_at TEXT NOT NULL
) STRICT;

CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE tokens (
	id         INTEGER PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	hash       TEXT NOT NULL UNIQUE,
	scope      TEXT NOT NULL CHECK (scope IN ('read', 'build', 'admin')),
	created_at TEXT NOT NULL,
	last_used  TEXT,
	revoked_at TEXT
) STRICT;

CREATE INDEX tokens_by_user ON tokens (user_id);

CREATE TABLE audit (
	id     INTEGER PRIMARY KEY,
	at     TEXT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL,
	ip     TEXT NOT NULL,
	detail TEXT NOT NULL
) STRICT;

CREATE TABLE secrets (
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	sealed     BLOB NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (user_id, name)
) STRICT;

ALTER TABLE builds ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
