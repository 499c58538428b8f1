-- What a session (or its agent template) sets of its agent besides the
-- model: the turn limit of one prompt, the tools that run without asking
-- (JSON list), the sandbox's image, and the time limit of one command.
ALTER TABLE sessions ADD COLUMN max_turns INTEGER;
ALTER TABLE sessions ADD COLUMN allowed_tools TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sessions ADD COLUMN image TEXT;
ALTER TABLE sessions ADD COLUMN command_timeout_secs INTEGER;

-- What the workspace starts from: its source (JSON, see
-- app::workspace_source), the project instructions (CLAUDE.md) and the
-- skills (JSON list, with their names apart for listing), and once it was
-- prepared, when, the commit it started from and its working branch.
ALTER TABLE sessions ADD COLUMN source TEXT NOT NULL DEFAULT '{"kind":"empty"}';
ALTER TABLE sessions ADD COLUMN instructions TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN skills TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sessions ADD COLUMN skill_names TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sessions ADD COLUMN workspace_ready_at TEXT;
ALTER TABLE sessions ADD COLUMN base_commit TEXT;
ALTER TABLE sessions ADD COLUMN work_branch TEXT;

-- The MCP servers (stdio, in the sandbox) its runs start: JSON list.
ALTER TABLE sessions ADD COLUMN mcp_servers TEXT NOT NULL DEFAULT '[]';
