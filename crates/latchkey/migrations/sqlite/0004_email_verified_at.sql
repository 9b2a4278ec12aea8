-- When the user proved the email address is theirs (NULL: not proven, or no email).
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;
