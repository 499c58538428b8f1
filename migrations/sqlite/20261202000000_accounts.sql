-- Accounts (README "Accounts and sign-in"): people, their browser sessions
-- and API tokens, who owns and who may see each session, saved credentials
-- (encrypted; only ciphertext is stored) and the audit log.

CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    -- Stored lowercase; compared without case.
    login           TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL,
    -- argon2id, PHC string format.
    password_hash   TEXT NOT NULL,
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    last_sign_in_at TEXT
);

-- NULL: created while sign-in was off, by the local operator (admins see
-- such sessions).
ALTER TABLE sessions ADD COLUMN owner_id TEXT REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX sessions_by_owner ON sessions (owner_id);

CREATE TABLE session_shares (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    level      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (session_id, user_id)
) WITHOUT ROWID;
CREATE INDEX session_shares_by_user ON session_shares (user_id);

-- Browser sessions (tower-sessions records). user_id is copied out of the
-- record so that "sign out everywhere" is one DELETE.
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

-- Secrets sealed with the master key (XChaCha20-Poly1305; the scope and
-- kind are the associated data, so a row moved to another scope does not
-- open).
CREATE TABLE credentials (
    scope      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    hint       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (scope, kind)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    address TEXT
);
