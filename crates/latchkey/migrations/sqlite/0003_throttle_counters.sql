-- Throttle counters (failed logins per account and per IP, sign-ups per IP): one row
-- per key, counted within a window that starts at first_at.
CREATE TABLE throttle_counters (
    key      TEXT    PRIMARY KEY NOT NULL,
    count    INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX throttle_counters_by_last_at ON throttle_counters (last_at);
