//! Mail: what a message is, the [`Mailer`] trait that delivers one (over SMTP, to the
//! log, or into memory for an app's tests), and the durable [`outbox`] a background
//! worker sends from, so no request ever waits on a mail server and the time a request
//! takes says nothing about whether a mail went out.

pub mod outbox;
mod seal;
#[cfg(feature = "mail")]
mod smtp;

pub use seal::MailSeal;
#[cfg(feature = "mail")]
pub use smtp::SmtpMailer;

use async_trait::async_trait;
use std::sync::{Arc, Mutex};

/// One message to one recipient: a plain-text part and, optionally, an HTML part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part, if any.
    pub html: Option<String>,
}

/// Why a mail was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The mail cannot be sent as it is (a malformed address, a refused recipient):
    /// retrying will not help.
    #[error("mail refused: {0}")]
    Permanent(String),
    /// The mail server could not be reached or answered with a temporary failure:
    /// retry later.
    #[error("mail server unavailable: {0}")]
    Temporary(String),
    /// The mailer's own settings are wrong (a bad URL or sender address).
    #[error("mail settings: {0}")]
    Config(String),
}

/// Delivers mail.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Hands `mail` to the mail system; `Ok` once it has accepted it.
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
}

#[async_trait]
impl<M: Mailer + ?Sized> Mailer for Arc<M> {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        (**self).send(mail).await
    }
}

/// Writes every mail, whole, to the log (target `latchkey::mail`, level info), like
/// Django's console backend: for development without a mail server. Links and codes in
/// it are live credentials, so never use it where others read the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        tracing::info!(
            target: "latchkey::mail",
            to = %mail.to,
            subject = %mail.subject,
            "mail (not sent: no SMTP server configured)\n{}",
            mail.text
        );
        Ok(())
    }
}

/// Keeps every mail in memory: for an application's own tests of its mail flows.
#[derive(Debug, Clone, Default)]
pub struct MemoryMailer {
    sent: Arc<Mutex<Vec<Mail>>>,
}

impl MemoryMailer {
    /// An empty mailbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every mail sent so far, oldest first.
    pub fn sent(&self) -> Vec<Mail> {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(mail.clone());
        Ok(())
    }
}
