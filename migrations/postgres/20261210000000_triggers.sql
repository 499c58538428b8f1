-- Triggers of agent templates: each its own URL (/hooks/<id>) and secret,
-- sealed under the master key (hex of nonce and ciphertext), with the one
-- before the last rotation while it is still accepted. The draft is the
-- JSON of app::triggers::TriggerDraft.
CREATE TABLE triggers (
    id              TEXT PRIMARY KEY NOT NULL,
    template_id     TEXT NOT NULL REFERENCES agent_templates (id) ON DELETE CASCADE,
    draft           TEXT NOT NULL,
    secret          TEXT NOT NULL,
    previous_secret TEXT,
    previous_until  TEXT,
    created_at      TEXT NOT NULL,
    created_by      TEXT NOT NULL
);

-- Deliveries a trigger accepted, by the sender's id: a repeat is answered
-- as the first was. Status 0 while it is being handled, by the holder of
-- `claim` ('' once given up); the session it made is noted as soon as it
-- is made, and `prompted` once its prompt is queued.
CREATE TABLE trigger_deliveries (
    trigger_id  TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    delivery_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    status      BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    session_id  TEXT,
    claim       TEXT NOT NULL,
    prompted    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (trigger_id, delivery_id)
);

-- The session each conversation of a trigger continues ('' while the
-- delivery holding `claim` since `claimed_at` makes it).
CREATE TABLE trigger_conversations (
    trigger_id TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    session_id TEXT NOT NULL,
    claim      TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (trigger_id, key)
);
