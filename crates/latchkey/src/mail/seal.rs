//! Sealed mail: what a queued mail says (subject, text, HTML) encrypted at rest, so the
//! links and codes it carries cannot be read from the database, a backup or a copy of
//! it (XChaCha20-Poly1305 under a key derived from the server's secret). The recipient
//! stays readable: the worker needs it, and `latchkey mail outbox` shows it. The worker
//! opens a sealed mail just before sending it ([`super::outbox::OutboxWorker::with_seal`]).

use super::{Mail, MailError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// What a sealed field starts with (a plain field never does: it is not base64).
const PREFIX: &str = "latchkey-sealed:v1:";

/// Bytes of the random nonce before each ciphertext.
const NONCE_BYTES: usize = 24;

/// The key mail is sealed and opened with.
#[derive(Clone)]
pub struct MailSeal {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MailSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailSeal(..)")
    }
}

impl MailSeal {
    /// The seal derived from `secret` (the server's secret key): every process with the
    /// same secret opens what any of them sealed.
    pub fn new(secret: &[u8]) -> Self {
        let key = Sha256::new()
            .chain_update(b"latchkey mail seal key v1\0")
            .chain_update(secret)
            .finalize();
        MailSeal {
            cipher: XChaCha20Poly1305::new(&key),
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
        let mut nonce = [0u8; NONCE_BYTES];
        crate::session::random_bytes(&mut nonce);
        let payload = Payload {
            msg: field.as_bytes(),
            aad: to.as_bytes(),
        };
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| MailError::Config("mail could not be sealed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    fn open_field(&self, to: &str, field: &str) -> Result<String, MailError> {
        let Some(encoded) = field.strip_prefix(PREFIX) else {
            return Ok(field.to_string());
        };
        let refused = || {
            MailError::Permanent("a sealed mail that does not open with this server's key".into())
        };
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| refused())?;
        if bytes.len() < NONCE_BYTES {
            return Err(refused());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: ciphertext,
            aad: to.as_bytes(),
        };
        let opened = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| refused())?;
        String::from_utf8(opened).map_err(|_| refused())
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
