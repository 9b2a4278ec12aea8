//! How fast the outbox empties into a local SMTP server (aiosmtpd, which must be
//! installed: `pip install aiosmtpd`): N mails queued in SQLite, then one worker round;
//! against the same N mails sent straight through the same SMTP mailer in the same run
//! (the baseline: what the SMTP server itself allows).
//!
//! `cargo bench --bench mail_outbox [-- N]` (default 2000)

#[path = "../crates/latchkey-server/tests/common/ports.rs"]
mod ports;
#[path = "../tests/common/smtp.rs"]
mod smtp;

use latchkey::mail::outbox::{Outbox, OutboxPolicy, OutboxWorker, SqliteOutbox};
use latchkey::mail::{Mail, Mailer, SmtpMailer};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let count = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sink = smtp::SmtpSink::start();
    runtime.block_on(async {
        let mailer = SmtpMailer::new(&sink.url(), "bench <bench@example.com>").expect("mailer");
        let mail = |index: usize| Mail {
            to: format!("user{index}@example.com"),
            subject: format!("Mail {index}"),
            text: "A short plain-text body with a link: https://example.com/x\n".repeat(4),
            html: Some("<p>A short HTML body.</p>".into()),
        };
        // Baseline: straight to SMTP.
        let started = Instant::now();
        for index in 0..count {
            mailer.send(&mail(index)).await.expect("send");
        }
        let direct = started.elapsed();

        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let pool = latchkey::store::open_sqlite(&url).await.expect("open");
        let outbox = SqliteOutbox::new(pool);
        let started = Instant::now();
        for index in 0..count {
            outbox.enqueue(&mail(index)).await.expect("enqueue");
        }
        let queued = started.elapsed();
        let worker = OutboxWorker::new(
            Arc::new(outbox.clone()),
            Arc::new(mailer),
            OutboxPolicy::default(),
        );
        let started = Instant::now();
        let sent = worker.run_once().await.expect("round");
        let drained = started.elapsed();
        assert_eq!(sent, count);
        let rate = |elapsed: Duration| count as f64 / elapsed.as_secs_f64();
        println!("{count} mails to aiosmtpd on loopback (one tokio worker thread)");
        println!(
            "  straight to SMTP (baseline): {:>8.0} mails/s",
            rate(direct)
        );
        println!(
            "  queued in the outbox:        {:>8.0} mails/s",
            rate(queued)
        );
        println!(
            "  sent from the outbox:        {:>8.0} mails/s ({:.2} x the baseline)",
            rate(drained),
            direct.as_secs_f64() / drained.as_secs_f64()
        );
    });
    let received = sink.wait_for(2 * count, Duration::from_secs(30)).len();
    assert_eq!(received, 2 * count, "every mail arrived");
}
