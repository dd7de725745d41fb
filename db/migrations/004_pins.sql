-- Pinned builds are never removed by retention, so neither are their blobs.
ALTER TABLE builds ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;

-- Retention by age reads old finished builds.
CREATE INDEX builds_by_created ON builds (created_at);

-- Checksums of a build's downloads, computed once in the background.
CREATE TABLE build_archives (
	build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	format   TEXT NOT NULL,
	platform TEXT NOT NULL,
	size     INTEGER NOT NULL,
	sha256   TEXT NOT NULL,
	PRIMARY KEY (build_id, format, platform)
) STRICT, WITHOUT ROWID;
