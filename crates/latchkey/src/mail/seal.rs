//! Sealed mail: what a queued mail says (subject, text, HTML) encrypted at rest, so the
//! links and codes it carries cannot be read from the database, a backup or a copy of
//! it (XChaCha20-Poly1305 under a key derived from the server's secret). The recipient
//! stays readable: the worker needs it, and `latchkey mail outbox` shows it. The worker
//! opens a sealed mail just before sending it ([`super::outbox::OutboxWorker::with_seal`]).
//! The cipher is [`crate::secret_box`]'s.

use super::{Mail, MailError};
use crate::secret_box::SecretBox;

/// What a sealed field starts with (a plain field never does: it is not base64).
const PREFIX: &str = "latchkey-sealed:v1:";

/// The key mail is sealed and opened with.
#[derive(Clone, Debug)]
pub struct MailSeal {
    sealed_box: SecretBox,
}

impl MailSeal {
    /// The seal derived from `secret` (the server's secret key): every process with the
    /// same secret opens what any of them sealed.
    pub fn new(secret: &[u8]) -> Self {
        MailSeal {
            sealed_box: SecretBox::new(secret, "mail"),
        }
    }

    /// `mail` with its subject, text and HTML sealed (each bound to the recipient, so a
    /// sealed body moved to another row does not open).
    pub fn seal(&self, mail: &Mail) -> Result<Mail, MailError> {
        Ok(Mail {
            to: mail.to.clone(),
            subject: self.seal_field(&mail.to, &mail.subject)?,
            text: self.seal_field(&mail.to, &mail.text)?,
            html: mail
                .html
                .as_deref()
                .map(|html| self.seal_field(&mail.to, html))
                .transpose()?,
        })
    }

    /// `mail` with its sealed fields opened; plain fields pass as they are (mail an
    /// application queued without a seal). A field that does not open is a
    /// [`MailError::Permanent`]: no retry will open it.
    pub fn open(&self, mail: Mail) -> Result<Mail, MailError> {
        Ok(Mail {
            subject: self.open_field(&mail.to, &mail.subject)?,
            text: self.open_field(&mail.to, &mail.text)?,
            html: mail
                .html
                .as_deref()
                .map(|html| self.open_field(&mail.to, html))
                .transpose()?,
            to: mail.to,
        })
    }

    fn seal_field(&self, to: &str, field: &str) -> Result<String, MailError> {
        let sealed = self
            .sealed_box
            .seal(field.as_bytes(), to.as_bytes())
            .ok_or_else(|| MailError::Config("mail could not be sealed".into()))?;
        Ok(format!("{PREFIX}{sealed}"))
    }

    fn open_field(&self, to: &str, field: &str) -> Result<String, MailError> {
        let Some(sealed) = field.strip_prefix(PREFIX) else {
            return Ok(field.to_string());
        };
        self.sealed_box
            .open(sealed, to.as_bytes())
            .and_then(|opened| String::from_utf8(opened).ok())
            .ok_or_else(|| {
                MailError::Permanent(
                    "a sealed mail that does not open with this server's key".into(),
                )
            })
    }

    /// Whether any field of `mail` is sealed.
    pub fn is_sealed(mail: &Mail) -> bool {
        [
            Some(mail.subject.as_str()),
            Some(mail.text.as_str()),
            mail.html.as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(|field| field.starts_with(PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> Mail {
        Mail {
            to: "ada@example.com".into(),
            subject: "Your sign-in code: 123456".into(),
            text: "https://example.com/login?token=abc".into(),
            html: Some("<a href=\"https://example.com/login?token=abc\">x</a>".into()),
        }
    }

    #[test]
    fn sealed_mail_hides_its_words_and_opens_with_the_same_secret_only() {
        let seal = MailSeal::new(b"secret one");
        let sealed = seal.seal(&mail()).expect("seal");
        assert!(MailSeal::is_sealed(&sealed));
        for field in [
            &sealed.subject,
            &sealed.text,
            sealed.html.as_ref().expect("html"),
        ] {
            assert!(!field.contains("123456") && !field.contains("token=abc"));
        }
        assert_eq!(seal.open(sealed.clone()).expect("open"), mail());
        assert!(matches!(
            MailSeal::new(b"secret two").open(sealed.clone()),
            Err(MailError::Permanent(_))
        ));
        let moved = Mail {
            to: "eve@example.com".into(),
            ..sealed
        };
        assert!(seal.open(moved).is_err(), "bound to its recipient");
        assert_eq!(seal.open(mail()).expect("plain passes"), mail());
    }
}
