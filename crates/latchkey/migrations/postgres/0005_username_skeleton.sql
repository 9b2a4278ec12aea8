-- The confusable skeleton (Unicode TS #39) of each username's normalised key: names
-- that look alike (admin, Cyrillic аdmin, dotless admın) share one, so only one of them
-- can be registered, even by two racing sign-ups. NULL for rows stored before this
-- migration until the user store re-keys them (rekey_legacy_users); NULLs do not collide.
ALTER TABLE users ADD COLUMN IF NOT EXISTS username_skeleton TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS users_username_skeleton ON users (username_skeleton);
