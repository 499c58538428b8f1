-- An optional spending limit per session, in USD (NULL: none).
ALTER TABLE sessions ADD COLUMN budget_usd REAL;
