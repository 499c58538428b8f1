-- Agent templates: each save is a new row of agent_template_versions; the
-- template's row holds who owns it and its current version. Settings are
-- the JSON of a session request (app::agents::TemplateDraft's `session`).
CREATE TABLE agent_templates (
    id         TEXT PRIMARY KEY NOT NULL,
    owner_id   TEXT REFERENCES users (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE agent_template_versions (
    template_id TEXT NOT NULL REFERENCES agent_templates (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    settings    TEXT NOT NULL,
    saved_at    TEXT NOT NULL,
    saved_by    TEXT NOT NULL,
    PRIMARY KEY (template_id, version)
) WITHOUT ROWID;

-- The template and version a session was made from, as JSON
-- ({"id", "name", "version"}); NULL when it was not.
ALTER TABLE sessions ADD COLUMN template TEXT;
