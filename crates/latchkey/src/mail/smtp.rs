//! SMTP delivery with `lettre`: plain SMTP for a relay on loopback, STARTTLS, or TLS
//! from the first byte, with credentials in the URL.

use super::{Mail, MailError, Mailer};
use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// How long one SMTP conversation may take before it counts as a temporary failure.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections kept open to the SMTP server: as many as the outbox worker sends at once
/// ([`super::outbox::OutboxPolicy::concurrency`]).
const SMTP_CONNECTIONS: u32 = 32;

/// Sends mail through an SMTP server.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials: leave it out.
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `url` sending as `from` (`Name <address>` or a bare address).
    ///
    /// * `smtp://host:port`: plain SMTP (for a relay on loopback);
    /// * `smtp://host:port?tls=starttls`: STARTTLS, required;
    /// * `smtps://host:port`: TLS from the first byte;
    /// * `smtp://user:password@host:port…`: with credentials.
    pub fn new(url: &str, from: &str) -> Result<Self, MailError> {
        let from: Mailbox = from
            .parse()
            .map_err(|error| MailError::Config(format!("sender address {from:?}: {error}")))?;
        // lettre spells required STARTTLS `tls=required`.
        let url = url.replace("tls=starttls", "tls=required");
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|error| MailError::Config(format!("SMTP URL: {error}")))?
            .timeout(Some(SMTP_TIMEOUT))
            .pool_config(PoolConfig::new().max_size(SMTP_CONNECTIONS))
            .build();
        Ok(SmtpMailer { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        // A bare address only: parsed as a `Mailbox`, `victim<attacker@evil.example>`
        // would be a display name and someone else's address.
        let to: lettre::Address = mail
            .to
            .parse()
            .map_err(|error| MailError::Permanent(format!("recipient {:?}: {error}", mail.to)))?;
        let to = Mailbox::new(None, to);
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text.clone());
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone());
        let message = match &mail.html {
            Some(html) => builder.multipart(
                MultiPart::alternative().singlepart(text).singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html.clone()),
                ),
            ),
            None => builder.singlepart(text),
        }
        .map_err(|error| MailError::Permanent(format!("building the mail: {error}")))?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|error| {
                if error.is_permanent() {
                    MailError::Permanent(error.to_string())
                } else {
                    MailError::Temporary(error.to_string())
                }
            })
    }
}
