-- History filters (issue 13): every filter of GET /api/v1/builds has an index
-- that yields builds newest first, so a filtered page stops after LIMIT rows.
-- status uses builds_by_status (status, id); since/until are id ranges (ids
-- carry their creation time).

-- user=: who started it.
CREATE INDEX builds_by_user ON builds (created_by, id);

-- tag= naming a repository only: its builds newest first (build_tags' own key
-- is (repo, tag, build_id), which serves a tag).
CREATE TABLE build_repos (
	repo     TEXT NOT NULL,
	build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	PRIMARY KEY (repo, build_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX build_repos_by_build ON build_repos (build_id);
INSERT OR IGNORE INTO build_repos (repo, build_id) SELECT repo, build_id FROM build_tags;
CREATE TRIGGER build_repos_fill AFTER INSERT ON build_tags BEGIN
	INSERT OR IGNORE INTO build_repos (repo, build_id) VALUES (new.repo, new.build_id);
END;

-- platform=: the platforms a build asked for.
CREATE TABLE build_platforms (
	platform TEXT NOT NULL,
	build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	PRIMARY KEY (platform, build_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX build_platforms_by_build ON build_platforms (build_id);
INSERT OR IGNORE INTO build_platforms (platform, build_id) SELECT j.value, b.id FROM builds b, json_each(b.platforms) j;
CREATE TRIGGER build_platforms_fill AFTER INSERT ON builds BEGIN
	INSERT OR IGNORE INTO build_platforms (platform, build_id) SELECT value, new.id FROM json_each(new.platforms);
END;

-- q=: free text over tags and the Dockerfile, an FTS5 index over builds'
-- own columns with the trigram tokenizer (substring search, case-insensitive).
CREATE VIRTUAL TABLE builds_text USING fts5(tags, dockerfile, content = 'builds', content_rowid = 'rowid', tokenize = 'trigram');
INSERT INTO builds_text (builds_text) VALUES ('rebuild');
CREATE TRIGGER builds_text_insert AFTER INSERT ON builds BEGIN
	INSERT INTO builds_text (rowid, tags, dockerfile) VALUES (new.rowid, new.tags, new.dockerfile);
END;
CREATE TRIGGER builds_text_delete AFTER DELETE ON builds BEGIN
	INSERT INTO builds_text (builds_text, rowid, tags, dockerfile) VALUES ('delete', old.rowid, old.tags, old.dockerfile);
END;
CREATE TRIGGER builds_text_update AFTER UPDATE OF tags, dockerfile ON builds BEGIN
	INSERT INTO builds_text (builds_text, rowid, tags, dockerfile) VALUES ('delete', old.rowid, old.tags, old.dockerfile);
	INSERT INTO builds_text (rowid, tags, dockerfile) VALUES (new.rowid, new.tags, new.dockerfile);
END;
