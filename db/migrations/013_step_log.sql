-- The build page loads a step's log when the reader opens it, and counts
-- each step's lines without reading them: log and warning events carry
-- their step's #N in a column of their own, indexed with the build, and
-- each step's line count is kept as lines are recorded.
ALTER TABLE build_events ADD COLUMN step INTEGER NOT NULL DEFAULT 0;
UPDATE build_events SET step = COALESCE(json_extract(data, '$.number'), 0) WHERE type IN ('log', 'warning');
CREATE INDEX build_events_by_step ON build_events (build_id, type, step, seq);

CREATE TABLE build_log_counts (
	build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	step     INTEGER NOT NULL,
	lines    INTEGER NOT NULL,
	PRIMARY KEY (build_id, step)
) STRICT, WITHOUT ROWID;

INSERT INTO build_log_counts (build_id, step, lines)
	SELECT build_id, step, count(*) FROM build_events WHERE type = 'log' GROUP BY build_id, step;

-- A build's warnings (or any one type of event) in order, without reading its log.
CREATE INDEX build_events_by_type ON build_events (build_id, type, seq);
