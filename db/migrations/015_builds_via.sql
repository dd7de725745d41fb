-- How a build reached Manifold when not through its own queue: 'buildx' for
-- a `docker buildx` build through the builder endpoint, '' otherwise.
ALTER TABLE builds ADD COLUMN via TEXT NOT NULL DEFAULT '';

-- The history's via= filter reads it newest first.
CREATE INDEX builds_by_via ON builds (via, id);
