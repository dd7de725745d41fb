-- Builds, their per-platform manifests, their steps and their events (log included).
CREATE TABLE builds (
	id           TEXT PRIMARY KEY,          -- time-ordered, so ORDER BY id is newest last
	status       TEXT NOT NULL,
	platforms    TEXT NOT NULL,             -- JSON array of os/arch[/variant]
	dockerfile   TEXT NOT NULL,
	options      TEXT NOT NULL,             -- JSON of builds.Options: build args, target, labels, no_cache
	ref          TEXT NOT NULL,             -- SolveOpt.Ref, BuildKit's history key
	created_at   TEXT NOT NULL,
	started_at   TEXT,
	finished_at  TEXT,
	error        TEXT NOT NULL DEFAULT '',
	error_step   INTEGER NOT NULL DEFAULT 0, -- #N of the failing step
	error_line   INTEGER NOT NULL DEFAULT 0, -- Dockerfile line BuildKit blamed
	index_digest TEXT NOT NULL DEFAULT '',
	tags         TEXT NOT NULL DEFAULT '[]', -- JSON array
	pushed       INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Recover and the queue read builds by status.
CREATE INDEX builds_by_status ON builds (status, id);

CREATE TABLE build_manifests (
	build_id      TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	position      INTEGER NOT NULL,
	platform      TEXT NOT NULL,
	digest        TEXT NOT NULL,
	media_type    TEXT NOT NULL,
	config_digest TEXT NOT NULL,
	size          INTEGER NOT NULL,
	image_size    INTEGER NOT NULL,
	PRIMARY KEY (build_id, position)
) STRICT;

CREATE TABLE build_steps (
	build_id    TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	digest      TEXT NOT NULL,
	number      INTEGER NOT NULL,           -- #N in the log
	name        TEXT NOT NULL,
	platform    TEXT NOT NULL,
	cached      INTEGER NOT NULL,
	started_at  TEXT,
	finished_at TEXT,
	error       TEXT NOT NULL,
	PRIMARY KEY (build_id, digest)
) STRICT;

-- Everything a build emitted, in order: steps, log lines, warnings, status
-- changes, done. seq is the SSE event id; replay reads by (build_id, seq).
CREATE TABLE build_events (
	build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	seq      INTEGER NOT NULL,
	type     TEXT NOT NULL,
	time     TEXT NOT NULL,
	data     TEXT NOT NULL,
	PRIMARY KEY (build_id, seq)
) STRICT, WITHOUT ROWID;
