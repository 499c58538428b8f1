-- When each schedule trigger runs next: the earliest time due that no
-- server has taken yet (no row while it is paused). The server that moves
-- it on (compare and set) runs that time, so each run is one replica's.
CREATE TABLE trigger_schedules (
    trigger_id TEXT PRIMARY KEY NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    next_run   TEXT NOT NULL
);

CREATE INDEX trigger_schedules_next_run ON trigger_schedules (next_run);
