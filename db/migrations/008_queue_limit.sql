-- The per-user limit on queued builds counts a user's queued builds at every submission.
CREATE INDEX builds_queued_by_user ON builds (created_by) WHERE status = 'queued';
