-- Named credentials: an agent secret is a `secret` credential with the
-- name of the environment variable it becomes (the model key's name is
-- ''). SQLite cannot change a primary key, so the table is made anew.
CREATE TABLE credentials_named (
    scope      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    hint       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (scope, kind, name)
) WITHOUT ROWID;
INSERT INTO credentials_named (scope, kind, nonce, ciphertext, hint, updated_at, updated_by)
    SELECT scope, kind, nonce, ciphertext, hint, updated_at, updated_by FROM credentials;
DROP TABLE credentials;
ALTER TABLE credentials_named RENAME TO credentials;

-- The saved secrets a session's commands get, by name: ["GITHUB_TOKEN"].
ALTER TABLE sessions ADD COLUMN secrets TEXT NOT NULL DEFAULT '[]';
