//! `latchkey mail …`: check the SMTP settings with a test mail, and look into the
//! outbox (queued, failed and sent counts; queue the failed ones again).

use crate::backend::Backend;
use crate::config::{DatabaseArgs, MailArgs};
use anyhow::Context;
use clap::Subcommand;
use latchkey::mail::Mail;
use latchkey::Timestamp;

/// Mail administration.
#[derive(Subcommand)]
pub enum MailCommand {
    /// Send a test mail to ADDRESS now, through --smtp-url (not through the outbox), and
    /// say whether the server took it.
    Test {
        /// The recipient.
        address: String,
        #[command(flatten)]
        mail: MailArgs,
    },
    /// Show how many mails are queued, failed and sent (not yet pruned).
    Outbox {
        /// Queue every failed mail again.
        #[arg(long)]
        retry_failed: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Runs a `latchkey mail` command.
pub async fn run(command: MailCommand) -> anyhow::Result<()> {
    match command {
        MailCommand::Test { address, mail } => {
            let mailer = mail.mailer()?;
            let test = Mail {
                to: address.clone(),
                subject: "latchkey test mail".into(),
                text: "This is a test mail from latchkey: the mail settings work.\n".into(),
                html: None,
            };
            mailer
                .send(&test)
                .await
                .with_context(|| format!("the test mail to {address} was not sent"))?;
            println!("sent a test mail to {address} through {}", mail.describe());
        }
        MailCommand::Outbox {
            retry_failed,
            database,
        } => {
            let backend = Backend::open(&database).await?;
            if retry_failed {
                let queued = backend.outbox.retry_failed(Timestamp::now()).await?;
                println!("queued {queued} failed mails again");
            }
            let counts = backend.outbox.counts().await?;
            println!(
                "queued {}\nfailed {}\nsent {}",
                counts.queued, counts.failed, counts.sent
            );
        }
    }
    Ok(())
}
