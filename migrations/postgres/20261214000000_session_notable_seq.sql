-- The newest event of each session that may notify (a status change or a
-- permission request): notification endpoints look only at sessions with
-- such an event past their cursor, not at every session whose log grew
-- (a process polling a host adds egress records all day).
ALTER TABLE sessions ADD COLUMN notable_seq BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET notable_seq = COALESCE((SELECT MAX(e.seq) FROM events e WHERE e.session_id = sessions.id AND e.kind IN ('status', 'permission_request')), 0);
