-- A trigger's deliveries by when they came: each finished delivery prunes
-- those past 30 days, and the delivery log and a schedule's last session
-- read the newest, among up to 30 days of them.
CREATE INDEX trigger_deliveries_by_time ON trigger_deliveries (trigger_id, received_at);
