//! The mail outbox against a real SMTP server (aiosmtpd): queued mail is sent by the
//! worker with both parts; while the server is down nothing is lost and the mail goes
//! out once it is back; a mail queued in a transaction exists only if it commits; a
//! refused recipient is given up on and can be retried; and two workers sharing one
//! PostgreSQL database send each of 60 mails exactly once.

#[path = "../crates/latchkey-server/tests/common/ports.rs"]
mod ports;
#[path = "common/smtp.rs"]
mod smtp;

use latchkey::mail::outbox::{
    Outbox, OutboxCounts, OutboxPolicy, OutboxWorker, PostgresOutbox, SqliteOutbox,
};
use latchkey::mail::{Mail, SmtpMailer};
use latchkey::store::{open_postgres, open_sqlite};
use smtp::SmtpSink;
use std::sync::Arc;
use std::time::Duration;

fn mail(to: &str, subject: &str) -> Mail {
    Mail {
        to: to.into(),
        subject: subject.into(),
        text: format!("The text of {subject}."),
        html: Some(format!("<p>The HTML of {subject}.</p>")),
    }
}

fn quick() -> OutboxPolicy {
    OutboxPolicy {
        first_backoff: Duration::from_millis(200),
        ..OutboxPolicy::default()
    }
}

async fn sqlite_outbox(dir: &tempfile::TempDir) -> (SqliteOutbox, sqlx::SqlitePool) {
    let url = format!("sqlite://{}", dir.path().join("mail.db").display());
    let pool = open_sqlite(&url).await.expect("open");
    (SqliteOutbox::new(pool.clone()), pool)
}

fn worker(outbox: impl Outbox, url: &str, policy: OutboxPolicy) -> OutboxWorker {
    let mailer = SmtpMailer::new(url, "latchkey <noreply@example.com>").expect("mailer");
    OutboxWorker::new(Arc::new(outbox), Arc::new(mailer), policy)
}

#[tokio::test]
async fn queued_mail_goes_out_through_smtp_with_both_parts() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (outbox, _) = sqlite_outbox(&dir).await;
    for index in 0..3 {
        outbox
            .enqueue(&mail("alice@example.com", &format!("Hello {index}")))
            .await
            .expect("enqueue");
    }
    let worker = worker(outbox.clone(), &sink.url(), quick());
    assert_eq!(worker.run_once().await.expect("round"), 3);
    let messages = sink.wait_for(3, Duration::from_secs(10));
    assert_eq!(messages.len(), 3);
    for message in &messages {
        assert!(message.contains("To: alice@example.com"), "{message}");
        assert!(
            message.contains("From: latchkey <noreply@example.com>"),
            "{message}"
        );
        assert!(message.contains("multipart/alternative"), "{message}");
        assert!(message.contains("text/plain") && message.contains("text/html"));
    }
    assert_eq!(
        outbox.counts().await.expect("counts"),
        OutboxCounts {
            queued: 0,
            failed: 0,
            sent: 3
        }
    );
    // Nothing is due any more: a second round sends nothing.
    assert_eq!(worker.run_once().await.expect("round"), 0);
    // Within the retention period sent mail stays; past it, it is pruned.
    assert_eq!(worker.prune().await.expect("prune"), 0);
    let impatient = self::worker(
        outbox.clone(),
        &sink.url(),
        OutboxPolicy {
            retention: Duration::ZERO,
            ..quick()
        },
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(impatient.prune().await.expect("prune"), 3);
    assert_eq!(
        outbox.counts().await.expect("counts"),
        OutboxCounts::default()
    );
}

#[tokio::test]
async fn mail_waits_while_smtp_is_down_and_goes_out_when_it_is_back() {
    if !smtp::available() {
        return;
    }
    let port = smtp::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let (outbox, _) = sqlite_outbox(&dir).await;
    outbox
        .enqueue(&mail("bob@example.com", "Waiting"))
        .await
        .expect("enqueue");
    let worker = worker(outbox.clone(), &format!("smtp://127.0.0.1:{port}"), quick());
    // Nobody listens: the attempt fails, the mail stays queued.
    assert_eq!(worker.run_once().await.expect("round"), 0);
    assert_eq!(outbox.counts().await.expect("counts").queued, 1);
    // Before the backoff is over nothing is tried.
    assert!(outbox
        .claim(latchkey::Timestamp::now(), Duration::from_secs(60), 10)
        .await
        .expect("claim")
        .is_empty());
    let sink = SmtpSink::start_on(port);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(worker.run_once().await.expect("round"), 1);
    let messages = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: Waiting"));
}

