//! Session tokens (the secret in the cookie) and session ids (what stores key on).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;

/// Number of random bytes in a session token.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token in its cookie form (unpadded base64url of [`TOKEN_BYTES`]).
pub const TOKEN_CHARS: usize = 43;

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    OsRng.fill_bytes(buf);
}

/// The secret a browser holds: 32 bytes from the OS CSPRNG, shown as 43 base64url characters.
///
/// It only ever lives in the cookie; stores see its [`SessionId`] (the SHA-256), so a
/// leaked store does not leak live sessions.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; TOKEN_BYTES]);

impl SessionToken {
    /// A new random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        random_bytes(&mut bytes);
        SessionToken(bytes)
    }

    /// Parses a cookie value; anything but exactly 43 base64url characters in canonical
    /// form (the unused low bits of the last character zero) is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        Self::parse_bytes(value.as_bytes())
    }

    /// [`SessionToken::parse`] of a cookie value as it came (any bytes).
    pub(crate) fn parse_bytes(value: &[u8]) -> Option<Self> {
        if value.len() != TOKEN_CHARS {
            return None;
        }
        // The engine refuses padding and stray bits in the last character.
        let mut bytes = [0u8; TOKEN_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut bytes) {
            Ok(TOKEN_BYTES) => Some(SessionToken(bytes)),
            _ => None,
        }
    }

    /// A token from its raw bytes (as sealed inside an encrypted cookie).
    pub(crate) fn from_bytes(bytes: [u8; TOKEN_BYTES]) -> Self {
        SessionToken(bytes)
    }

    /// The raw bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; TOKEN_BYTES] {
        &self.0
    }

    /// The cookie form of the token.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The id stores key on: SHA-256 of the token bytes.
    pub fn id(&self) -> SessionId {
        SessionId(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// `bytes` as lower-case hex, two digits a byte.
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// SHA-256 of a [`SessionToken`]: the key a session is stored under.
///
/// Knowing an id does not let anyone use the session; it is safe to show in admin
/// listings and to pass to `revoke`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// Lower-case hex (64 characters), the form SQL stores and the CLI use.
    pub fn to_hex(&self) -> String {
        lower_hex(&self.0)
    }

    /// Parses the 64-character hex form.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).ok()?;
        }
        Some(SessionId(bytes))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_are_43_chars_and_round_trip() {
        let token = SessionToken::generate();
        let encoded = token.encode();
        assert_eq!(encoded.len(), TOKEN_CHARS);
        assert_eq!(SessionToken::parse(&encoded), Some(token.clone()));
        assert_eq!(
            SessionToken::parse(&encoded).map(|t| t.id()),
            Some(token.id())
        );
    }

    #[test]
    fn ten_thousand_tokens_are_distinct() {
        let encoded: HashSet<String> = (0..10_000)
            .map(|_| SessionToken::generate().encode())
            .collect();
        assert_eq!(encoded.len(), 10_000);
    }

    #[test]
    fn non_canonical_last_characters_are_rejected() {
        // "B" in last place leaves a stray low bit; "A", "Q", "g", "w" do not.
        let base = "A".repeat(42);
        for (last, valid) in [
            ('A', true),
            ('Q', true),
            ('g', true),
            ('w', true),
            ('B', false),
            ('R', false),
            ('_', false),
        ] {
            assert_eq!(
                SessionToken::parse(&format!("{base}{last}")).is_some(),
                valid,
                "{last}"
            );
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = SessionToken::generate().encode();
        assert!(SessionToken::parse("").is_none());
        assert!(SessionToken::parse(&good[..42]).is_none());
        assert!(SessionToken::parse(&format!("{good}A")).is_none());
        assert!(SessionToken::parse(&good.replace(|_c: char| true, "+")).is_none());
        assert!(SessionToken::parse(&"é".repeat(21)).is_none());
        // 43 chars whose last char carries bits that do not fit in 32 bytes.
        let mut bad_tail = good[..42].to_string();
        bad_tail.push('_');
        if URL_SAFE_NO_PAD.decode(&bad_tail).is_err() {
            assert!(SessionToken::parse(&bad_tail).is_none());
        }
    }

    #[test]
    fn id_is_sha256_and_hex_round_trips() {
        let token = SessionToken::generate();
        let id = token.id();
        assert_ne!(id.0[..], token.0[..]);
        assert_eq!(SessionId::from_hex(&id.to_hex()), Some(id));
        assert!(SessionId::from_hex("zz").is_none());
        assert!(SessionId::from_hex(&"g".repeat(64)).is_none());
        let mut bytes = [0u8; 32];
        bytes[0] = 0x0f;
        bytes[1] = 0xa9;
        bytes[31] = 0xff;
        let hex = SessionId(bytes).to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("0fa900") && hex.ends_with("00ff"), "{hex}");
    }
}
