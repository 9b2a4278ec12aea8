-- Personal access tokens: only the SHA-256 of a token is kept (hex, unique, the one
-- index a verification uses), with the first characters for lists. A revoked token's
-- row stays (revoked_at set) so that a later use of it is audited as "revoked"; scopes
-- are space-separated.
CREATE TABLE access_tokens (
    id           TEXT    PRIMARY KEY,
    token_hash   TEXT    NOT NULL UNIQUE,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX access_tokens_user ON access_tokens (user_id);
