-- Where blobs of explored remote images can be fetched from, so layers are
-- fetched only when someone opens them.
CREATE TABLE remote_origins (
	digest     TEXT PRIMARY KEY,
	name       TEXT NOT NULL, -- the repository, e.g. 127.0.0.1:5000/team/app
	media_type TEXT NOT NULL,
	size       INTEGER NOT NULL
) STRICT;
