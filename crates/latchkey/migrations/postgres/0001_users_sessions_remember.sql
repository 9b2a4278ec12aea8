-- The same tables as the SQLite schema (users, sessions, remember_tokens).
CREATE TABLE IF NOT EXISTS users (
    id                 BIGSERIAL PRIMARY KEY,
    username           TEXT    NOT NULL,
    username_key       TEXT    NOT NULL UNIQUE,
    email              TEXT,
    email_key          TEXT    UNIQUE,
    password_hash      TEXT    NOT NULL,
    created_at         BIGINT  NOT NULL,
    disabled           BOOLEAN NOT NULL DEFAULT FALSE,
    credential_version BIGINT  NOT NULL DEFAULT 1
);

-- Sessions keyed by SHA-256 of the token (hex); the record is JSON text.
CREATE TABLE IF NOT EXISTS sessions (
    id         TEXT   PRIMARY KEY,
    user_id    TEXT,
    version    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    record     TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);

CREATE TABLE IF NOT EXISTS remember_tokens (
    series               TEXT   PRIMARY KEY,
    validator_hash       BYTEA  NOT NULL,
    previous_hash        BYTEA,
    previous_valid_until BIGINT,
    user_id              TEXT   NOT NULL,
    created_at           BIGINT NOT NULL,
    last_used_at         BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS remember_tokens_by_user ON remember_tokens (user_id);
CREATE INDEX IF NOT EXISTS remember_tokens_by_expiry ON remember_tokens (expires_at);
