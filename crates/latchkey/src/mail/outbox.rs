//! The durable outbox: every mail is a row in the database, written in the same
//! transaction as the change that causes it ([`SqliteOutbox::enqueue_in`],
//! [`PostgresOutbox::enqueue_in`]), and an [`OutboxWorker`] in the background sends it:
//! off the request path, retried with backoff while the mail server is down (also
//! after a restart: the row is still there), and claimed with a lease so that several
//! server processes sharing one database never send one mail twice. Sent mail is
//! pruned after a retention period.

use super::{Mail, MailError, MailSeal, Mailer};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

crate::store_error::store_error!(
    /// Why the mail outbox failed.
    OutboxError,
    "mail outbox"
);

/// A mail taken from the outbox to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    /// The row's id.
    pub id: i64,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The mail.
    pub mail: Mail,
}

/// How many mails are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Waiting to be sent (or being sent).
    pub queued: u64,
    /// Given up on (a permanent refusal, or out of attempts).
    pub failed: u64,
    /// Sent and not yet pruned.
    pub sent: u64,
}

/// Where queued mail lives. Every operation is atomic, so processes sharing the
/// database work one queue together.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Queues `mail` to be sent as soon as a worker gets to it.
    async fn enqueue(&self, mail: &Mail) -> Result<i64, OutboxError>;
    /// Takes up to `limit` mails that are due at `now` and not held by another worker,
    /// holding them until `now + lease` (a worker that dies lets them go then), and
    /// counts an attempt on each.
    async fn claim(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<QueuedMail>, OutboxError>;
    /// Marks mail `id` sent at `now`.
    async fn mark_sent(&self, id: i64, now: Timestamp) -> Result<(), OutboxError>;
    /// Puts mail `id` back to be tried again at `retry_at`, noting `error`.
    async fn retry_later(
        &self,
        id: i64,
        retry_at: Timestamp,
        error: &str,
    ) -> Result<(), OutboxError>;
    /// Gives up on mail `id` at `now`, noting `error`.
    async fn mark_failed(&self, id: i64, now: Timestamp, error: &str) -> Result<(), OutboxError>;
    /// Queues every failed mail again, due at `now`; how many.
    async fn retry_failed(&self, now: Timestamp) -> Result<u64, OutboxError>;
    /// Deletes up to `limit` mails sent before `before`; how many.
    async fn prune_sent(&self, before: Timestamp, limit: u32) -> Result<u64, OutboxError>;
    /// How many mails are queued, failed and sent.
    async fn counts(&self) -> Result<OutboxCounts, OutboxError>;
}

/// How the worker sends and retries.
#[derive(Debug, Clone)]
pub struct OutboxPolicy {
    /// How often the worker looks for due mail when nothing woke it.
    pub poll_interval: Duration,
    /// How long a claimed mail is held before another worker may take it (longer than
    /// any SMTP conversation).
    pub lease: Duration,
    /// Mails claimed at once.
    pub batch: u32,
    /// Mails sent at once (each SMTP conversation is a few round trips, so one at a
    /// time leaves the link idle; `SmtpMailer` keeps as many connections open).
    pub concurrency: usize,
    /// The first retry's delay; each later one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// Attempts before a mail is given up on.
    pub max_attempts: u32,
    /// How long sent mail is kept.
    pub retention: Duration,
}