#[tokio::test]
async fn a_mail_queued_in_a_transaction_exists_only_if_it_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (outbox, pool) = sqlite_outbox(&dir).await;
    let mut transaction = pool.begin().await.expect("begin");
    SqliteOutbox::enqueue_in(&mut transaction, &mail("c@example.com", "Rolled back"))
        .await
        .expect("enqueue");
    transaction.rollback().await.expect("rollback");
    assert_eq!(outbox.counts().await.expect("counts").queued, 0);
    let mut transaction = pool.begin().await.expect("begin");
    SqliteOutbox::enqueue_in(&mut transaction, &mail("c@example.com", "Committed"))
        .await
        .expect("enqueue");
    transaction.commit().await.expect("commit");
    assert_eq!(outbox.counts().await.expect("counts").queued, 1);
}

#[tokio::test]
async fn a_refused_recipient_is_given_up_on_and_can_be_retried() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (outbox, pool) = sqlite_outbox(&dir).await;
    outbox
        .enqueue(&mail("not an address", "Never"))
        .await
        .expect("enqueue");
    let worker = worker(outbox.clone(), &sink.url(), quick());
    assert_eq!(worker.run_once().await.expect("round"), 0);
    assert_eq!(outbox.counts().await.expect("counts").failed, 1);
    let (error,): (Option<String>,) = sqlx::query_as("SELECT last_error FROM mail_outbox")
        .fetch_one(&pool)
        .await
        .expect("row");
    assert!(error.is_some_and(|error| error.contains("recipient")));
    // An operator fixes the cause and retries: it is queued again (and refused again).
    assert_eq!(
        outbox
            .retry_failed(latchkey::Timestamp::now())
            .await
            .expect("retry"),
        1
    );
    assert_eq!(outbox.counts().await.expect("counts").queued, 1);
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_on_one_postgres_send_each_mail_once() {
    let Some(url) = latchkey::store::conformance::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    if !smtp::available() {
        return;
    }
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    two_workers_send_each_mail_once(PostgresOutbox::new(pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_through_pgbouncer_send_each_mail_once() {
    use latchkey::store::conformance::service_url;
    use latchkey::store::{migrate_postgres, PgHandle, PgPooling};
    let (Some(bouncer), Some(direct)) = (
        service_url("LATCHKEY_TEST_PGBOUNCER"),
        service_url("LATCHKEY_TEST_POSTGRES"),
    ) else {
        return;
    };
    if !smtp::available() {
        return;
    }
    migrate_postgres(&direct).await.expect("migrations");
    let pool = PgHandle::connect(&bouncer, PgPooling::Transaction)
        .await
        .expect("PgBouncer reachable");
    two_workers_send_each_mail_once(PostgresOutbox::new(pool)).await;
}

/// Held by the PostgreSQL outbox tests: each sends every queued mail in the one
/// `mail_outbox` table, so two at once would send each other's.
static OUTBOX_TABLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Two workers claim from `outbox` at once: each of 60 mails goes out exactly once.
async fn two_workers_send_each_mail_once(outbox: PostgresOutbox) {
    let _serial = OUTBOX_TABLE.lock().await;
    let sink = SmtpSink::start();
    // Mail left by earlier runs goes out too; count this run's only.
    let run = format!(
        "run-{}",
        &latchkey::SessionToken::generate().id().to_hex()[..12]
    );
    for index in 0..60 {
        outbox
            .enqueue(&mail("dave@example.com", &format!("{run} #{index}")))
            .await
            .expect("enqueue");
    }
    let policy = OutboxPolicy {
        batch: 5,
        ..quick()
    };
    let first = worker(outbox.clone(), &sink.url(), policy.clone());
    let second = worker(outbox.clone(), &sink.url(), policy);
    let (a, b) = tokio::join!(
        tokio::spawn(async move { first.run_once().await }),
        tokio::spawn(async move { second.run_once().await })
    );
    let sent = a.expect("task").expect("round") + b.expect("task").expect("round");
    assert!(sent >= 60, "{sent}");
    let ours: Vec<String> = sink
        .wait_for(60, Duration::from_secs(20))
        .into_iter()
        .filter(|message| message.contains(&run))
        .collect();
    let mut subjects: Vec<String> = ours
        .iter()
        .filter_map(|message| {
            message
                .lines()
                .find(|line| line.starts_with("Subject: "))
                .map(str::to_string)
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(ours.len(), 60, "each mail exactly once");
    assert_eq!(subjects.len(), 60);
}
