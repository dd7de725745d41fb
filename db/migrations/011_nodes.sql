-- Native nodes: which BuildKit node built each platform, whether it ran
-- emulated there, and why it was chosen.
ALTER TABLE build_manifests ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE build_manifests ADD COLUMN emulated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE build_steps ADD COLUMN node TEXT NOT NULL DEFAULT '';

-- One row per platform of a build: where it runs or ran, why there, how it
-- went, and the index that node's solve stored (kept so that a retry of a
-- failed platform can be merged with the platforms that succeeded).
-- cache_key names what the build makes (its first tag, or its Dockerfile
-- and context): the node that last built it successfully has a warm cache.
CREATE TABLE build_placements (
	build_id     TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	platform     TEXT NOT NULL,
	node         TEXT NOT NULL,
	emulated     INTEGER NOT NULL,
	reason       TEXT NOT NULL,
	status       TEXT NOT NULL,
	error        TEXT NOT NULL DEFAULT '',
	index_digest TEXT NOT NULL DEFAULT '',
	cache_key    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (build_id, platform)
) STRICT, WITHOUT ROWID;

CREATE INDEX build_placements_warm ON build_placements (cache_key, platform, status, build_id);