impl Default for OutboxPolicy {
    fn default() -> Self {
        OutboxPolicy {
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(120),
            batch: 50,
            concurrency: 32,
            first_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            // 5 s doubling to an hour: about a day and a half of attempts.
            max_attempts: 40,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl OutboxPolicy {
    /// The delay before attempt `attempts + 1`.
    fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.first_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// Sends what the outbox holds, in the background.
#[derive(Clone)]
pub struct OutboxWorker {
    outbox: Arc<dyn Outbox>,
    mailer: Arc<dyn Mailer>,
    seal: Option<MailSeal>,
    policy: Arc<OutboxPolicy>,
    wake: Arc<Notify>,
}

impl OutboxWorker {
    /// A worker sending `outbox`'s mail through `mailer`.
    pub fn new(outbox: Arc<dyn Outbox>, mailer: Arc<dyn Mailer>, policy: OutboxPolicy) -> Self {
        OutboxWorker {
            outbox,
            mailer,
            seal: None,
            policy: Arc::new(policy),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Opens sealed mail with `seal` before sending it (see [`MailSeal`]). Without a
    /// seal, a sealed mail is given up on.
    pub fn with_seal(mut self, seal: MailSeal) -> Self {
        self.seal = Some(seal);
        self
    }

    /// Tells a running worker that mail was queued, so it sends now rather than at its
    /// next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// One round: claims the due mail, sends it, and settles each (sent, retried later,
    /// or given up). How many were sent.
    pub async fn run_once(&self) -> Result<usize, OutboxError> {
        let mut sent = 0;
        loop {
            let claimed = self
                .outbox
                .claim(Timestamp::now(), self.policy.lease, self.policy.batch)
                .await?;
            let full = claimed.len() == self.policy.batch as usize;
            let mut sending = JoinSet::new();
            for queued in claimed {
                if sending.len() >= self.policy.concurrency.max(1) {
                    sent += settled(sending.join_next().await)?;
                }
                let worker = self.clone();
                sending.spawn(async move { worker.send(queued).await });
            }
            while !sending.is_empty() {
                sent += settled(sending.join_next().await)?;
            }
            if !full {
                break;
            }
        }
        Ok(sent)
    }

    /// Deletes sent mail older than the retention period; how many.
    pub async fn prune(&self) -> Result<u64, OutboxError> {
        let before = Timestamp::now().minus(self.policy.retention);
        let mut pruned = 0;
        loop {
            let done = self.outbox.prune_sent(before, PRUNE_BATCH).await?;
            pruned += done;
            if done < u64::from(PRUNE_BATCH) {
                return Ok(pruned);
            }
        }
    }

    /// Sends one claimed mail and settles it; whether it went out.
    async fn send(&self, queued: QueuedMail) -> Result<bool, OutboxError> {
        let outcome = match (&self.seal, MailSeal::is_sealed(&queued.mail)) {
            (Some(seal), true) => match seal.open(queued.mail) {
                Ok(mail) => self.mailer.send(&mail).await,
                Err(error) => Err(error),
            },
            (None, true) => Err(MailError::Permanent(
                "a sealed mail, and this worker has no seal to open it".into(),
            )),
            (_, false) => self.mailer.send(&queued.mail).await,
        };
        let now = Timestamp::now();
        match outcome {
            Ok(()) => {
                self.outbox.mark_sent(queued.id, now).await?;
                Ok(true)
            }
            Err(error @ (MailError::Permanent(_) | MailError::Config(_))) => {
                tracing::error!(mail = queued.id, %error, "mail refused: given up");
                self.outbox
                    .mark_failed(queued.id, now, &error.to_string())
                    .await?;
                Ok(false)
            }
            Err(error @ MailError::Temporary(_)) if queued.attempts >= self.policy.max_attempts => {
                tracing::error!(mail = queued.id, attempts = queued.attempts, %error, "mail not sent: out of attempts");
                self.outbox
                    .mark_failed(queued.id, now, &error.to_string())
                    .await?;
                Ok(false)
            }
            Err(error) => {
                let retry_at = now.plus(self.policy.backoff(queued.attempts));
                tracing::warn!(mail = queued.id, attempts = queued.attempts, %error, "mail not sent yet: will retry");
                self.outbox
                    .retry_later(queued.id, retry_at, &error.to_string())
                    .await?;
                Ok(false)
            }
        }
    }

    /// Runs rounds until the task is dropped: after each, waits for [`Self::wake`] or
    /// the poll interval. A failing database is logged and tried again at the next round.
    pub async fn run(self) {
        self.run_until(std::future::pending()).await
    }

    /// [`Self::run`] until `stop` completes; a round under way is finished first, so no
    /// mail is left claimed (and held back until its lease ends) by a graceful stop.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        // Pruning is a write: once an hour, not at every poll.
        let mut pruned_at: Option<std::time::Instant> = None;
        loop {
            if let Err(error) = self.run_once().await {
                tracing::warn!(%error, "mail outbox unavailable");
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_INTERVAL) {
                match self.prune().await {
                    Ok(_) => pruned_at = Some(std::time::Instant::now()),
                    Err(error) => tracing::warn!(%error, "pruning sent mail failed"),
                }
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.policy.poll_interval) => {}
            }
        }
    }
}

/// How often a running worker deletes sent mail past its retention.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Sent mails deleted per statement.
const PRUNE_BATCH: u32 = 1000;

/// 1 for a mail that went out, 0 for one that did not; a store error as it is. A send
/// that panicked stays claimed and is tried again when its lease ends.
fn settled(
    done: Option<Result<Result<bool, OutboxError>, tokio::task::JoinError>>,
) -> Result<usize, OutboxError> {
    match done {
        Some(Ok(outcome)) => outcome.map(usize::from),
        Some(Err(error)) => {
            tracing::error!(%error, "a mail send task failed; its lease will let it go");
            Ok(0)
        }
        None => Ok(0),
    }
}

/// The SQL an outbox runs, in one dialect; parameters in the order given.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
struct OutboxStatements {
    /// recipient, subject, text, html, now → id
    enqueue: &'static str,
    /// lease until, now, limit → id, attempts, recipient, subject, text, html
    claim: &'static str,
    /// now, id
    mark_sent: &'static str,
    /// retry at, error, id
    retry_later: &'static str,
    /// now, error, id
    mark_failed: &'static str,
    /// now
    retry_failed: &'static str,
    /// before, limit
    prune_sent: &'static str,
    /// → queued, failed, sent
    counts: &'static str,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
type ClaimedRow = (i64, i64, String, String, String, Option<String>);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn queued((id, attempts, to, subject, text, html): ClaimedRow) -> QueuedMail {
    QueuedMail {
        id,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        mail: Mail {
            to,
            subject,
            text,
            html,
        },
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! sql_outbox {
    ($outbox:ident, $pool:ty, $connection:ty, $db:ty, $sql:expr) => {
        impl $outbox {
            /// An outbox in the `mail_outbox` table of `pool`'s database (migrated by
            /// latchkey's `open_*`).
            pub fn new(pool: impl Into<$pool>) -> Self {
                $outbox { pool: pool.into() }
            }

            /// Queues `mail` on `connection`, inside the caller's transaction: the mail
            /// exists if and only if the change that causes it commits.
            pub async fn enqueue_in(
                connection: &mut $connection,
                mail: &Mail,
            ) -> Result<i64, OutboxError> {
                Self::insert_mail(connection, mail).await
            }

            /// Queues `mail` on `executor`.
            async fn insert_mail<'e, E>(executor: E, mail: &Mail) -> Result<i64, OutboxError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let (id,): (i64,) = sqlx::query_as($sql.enqueue)
                    .bind(&mail.to)
                    .bind(&mail.subject)
                    .bind(&mail.text)
                    .bind(&mail.html)
                    .bind(Timestamp::now().as_millis())
                    .fetch_one(executor)
                    .await
                    .map_err(map_sqlx)?;
                Ok(id)
            }
        }

        #[async_trait]
        impl Outbox for $outbox {
            async fn enqueue(&self, mail: &Mail) -> Result<i64, OutboxError> {
                Self::insert_mail(&self.pool, mail).await
            }

            async fn claim(
                &self,
                now: Timestamp,
                lease: Duration,
                limit: u32,
            ) -> Result<Vec<QueuedMail>, OutboxError> {
                let rows: Vec<ClaimedRow> = sqlx::query_as($sql.claim)
                    .bind(now.plus(lease).as_millis())
                    .bind(now.as_millis())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                let mut claimed: Vec<QueuedMail> = rows.into_iter().map(queued).collect();
                claimed.sort_by_key(|queued| queued.id);
                Ok(claimed)
            }

            async fn mark_sent(&self, id: i64, now: Timestamp) -> Result<(), OutboxError> {
                sqlx::query($sql.mark_sent)
                    .bind(now.as_millis())
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn retry_later(
                &self,
                id: i64,
                retry_at: Timestamp,
                error: &str,
            ) -> Result<(), OutboxError> {
                sqlx::query($sql.retry_later)
                    .bind(retry_at.as_millis())
                    .bind(error)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn mark_failed(
                &self,
                id: i64,
                now: Timestamp,
                error: &str,
            ) -> Result<(), OutboxError> {
                sqlx::query($sql.mark_failed)
                    .bind(now.as_millis())
                    .bind(error)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn retry_failed(&self, now: Timestamp) -> Result<u64, OutboxError> {
                let done = sqlx::query($sql.retry_failed)
                    .bind(now.as_millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(done.rows_affected())
            }

            async fn prune_sent(&self, before: Timestamp, limit: u32) -> Result<u64, OutboxError> {
                let done = sqlx::query($sql.prune_sent)
                    .bind(before.as_millis())
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(done.rows_affected())
            }

            async fn counts(&self) -> Result<OutboxCounts, OutboxError> {
                let (queued, failed, sent): (i64, i64, i64) = sqlx::query_as($sql.counts)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                Ok(OutboxCounts {
                    queued: count(queued),
                    failed: count(failed),
                    sent: count(sent),
                })
            }
        }
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::sql_error::map_sqlx;

/// The mail outbox in a SQLite database.
#[cfg(feature = "sqlite")]
#[derive(Clone, Debug)]
pub struct SqliteOutbox {
    pool: sqlx::SqlitePool,
}

#[cfg(feature = "sqlite")]
const SQLITE: OutboxStatements = OutboxStatements {
    enqueue: "INSERT INTO mail_outbox (recipient, subject, text_body, html_body, created_at, \
              next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING id",
    // SQLite runs one write at a time: the select and the update are one step.
    claim: "UPDATE mail_outbox SET lease_until = ?1, attempts = attempts + 1 WHERE id IN \
            (SELECT id FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL \
             AND next_attempt_at <= ?2 AND (lease_until IS NULL OR lease_until <= ?2) \
             ORDER BY id LIMIT ?3) \
            RETURNING id, attempts, recipient, subject, text_body, html_body",
    mark_sent: "UPDATE mail_outbox SET sent_at = ?1, lease_until = NULL, last_error = NULL \
                WHERE id = ?2",
    retry_later: "UPDATE mail_outbox SET next_attempt_at = ?1, last_error = ?2, \
                  lease_until = NULL WHERE id = ?3",
    mark_failed: "UPDATE mail_outbox SET failed_at = ?1, last_error = ?2, lease_until = NULL \
                  WHERE id = ?3",
    retry_failed: "UPDATE mail_outbox SET failed_at = NULL, attempts = 0, next_attempt_at = ?1 \
                   WHERE failed_at IS NOT NULL",
    prune_sent: "DELETE FROM mail_outbox WHERE id IN \
                 (SELECT id FROM mail_outbox WHERE sent_at < ?1 LIMIT ?2)",
    counts: "SELECT \
             COUNT(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL), \
             COUNT(*) FILTER (WHERE failed_at IS NOT NULL), \
             COUNT(*) FILTER (WHERE sent_at IS NOT NULL) FROM mail_outbox",
};

#[cfg(feature = "sqlite")]
sql_outbox!(
    SqliteOutbox,
    sqlx::SqlitePool,
    sqlx::SqliteConnection,
    sqlx::Sqlite,
    SQLITE
);

/// The mail outbox in a PostgreSQL database.
#[cfg(feature = "postgres")]
#[derive(Clone, Debug)]
pub struct PostgresOutbox {
    pool: crate::pg::PgHandle,
}

#[cfg(feature = "postgres")]
const POSTGRES: OutboxStatements = OutboxStatements {
    enqueue: "INSERT INTO mail_outbox (recipient, subject, text_body, html_body, created_at, \
              next_attempt_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    // SKIP LOCKED: workers in other processes claim other rows, never the same one.
    claim: "UPDATE mail_outbox SET lease_until = $1, attempts = attempts + 1 WHERE id IN \
            (SELECT id FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL \
             AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
             ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
            RETURNING id, attempts::BIGINT, recipient, subject, text_body, html_body",
    mark_sent: "UPDATE mail_outbox SET sent_at = $1, lease_until = NULL, last_error = NULL \
                WHERE id = $2",
    retry_later: "UPDATE mail_outbox SET next_attempt_at = $1, last_error = $2, \
                  lease_until = NULL WHERE id = $3",
    mark_failed: "UPDATE mail_outbox SET failed_at = $1, last_error = $2, lease_until = NULL \
                  WHERE id = $3",
    retry_failed: "UPDATE mail_outbox SET failed_at = NULL, attempts = 0, next_attempt_at = $1 \
                   WHERE failed_at IS NOT NULL",
    prune_sent: "DELETE FROM mail_outbox WHERE id IN \
                 (SELECT id FROM mail_outbox WHERE sent_at < $1 LIMIT $2)",
    counts: "SELECT \
             COUNT(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL), \
             COUNT(*) FILTER (WHERE failed_at IS NOT NULL), \
             COUNT(*) FILTER (WHERE sent_at IS NOT NULL) FROM mail_outbox",
};

#[cfg(feature = "postgres")]
sql_outbox!(
    PostgresOutbox,
    crate::pg::PgHandle,
    crate::pg::PgTransactionConnection,
    sqlx::Postgres,
    POSTGRES
);

#[cfg(test)]
mod tests {
    use super::OutboxPolicy;
    use std::time::Duration;

    #[test]
    fn retries_back_off_doubling_up_to_the_cap() {
        let policy = OutboxPolicy::default();
        let delays: Vec<u64> = (1..=12).map(|n| policy.backoff(n).as_secs()).collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(3600));
    }
}
