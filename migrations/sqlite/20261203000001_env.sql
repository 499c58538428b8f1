-- Environment variables of a session's commands, as JSON:
-- [{"name": "GREETING", "value": "hello"}].
ALTER TABLE sessions ADD COLUMN env TEXT NOT NULL DEFAULT '[]';
