-- Host folders a session's sandbox reads under /mnt, as JSON:
-- [{"host": "/srv/data", "name": "data"}] (the host path resolved).
ALTER TABLE sessions ADD COLUMN mounts TEXT NOT NULL DEFAULT '[]';
