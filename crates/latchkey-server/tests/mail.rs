//! Mail from the real binary against a real SMTP server (aiosmtpd): `latchkey mail test`
//! delivers or says why not; without `--smtp-url` mail goes to the log in full; and a
//! mail queued while SMTP is down survives a server restart and goes out once SMTP is
//! back.

mod common;

use common::{cli, smtp, Server};
use latchkey::mail::outbox::{Outbox, SqliteOutbox};
use latchkey::mail::Mail;
use smtp::SmtpSink;
use std::process::Command;
use std::time::Duration;

fn latchkey(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .env("LATCHKEY_LOG", "warn")
        .output()
        .expect("run latchkey");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn mail(subject: &str) -> Mail {
    Mail {
        to: "erin@example.com".into(),
        subject: subject.into(),
        text: format!("Body of {subject}"),
        html: None,
    }
}

#[test]
fn mail_test_delivers_or_says_why_not() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let (ok, stdout, stderr) = latchkey(&[
        "mail",
        "test",
        "ops@example.com",
        "--smtp-url",
        &sink.url(),
        "--mail-from",
        "Login <login@example.com>",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("sent a test mail to ops@example.com"),
        "{stdout}"
    );
    let messages = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: latchkey test mail"));
    assert!(messages[0].contains("From: Login <login@example.com>"));

    let dead = format!("smtp://127.0.0.1:{}", smtp::free_port());
    let (ok, _, stderr) = latchkey(&["mail", "test", "ops@example.com", "--smtp-url", &dead]);
    assert!(!ok);
    assert!(stderr.contains("was not sent"), "{stderr}");
    let (ok, _, stderr) = latchkey(&["mail", "test", "ops@example.com", "--smtp-url", "ftp://x"]);
    assert!(!ok);
    assert!(stderr.contains("--smtp-url"), "{stderr}");
}

#[tokio::test]
async fn without_smtp_mail_goes_to_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(dir.path(), &[], &log);
    let pool = latchkey::store::open_sqlite(&server.database_url)
        .await
        .expect("open");
    SqliteOutbox::new(pool)
        .enqueue(&mail("Logged, not sent"))
        .await
        .expect("enqueue");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Logged, not sent") && text.contains("Body of Logged, not sent") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not in the log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn queued_mail_survives_smtp_down_and_a_restart() {
    if !smtp::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = smtp::free_port();
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let server = Server::start(dir.path(), &["--smtp-url", &smtp_url]);
    let pool = latchkey::store::open_sqlite(&server.database_url)
        .await
        .expect("open");
    let outbox = SqliteOutbox::new(pool);
    outbox
        .enqueue(&mail("Patient mail"))
        .await
        .expect("enqueue");
    // The worker tries, fails (nobody listens), and keeps the mail: waited for by its
    // trace in the row (an attempt counted, the error recorded), not by a guess of how
    // long the worker takes.
    let database = rusqlite::Connection::open(dir.path().join("latchkey.db")).expect("open");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let error = loop {
        let (attempts, error): (i64, Option<String>) = database
            .query_row("SELECT attempts, last_error FROM mail_outbox", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("the queued mail");
        if let (1.., Some(error)) = (attempts, error) {
            break error;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never tried the mail (attempts {attempts})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!error.is_empty());
    let counts = outbox.counts().await.expect("counts");
    assert_eq!(
        (counts.queued, counts.failed, counts.sent),
        (1, 0, 0),
        "tried once ({error}), kept for later"
    );
    let (ok, stdout, stderr) = cli(
        &["mail", "outbox", "--database-url", &server.database_url],
        "",
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("queued 1"), "{stdout}");
    let address = server.address;
    server.stop();

    // SMTP comes back, the server starts again: the mail goes out (after its backoff).
    let sink = SmtpSink::start_on(port);
    let server = Server::start_at(dir.path(), address, &["--smtp-url", &smtp_url]);
    let messages = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(
        messages.len(),
        1,
        "the queued mail was not sent after the restart"
    );
    assert!(messages[0].contains("Subject: Patient mail"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outbox.counts().await.expect("counts").sent != 1 {
        assert!(std::time::Instant::now() < deadline, "not marked sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
}
