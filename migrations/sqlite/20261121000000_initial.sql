-- Sessions and their transcripts.
--
-- events.seq numbers each session's events 1, 2, 3, ... with no holes. It is
-- taken from sessions.last_seq in the same transaction that inserts the
-- event, so a crash can never leave a gap or reuse a number.

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    engine          TEXT NOT NULL DEFAULT 'native',
    model           TEXT NOT NULL,
    system_prompt   TEXT NOT NULL DEFAULT '',
    permission_mode TEXT NOT NULL DEFAULT 'ask',
    status          TEXT NOT NULL DEFAULT 'idle',
    cost_usd        REAL NOT NULL DEFAULT 0,
    turns           INTEGER NOT NULL DEFAULT 0,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    -- Engine-specific resume state (e.g. the Claude Code session id), JSON.
    engine_state    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE INDEX sessions_by_activity ON sessions (updated_at DESC);

CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
