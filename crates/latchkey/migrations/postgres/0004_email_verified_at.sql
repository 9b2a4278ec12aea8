-- When the user proved the email address is theirs (NULL: not proven, or no email).
ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified_at BIGINT;
