-- The trigger whose delivery started a session, as JSON ({"id", "name"});
-- NULL when none did.
ALTER TABLE sessions ADD COLUMN triggered_by TEXT;
