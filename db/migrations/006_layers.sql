-- Layer listings, computed once by streaming a layer blob, then served from
-- here. Keyed by the layer's digest: content-addressed, never stale.
CREATE TABLE layer_listings (
	digest       TEXT PRIMARY KEY,
	uncompressed INTEGER NOT NULL,
	entries      INTEGER NOT NULL,
	truncated    TEXT NOT NULL, -- why the listing stops early, or ''
	listed_at    TEXT NOT NULL
) STRICT;

CREATE TABLE layer_files (
	digest TEXT NOT NULL REFERENCES layer_listings (digest) ON DELETE CASCADE,
	seq    INTEGER NOT NULL,
	path   TEXT NOT NULL,
	type   TEXT NOT NULL,
	size   INTEGER NOT NULL,
	mode   INTEGER NOT NULL,
	uid    INTEGER NOT NULL,
	gid    INTEGER NOT NULL,
	link   TEXT NOT NULL,
	PRIMARY KEY (digest, seq)
) STRICT, WITHOUT ROWID;
