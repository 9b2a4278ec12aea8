-- The durable outbox, as in the SQLite schema.
CREATE TABLE IF NOT EXISTS mail_outbox (
    id              BIGSERIAL PRIMARY KEY,
    recipient       TEXT      NOT NULL,
    subject         TEXT      NOT NULL,
    text_body       TEXT      NOT NULL,
    html_body       TEXT,
    created_at      BIGINT    NOT NULL,
    attempts        INTEGER   NOT NULL DEFAULT 0,
    next_attempt_at BIGINT    NOT NULL,
    lease_until     BIGINT,
    sent_at         BIGINT,
    failed_at       BIGINT,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS mail_outbox_due ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS mail_outbox_sent ON mail_outbox (sent_at) WHERE sent_at IS NOT NULL;
