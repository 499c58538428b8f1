-- The notification messages about a session, deleted with it (their
-- bodies hold its name, its text, the input of its tools); those of
-- sessions deleted before go now.
CREATE INDEX notification_messages_by_session ON notification_messages (session_id);
DELETE FROM notification_messages
WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE sessions.id = notification_messages.session_id);
