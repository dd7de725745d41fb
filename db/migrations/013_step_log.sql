-- The build page loads a step's log when the reader opens it, and counts
-- each step's lines without reading them: log and warning events carry
-- their step's #N in a column of their own, indexed with the build.
ALTER TABLE build_events ADD COLUMN step INTEGER NOT NULL DEFAULT 0;
UPDATE build_events SET step = COALESCE(json_extract(data, '$.number'), 0) WHERE type IN ('log', 'warning');
CREATE INDEX build_events_by_step ON build_events (build_id, type, step, seq);
