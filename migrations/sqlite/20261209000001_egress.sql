-- The hosts a session's sandbox may reach through the egress proxy, as a
-- JSON list of allowlist entries ('[]': no network at all).

ALTER TABLE sessions ADD COLUMN egress TEXT NOT NULL DEFAULT '[]';
