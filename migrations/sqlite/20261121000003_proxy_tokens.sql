-- Credentials of the LLM proxy (server/src/proxy.rs). A claude-code run gets
-- a random token; only its SHA-256 is stored, so a copy of the database
-- cannot be replayed against the proxy. A token is bound to one session,
-- expires, and is revoked when its run ends; deleting the session deletes it.

CREATE TABLE proxy_tokens (
    token_sha256 TEXT PRIMARY KEY NOT NULL,
    session_id   TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at   TEXT NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL
);

CREATE INDEX proxy_tokens_by_session ON proxy_tokens (session_id);
