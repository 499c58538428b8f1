-- The permission mode a template's triggered sessions must keep to (`ask`
-- or `read-only`, or stricter); NULL: what each trigger says.
ALTER TABLE agent_template_versions ADD COLUMN triggers_require TEXT;
