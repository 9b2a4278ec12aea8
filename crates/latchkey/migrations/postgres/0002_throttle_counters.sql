-- Throttle counters, as in the SQLite schema.
CREATE TABLE IF NOT EXISTS throttle_counters (
    key      TEXT   PRIMARY KEY,
    count    BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS throttle_counters_by_last_at ON throttle_counters (last_at);
