-- Sandboxes: per-session resource limits (NULL: the server's defaults), and
-- a key/value table for facts about this installation, such as the instance
-- id that labels the containers it owns.

ALTER TABLE sessions ADD COLUMN sandbox_memory_mb INTEGER;
ALTER TABLE sessions ADD COLUMN sandbox_cpus REAL;
ALTER TABLE sessions ADD COLUMN sandbox_pids INTEGER;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
