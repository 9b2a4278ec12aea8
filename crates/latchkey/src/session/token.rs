//! Session tokens (the secret in the cookie) and session ids (what stores key on).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::fmt;

/// Number of random bytes in a session token.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token in its cookie form (unpadded base64url of [`TOKEN_BYTES`]).
pub const TOKEN_CHARS: usize = 43;

/// The value of each base64url character (`A-Z a-z 0-9 - _`), 0xff for any other byte.
const BASE64URL_DIGITS: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut digits = [0xff; 256];
    let mut value = 0;
    while value < alphabet.len() {
        digits[alphabet[value] as usize] = value as u8;
        value += 1;
    }
    digits
};

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
    ///
    /// Decoded by hand, since every request does it: 10 groups of four characters give
    /// 30 bytes and the last three characters give two.
    pub fn parse(value: &str) -> Option<Self> {
        Self::parse_bytes(value.as_bytes())
    }

    /// [`SessionToken::parse`] of a cookie value as it came (any bytes).
    pub(crate) fn parse_bytes(value: &[u8]) -> Option<Self> {
        let chars: &[u8; TOKEN_CHARS] = value.try_into().ok()?;
        let digit = |index: usize| u32::from(BASE64URL_DIGITS[usize::from(chars[index])]);
        let mut bytes = [0u8; TOKEN_BYTES];
        // Invalid characters map to 0xff: any of them sets bit 7 here.
        let mut invalid = 0;
        for group in 0..10 {
            let at = group * 4;
            let (a, b, c, d) = (digit(at), digit(at + 1), digit(at + 2), digit(at + 3));
            invalid |= a | b | c | d;
            let bits = a << 18 | b << 12 | c << 6 | d;
            bytes[group * 3..group * 3 + 3].copy_from_slice(&bits.to_be_bytes()[1..]);
        }
        let (a, b, c) = (digit(40), digit(41), digit(42));
        invalid |= a | b | c;
        let bits = a << 18 | b << 12 | c << 6;
        bytes[30..].copy_from_slice(&bits.to_be_bytes()[1..3]);
        let canonical = bits & 0xff == 0;
        (invalid & 0x80 == 0 && canonical).then_some(SessionToken(bytes))
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

/// How many cookies each thread remembers the ids of (see [`id_of_cookie`]).
const RECENT_COOKIES: usize = 4;

/// The last few session cookies one thread read, with their ids.
struct RecentCookies {
    entries: [([u8; TOKEN_CHARS], SessionId); RECENT_COOKIES],
    /// How many entries are filled.
    filled: usize,
    /// The entry the next new cookie replaces.
    next: usize,
}

thread_local! {
    static RECENT_COOKIES_READ: RefCell<RecentCookies> = const {
        RefCell::new(RecentCookies {
            entries: [([0; TOKEN_CHARS], SessionId([0; 32])); RECENT_COOKIES],
            filled: 0,
            next: 0,
        })
    };
}

/// The store id of the token in a session cookie value, or `None` if the value is not a
/// token: `SessionToken::parse_bytes(value).map(|token| token.id())`, remembered.
///
/// A browser sends the same cookie with every request, often over one keep-alive
/// connection, and decoding and hashing it cost more than reading the session from the
/// memory store: each thread keeps the ids of the last [`RECENT_COOKIES`] cookies it read.
/// A remembered id is only reused for a cookie equal to the remembered one byte for byte,
/// compared in constant time, so nothing about one client's cookie shows in the timing
/// of another's request.
pub(crate) fn id_of_cookie(value: &[u8]) -> Option<SessionId> {
    let chars: &[u8; TOKEN_CHARS] = value.try_into().ok()?;
    RECENT_COOKIES_READ.with(|recent| {
        let mut recent = recent.borrow_mut();
        let filled = recent.filled;
        let mut found = None;
        for (cookie, id) in &recent.entries[..filled] {
            if same_cookie(cookie, chars) {
                found = Some(*id);
            }
        }
        if found.is_some() {
            return found;
        }
        let id = SessionToken::parse_bytes(value)?.id();
        let slot = recent.next;
        recent.entries[slot] = (*chars, id);
        recent.filled = filled.max(slot + 1);
        recent.next = (slot + 1) % RECENT_COOKIES;
        Some(id)
    })
}

/// Whether two cookie values are equal, in a time that does not depend on where they
/// differ (every byte is compared; only the final answer branches). Not `subtle`'s
/// `ct_eq`, which the CSRF and remember-me checks use: it puts each byte through an
/// optimization barrier (130 instructions per request in callgrind), and this runs on
/// every request.
fn same_cookie(a: &[u8; TOKEN_CHARS], b: &[u8; TOKEN_CHARS]) -> bool {
    let difference = a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
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
    fn parsing_agrees_with_the_base64_crate() {
        for _ in 0..2000 {
            let mut bytes = [0u8; TOKEN_BYTES];
            random_bytes(&mut bytes);
            let encoded = URL_SAFE_NO_PAD.encode(bytes);
            assert_eq!(SessionToken::parse(&encoded), Some(SessionToken(bytes)));
            // Every single-character change is either another valid token (as the crate
            // decodes it) or refused, as the crate refuses it.
            let position = usize::from(bytes[0]) % TOKEN_CHARS;
            for replacement in [b'A', b'z', b'-', b'_', b'+', b'/', b'=', b'.', 0xc3] {
                let mut changed = encoded.clone().into_bytes();
                changed[position] = replacement;
                let Ok(changed) = String::from_utf8(changed) else {
                    continue;
                };
                let mut expected = [0u8; TOKEN_BYTES];
                let reference = match URL_SAFE_NO_PAD.decode_slice(&changed, &mut expected) {
                    Ok(TOKEN_BYTES) => Some(SessionToken(expected)),
                    _ => None,
                };
                assert_eq!(SessionToken::parse(&changed), reference, "{changed}");
            }
        }
    }

    #[test]
    fn remembered_cookie_ids_are_the_ids_of_exactly_those_cookies() {
        let direct = |cookie: &[u8]| SessionToken::parse_bytes(cookie).map(|token| token.id());
        // More distinct cookies than a thread remembers, each read again right away,
        // again after the others pushed it out, and with one character changed: every
        // answer is the one decoding and hashing give.
        let cookies: Vec<Vec<u8>> = (0..RECENT_COOKIES * 3)
            .map(|_| SessionToken::generate().encode().into_bytes())
            .collect();
        for _ in 0..3 {
            for cookie in &cookies {
                assert_eq!(id_of_cookie(cookie), direct(cookie));
                assert_eq!(id_of_cookie(cookie), direct(cookie));
                for position in [0, TOKEN_CHARS / 2, TOKEN_CHARS - 2] {
                    let mut changed = cookie.clone();
                    changed[position] = if changed[position] == b'A' {
                        b'B'
                    } else {
                        b'A'
                    };
                    assert_eq!(id_of_cookie(&changed), direct(&changed));
                    assert_ne!(id_of_cookie(&changed), id_of_cookie(cookie));
                }
            }
        }
        // What is not a token is not one, however often it comes.
        for bad in [
            &b""[..],
            b"short",
            &[b'A'; TOKEN_CHARS + 1],
            &[b'.'; TOKEN_CHARS],
        ] {
            assert_eq!(id_of_cookie(bad), None);
            assert_eq!(id_of_cookie(bad), None);
        }
    }

    #[test]
    fn cookie_comparison_sees_every_position() {
        let cookie = [b'a'; TOKEN_CHARS];
        assert!(same_cookie(&cookie, &cookie));
        for position in 0..TOKEN_CHARS {
            let mut other = cookie;
            other[position] = b'b';
            assert!(!same_cookie(&cookie, &other), "position {position}");
        }
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
