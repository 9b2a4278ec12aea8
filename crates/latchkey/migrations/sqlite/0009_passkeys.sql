-- Passkeys (WebAuthn): each user's random handle (what authenticators store as the user
-- id; it says nothing about the user) and their credentials, as webauthn-rs serialises
-- them (public key, sign counter, backup flags), with a name the user chose.
CREATE TABLE passkey_users (
    user_id INTEGER PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    handle  TEXT    NOT NULL UNIQUE
);
CREATE TABLE passkeys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cred_id      TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    credential   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX passkeys_by_user ON passkeys (user_id);
