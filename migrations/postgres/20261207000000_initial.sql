-- Paddock's schema on PostgreSQL: the same tables and columns as the SQLite
-- migrations (migrations/sqlite/) have built up to 20261206000000, so that
-- one set of queries runs on both (server/src/store/sql/). Column types are
-- the ones both share: TEXT (ids, JSON, and timestamps as fixed-width
-- RFC 3339 UTC text, whose text order is time order), BIGINT (flags are 0
-- or 1), DOUBLE PRECISION and BYTEA. Columns that lists sort by compare
-- bytewise (COLLATE "C"), as on SQLite, whatever the database's locale. A later change to the schema is a migration in each folder.

CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    -- Stored lowercase; compared without case.
    login           TEXT COLLATE "C" NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL,
    -- argon2id, PHC string format.
    password_hash   TEXT NOT NULL,
    disabled        BIGINT NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    last_sign_in_at TEXT
);

-- events.seq numbers each session's events 1, 2, 3, ... with no holes. It is
-- taken from sessions.last_seq in the same transaction that inserts the
-- event (the UPDATE locks the session's row, so concurrent writers queue),
-- so a crash can never leave a gap or reuse a number.
CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    engine               TEXT NOT NULL DEFAULT 'native',
    model                TEXT NOT NULL,
    system_prompt        TEXT NOT NULL DEFAULT '',
    permission_mode      TEXT NOT NULL DEFAULT 'ask',
    status               TEXT NOT NULL DEFAULT 'idle',
    cost_usd             DOUBLE PRECISION NOT NULL DEFAULT 0,
    turns                BIGINT NOT NULL DEFAULT 0,
    input_tokens         BIGINT NOT NULL DEFAULT 0,
    output_tokens        BIGINT NOT NULL DEFAULT 0,
    last_seq             BIGINT NOT NULL DEFAULT 0,
    -- Engine-specific resume state (e.g. the Claude Code session id), JSON.
    engine_state         TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    -- Resource limits of the sandbox (NULL: the server's defaults).
    sandbox_memory_mb    BIGINT,
    sandbox_cpus         DOUBLE PRECISION,
    sandbox_pids         BIGINT,
    command_timeout_secs BIGINT,
    -- Spending limit in USD (NULL: none).
    budget_usd           DOUBLE PRECISION,
    -- NULL: created while sign-in was off, by the local operator.
    owner_id             TEXT REFERENCES users (id) ON DELETE SET NULL,
    -- JSON lists: read-only host folders under /mnt, environment
    -- variables, the names of saved secrets the commands get.
    mounts               TEXT NOT NULL DEFAULT '[]',
    env                  TEXT NOT NULL DEFAULT '[]',
    secrets              TEXT NOT NULL DEFAULT '[]',
    -- The template and version it was made from, JSON; NULL when not.
    template             TEXT,
    max_turns            BIGINT,
    allowed_tools        TEXT NOT NULL DEFAULT '[]',
    image                TEXT,
    -- What the workspace starts from (see app::workspace_source), the
    -- project instructions and skills, and once prepared, when, from which
    -- commit and on which branch.
    source               TEXT NOT NULL DEFAULT '{"kind":"empty"}',
    instructions         TEXT NOT NULL DEFAULT '',
    skills               TEXT NOT NULL DEFAULT '[]',
    skill_names          TEXT NOT NULL DEFAULT '[]',
    workspace_ready_at   TEXT,
    base_commit          TEXT,
    work_branch          TEXT,
    mcp_servers          TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX sessions_by_activity ON sessions (updated_at DESC);
CREATE INDEX sessions_by_owner ON sessions (owner_id);

CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);

-- Facts about this installation, such as the instance id that labels the
-- containers it owns.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Credentials of the LLM proxy: only a token's SHA-256 is stored.
CREATE TABLE proxy_tokens (
    token_sha256 TEXT PRIMARY KEY NOT NULL,
    session_id   TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at   TEXT NOT NULL,
    revoked      BIGINT NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL
);
CREATE INDEX proxy_tokens_by_session ON proxy_tokens (session_id);

CREATE TABLE session_shares (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    level      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX session_shares_by_user ON session_shares (user_id);

-- Browser sessions (tower-sessions records).
CREATE TABLE browser_sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT REFERENCES users (id) ON DELETE CASCADE,
    record     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX browser_sessions_by_user ON browser_sessions (user_id);

-- Personal access tokens: only the SHA-256 of the secret is stored.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

-- Secrets sealed with the master key (the scope, kind and name are the
-- associated data, so a row moved elsewhere does not open).
CREATE TABLE credentials (
    scope      TEXT COLLATE "C" NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL DEFAULT '',
    nonce      BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    hint       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (scope, kind, name)
);

CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    address TEXT
);

-- Agent templates: each save is a new row of agent_template_versions.
CREATE TABLE agent_templates (
    id         TEXT PRIMARY KEY NOT NULL,
    owner_id   TEXT REFERENCES users (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE agent_template_versions (
    template_id TEXT NOT NULL REFERENCES agent_templates (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT NOT NULL,
    settings    TEXT NOT NULL,
    saved_at    TEXT NOT NULL,
    saved_by    TEXT NOT NULL,
    PRIMARY KEY (template_id, version)
);
