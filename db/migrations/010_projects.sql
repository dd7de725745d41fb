-- Projects: a git repository built on every push its webhook announces.
-- secret is nonce || AES-GCM(webhook secret), sealed with the key file's key
-- and "project:<name>" as additional data.
CREATE TABLE projects (
	name            TEXT PRIMARY KEY,
	git_url         TEXT NOT NULL,
	branches        TEXT NOT NULL,             -- glob over branch names; tags always build
	dockerfile_path TEXT NOT NULL,
	context_dir     TEXT NOT NULL,
	platforms       TEXT NOT NULL,             -- JSON array
	build_args      TEXT NOT NULL,             -- JSON object
	tags            TEXT NOT NULL,             -- JSON array of templates ({{branch}}, {{short_sha}}, {{tag}})
	push            INTEGER NOT NULL,
	secret          BLOB NOT NULL,
	created_by      TEXT NOT NULL,
	created_at      TEXT NOT NULL,
	updated_at      TEXT NOT NULL
) STRICT;

-- Which builds a project started, and webhook deliveries already acted on:
-- a delivery id seen twice starts one build.
CREATE TABLE project_builds (
	project  TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE ON UPDATE CASCADE,
	build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	delivery TEXT NOT NULL,                    -- '' for "Build now"
	event    TEXT NOT NULL,                    -- push, tag, manual
	ref      TEXT NOT NULL,
	sha      TEXT NOT NULL,
	PRIMARY KEY (project, build_id)
) STRICT;
CREATE UNIQUE INDEX project_deliveries ON project_builds (project, delivery) WHERE delivery != '';

-- /readyz proves the database takes a write by updating this one row.
CREATE TABLE readiness (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	checked_at TEXT NOT NULL
) STRICT;
