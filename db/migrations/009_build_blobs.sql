-- What each build references in the content store, recorded with the build
-- (its uploaded context) and with its result (the index and everything it
-- reaches: manifests, configs, layers, attestations). The pull API serves a
-- blob under a name only when a build that name resolves to reaches it
-- (image = 1; an uploaded context is never pulled), and the storage view adds
-- up from here instead of walking every build on every request.
CREATE TABLE build_blobs (
	build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	digest   TEXT NOT NULL,
	size     INTEGER NOT NULL,
	image    INTEGER NOT NULL,
	PRIMARY KEY (build_id, digest)
) STRICT, WITHOUT ROWID;

CREATE INDEX build_blobs_by_digest ON build_blobs (digest, build_id);

-- Every digest some build references, and how many builds do: a blob used
-- by one build is freed with it, one used by more is shared.
CREATE TABLE blob_usage (
	digest TEXT PRIMARY KEY,
	size   INTEGER NOT NULL,
	builds INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The store-wide sums, kept by the triggers below so the storage view
-- shows them at once whatever the number of builds.
CREATE TABLE storage_totals (
	id               INTEGER PRIMARY KEY CHECK (id = 1),
	referenced_bytes INTEGER NOT NULL,
	shared_bytes     INTEGER NOT NULL,
	blobs            INTEGER NOT NULL
) STRICT;
INSERT INTO storage_totals VALUES (1, 0, 0, 0);

CREATE TRIGGER build_blobs_added AFTER INSERT ON build_blobs BEGIN
	INSERT INTO blob_usage (digest, size, builds) VALUES (NEW.digest, NEW.size, 1)
		ON CONFLICT (digest) DO UPDATE SET builds = builds + 1;
END;

CREATE TRIGGER build_blobs_removed AFTER DELETE ON build_blobs BEGIN
	UPDATE blob_usage SET builds = builds - 1 WHERE digest = OLD.digest;
	DELETE FROM blob_usage WHERE digest = OLD.digest AND builds <= 0;
END;

CREATE TRIGGER blob_usage_added AFTER INSERT ON blob_usage BEGIN
	UPDATE storage_totals SET referenced_bytes = referenced_bytes + NEW.size, blobs = blobs + 1,
		shared_bytes = shared_bytes + CASE WHEN NEW.builds > 1 THEN NEW.size ELSE 0 END WHERE id = 1;
END;

CREATE TRIGGER blob_usage_changed AFTER UPDATE OF builds ON blob_usage BEGIN
	UPDATE storage_totals SET shared_bytes = shared_bytes + CASE
		WHEN OLD.builds <= 1 AND NEW.builds > 1 THEN NEW.size
		WHEN OLD.builds > 1 AND NEW.builds <= 1 THEN -NEW.size
		ELSE 0 END WHERE id = 1;
END;

CREATE TRIGGER blob_usage_removed AFTER DELETE ON blob_usage BEGIN
	UPDATE storage_totals SET referenced_bytes = referenced_bytes - OLD.size, blobs = blobs - 1,
		shared_bytes = shared_bytes - CASE WHEN OLD.builds > 1 THEN OLD.size ELSE 0 END WHERE id = 1;
END;

-- indexed is set once a build's build_blobs and build_tags rows follow this
-- schema; builds from before it are indexed at start-up. total_bytes is the
-- build's own size (context and result), for the storage view's biggest-first order.
ALTER TABLE builds ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN total_bytes INTEGER NOT NULL DEFAULT 0;
CREATE INDEX builds_not_indexed ON builds (id) WHERE indexed = 0;
CREATE INDEX builds_by_size ON builds (total_bytes, id) WHERE total_bytes > 0;

-- Pull names now carry the registry host ("docker.io/team/app",
-- "127.0.0.1_5000/team/app"), so tags of different registries never share
-- one: the old rows are rebuilt when their build is indexed.
DELETE FROM build_tags;
