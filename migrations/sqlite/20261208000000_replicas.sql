-- Prompts waiting for their run, counted where every replica sees them;
-- Stop sets it back to 0.
ALTER TABLE sessions ADD COLUMN queued_prompts INTEGER NOT NULL DEFAULT 0;

-- Which Paddock process runs a session now, until when (RFC 3339 text);
-- renewed by a heartbeat, taken over by another process once it lapsed.
CREATE TABLE session_leases (
    session_id TEXT PRIMARY KEY NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    replica    TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- The sessions a replica may have to take over, found without reading
-- every session (see Leases::orphaned_sessions).
CREATE INDEX sessions_at_work ON sessions (id)
    WHERE status IN ('starting', 'running', 'awaiting_permission') OR queued_prompts > 0;
