-- Lookups by a column that is not first in a key: a session's events of a
-- kind (its permission requests and decisions, its prompts, its status
-- changes, among the egress records that pile up between them), and the
-- rows that name a session, a template or an owner, which every deletion
-- of one looks for.
CREATE INDEX events_by_kind ON events (session_id, kind, seq);
CREATE INDEX notification_cursors_by_session ON notification_cursors (session_id);
CREATE INDEX notification_endpoints_by_session ON notification_endpoints (session_id);
CREATE INDEX notification_endpoints_by_template ON notification_endpoints (template_id);
CREATE INDEX trigger_conversations_by_session ON trigger_conversations (session_id);
CREATE INDEX triggers_by_template ON triggers (template_id);
CREATE INDEX agent_templates_by_owner ON agent_templates (owner_id);
