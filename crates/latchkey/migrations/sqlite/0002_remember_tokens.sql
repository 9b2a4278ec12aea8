-- Remember-me tokens: one row per device. The cookie holds series.validator; only the
-- SHA-256 of the validator is stored. previous_hash stays valid for a short grace window
-- after a rotation so parallel requests with the old cookie are not taken for theft.
CREATE TABLE remember_tokens (
    series               TEXT    PRIMARY KEY NOT NULL,
    validator_hash       BLOB    NOT NULL,
    previous_hash        BLOB,
    previous_valid_until INTEGER,
    user_id              TEXT    NOT NULL,
    created_at           INTEGER NOT NULL,
    last_used_at         INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX remember_tokens_by_user ON remember_tokens (user_id);
CREATE INDEX remember_tokens_by_expiry ON remember_tokens (expires_at);
