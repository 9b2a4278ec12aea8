-- One kind of token for every mail flow (verification, reset, sign-in, email change):
-- only the SHA-256 of the 32 random bytes is stored, with purpose, user, target email,
-- expiry, and for sign-in an HMAC of the 6-digit code with its wrong attempts.
CREATE TABLE email_tokens (
    id_hash    TEXT    PRIMARY KEY NOT NULL,
    purpose    TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT    NOT NULL,
    email_key  TEXT    NOT NULL,
    code_mac   TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id, purpose);
CREATE INDEX email_tokens_by_email ON email_tokens (email_key, purpose);
CREATE INDEX email_tokens_by_expiry ON email_tokens (expires_at);
