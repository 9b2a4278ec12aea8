-- Identities at other providers (OpenID Connect, GitHub): an identity is the issuer and
-- the subject the provider gives, never an email address. The address and whether the
-- provider verified it are kept as the provider last said; a user may have one identity
-- per provider.
CREATE TABLE identities (
    issuer         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    provider       TEXT    NOT NULL,
    user_id        BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email          TEXT,
    email_verified BOOLEAN NOT NULL,
    linked_at      BIGINT  NOT NULL,
    last_used_at   BIGINT  NOT NULL,
    PRIMARY KEY (issuer, subject),
    UNIQUE (user_id, provider)
);
