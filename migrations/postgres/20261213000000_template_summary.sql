-- What the lists show of a template's version besides its name and
-- description, kept beside its settings so that a list reads no settings
-- (a template's can be megabytes): its engine and model, as its settings
-- say them (NULL: the default).
ALTER TABLE agent_template_versions ADD COLUMN engine TEXT;
ALTER TABLE agent_template_versions ADD COLUMN model TEXT;
UPDATE agent_template_versions SET engine = settings::json ->> 'engine', model = settings::json ->> 'model';
