-- Second factors: one TOTP secret per user, sealed with the server key (confirmed once
-- the user typed a code from it; the last time step a code was accepted for, so no code
-- counts twice), and single-use recovery codes, stored as HMACs under the server key.
CREATE TABLE totp_secrets (
    user_id       BIGINT  PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed TEXT    NOT NULL,
    confirmed_at  BIGINT,
    last_step     BIGINT  NOT NULL DEFAULT -1,
    created_at    BIGINT  NOT NULL
);
CREATE TABLE recovery_codes (
    user_id  BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_mac TEXT    NOT NULL,
    PRIMARY KEY (user_id, code_mac)
);
