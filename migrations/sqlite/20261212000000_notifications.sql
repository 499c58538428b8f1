-- The template each session was made from, by id alone (NULL: none), so
-- that a template's notification endpoints find its sessions.
ALTER TABLE sessions ADD COLUMN template_id TEXT;
UPDATE sessions SET template_id = json_extract(template, '$.id') WHERE template IS NOT NULL;
CREATE INDEX sessions_by_template ON sessions (template_id);

-- Notification endpoints: webhooks sent when a template's sessions (those
-- of its owner, who made it), or one session, finish, fail or ask for
-- permission. The draft is the JSON of
-- app::notifications::EndpointDraft; the secret is sealed under the master
-- key. The server delivering to it holds it (`holder`, until
-- `held_until`), so that one message at a time goes to it.
CREATE TABLE notification_endpoints (
    id          TEXT PRIMARY KEY NOT NULL,
    template_id TEXT REFERENCES agent_templates (id) ON DELETE CASCADE,
    session_id  TEXT REFERENCES sessions (id) ON DELETE CASCADE,
    owner_id    TEXT,
    draft       TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    holder      TEXT NOT NULL DEFAULT '',
    held_until  TEXT NOT NULL DEFAULT ''
);

-- Each endpoint's cursor over each session's event log: the last event it
-- is done with.
CREATE TABLE notification_cursors (
    endpoint_id TEXT NOT NULL REFERENCES notification_endpoints (id) ON DELETE CASCADE,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    last_seq    BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, session_id)
);

-- The messages made for each endpoint (the body sent on every try) and
-- how sending them went (tried for a day from `tried_since`: its event,
-- or when it was sent again by hand); kept 30 days.
CREATE TABLE notification_messages (
    endpoint_id     TEXT NOT NULL REFERENCES notification_endpoints (id) ON DELETE CASCADE,
    id              TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    response_code   BIGINT,
    error           TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    tried_since     TEXT NOT NULL,
    next_attempt_at TEXT,
    PRIMARY KEY (endpoint_id, id)
);

CREATE INDEX notification_messages_by_state ON notification_messages (endpoint_id, state, created_at);
