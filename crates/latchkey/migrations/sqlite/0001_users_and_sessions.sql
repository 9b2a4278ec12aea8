-- Users: username unique case-insensitively (username_key is its lower-case form),
-- email unique when present. credential_version is bumped by a password change or a
-- disable, which ends every session that recorded the old version.
CREATE TABLE users (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    username           TEXT    NOT NULL,
    username_key       TEXT    NOT NULL UNIQUE,
    email              TEXT,
    email_key          TEXT    UNIQUE,
    password_hash      TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    disabled           INTEGER NOT NULL DEFAULT 0,
    credential_version INTEGER NOT NULL DEFAULT 1
);

-- Sessions keyed by SHA-256 of the token (hex); the record is JSON.
CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY NOT NULL,
    user_id    TEXT,
    version    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    record     TEXT    NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_by_user ON sessions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
