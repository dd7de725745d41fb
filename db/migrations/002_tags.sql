-- The repositories and tags builds carry, for the pull API: the newest
-- succeeded build with a tag wins. repo is the tag's path without the
-- registry host ("team/app"; docker.io images also as "app").
CREATE TABLE build_tags (
	build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	repo     TEXT NOT NULL,
	tag      TEXT NOT NULL,
	PRIMARY KEY (repo, tag, build_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX build_tags_by_build ON build_tags (build_id);

-- The pull API lists succeeded builds by id.
CREATE INDEX builds_succeeded ON builds (id) WHERE status = 'succeeded';

ALTER TABLE builds ADD COLUMN push_wanted INTEGER NOT NULL DEFAULT 0;

-- Every push of a build's image, at build time or promoted later.
CREATE TABLE build_pushes (
	build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	seq      INTEGER NOT NULL,
	target   TEXT NOT NULL,
	digest   TEXT NOT NULL,
	at       TEXT NOT NULL,
	ok       INTEGER NOT NULL,
	error    TEXT NOT NULL,
	PRIMARY KEY (build_id, seq)
) STRICT, WITHOUT ROWID;
