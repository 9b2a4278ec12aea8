//! Small secrets encrypted at rest: XChaCha20-Poly1305 under a key derived from the
//! server's secret for one purpose, each sealed value bound to a context (its owner), so
//! a value copied to another row does not open. The queued mail's words
//! ([`crate::mail::MailSeal`]) and TOTP secrets ([`crate::factors`]) are kept this way.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Bytes of the random nonce before each ciphertext.
const NONCE_BYTES: usize = 24;

/// A key for one purpose.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// The key for `purpose` derived from `secret` (the server's secret key): every
    /// process with the same secret opens what any of them sealed for that purpose.
    pub fn new(secret: &[u8], purpose: &str) -> Self {
        let key = Sha256::new()
            .chain_update(b"latchkey secret box v1\0")
            .chain_update(purpose.as_bytes())
            .chain_update(b"\0")
            .chain_update(secret)
            .finalize();
        SecretBox {
            cipher: XChaCha20Poly1305::new(&key),
        }
    }

    /// `plaintext` sealed and bound to `context`, as base64url text; `None` only for a
    /// plaintext too long for the cipher (gigabytes).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Option<String> {
        let mut nonce = [0u8; NONCE_BYTES];
        crate::bytes::random_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .ok()?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Some(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// What `sealed` holds, if it was sealed by this key for `context`.
    pub fn open(&self, sealed: &str, context: &[u8]) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: ciphertext,
            aad: context,
        };
        self.cipher.decrypt(XNonce::from_slice(nonce), payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::SecretBox;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_purpose_and_context() {
        let sealed_box = SecretBox::new(b"server secret", "totp");
        let sealed = sealed_box
            .seal(b"raw secret bytes", b"user 7")
            .expect("seal");
        assert!(!sealed.contains("raw"));
        assert_eq!(
            sealed_box.open(&sealed, b"user 7").as_deref(),
            Some(&b"raw secret bytes"[..])
        );
        assert_eq!(
            sealed_box.open(&sealed, b"user 8"),
            None,
            "bound to its owner"
        );
        assert_eq!(
            SecretBox::new(b"server secret", "mail").open(&sealed, b"user 7"),
            None
        );
        assert_eq!(
            SecretBox::new(b"other secret", "totp").open(&sealed, b"user 7"),
            None
        );
        assert_eq!(sealed_box.open("not base64!", b"user 7"), None);
        assert_eq!(sealed_box.open("", b"user 7"), None);
    }
}
