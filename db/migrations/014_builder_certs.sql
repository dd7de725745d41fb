-- Client certificates Manifold's builder CA issued for `docker buildx`
-- (never their keys): the endpoint accepts one only while it is recorded
-- here, unexpired and not revoked.
CREATE TABLE builder_certs (
	serial     TEXT PRIMARY KEY,
	user       TEXT NOT NULL,
	created_at TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	revoked_at TEXT
) STRICT, WITHOUT ROWID;

CREATE INDEX builder_certs_by_user ON builder_certs (user, created_at);
