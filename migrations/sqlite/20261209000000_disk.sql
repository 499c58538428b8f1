-- A session's own disk limit for its workspace, in MiB (NULL: the server's
-- default).

ALTER TABLE sessions ADD COLUMN sandbox_disk_mb INTEGER;
