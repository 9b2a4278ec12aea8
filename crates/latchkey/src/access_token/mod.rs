//! Personal access tokens, for scripts and command lines. A token is `lk_`, then 32 random
//! bytes in base62 (43 characters), then a checksum of what precedes it: the CRC-32 of
//! those 46 characters in 6 base62 characters, as GitHub's tokens carry one. A secret
//! scanner spots a leaked token by its shape, and a mistyped one is refused by its
//! checksum before any lookup. Only [`AccessToken::hash`] (SHA-256) is ever stored
//! ([`store`]); [`issue`], [`check`] and [`revoke`] are the rules every caller shares.

mod grant;
pub mod store;

pub use grant::{
    check, find, find_live, issue, record_use, revoke, IssueError, NewAccessToken, NotLive,
    TokenLifetime, TokenRefusal, TokenScopes, LAST_USED_EVERY, MAX_NAME_CHARS,
};
pub use store::{AccessTokenRecord, AccessTokenStore, AccessTokenStoreError};

use crate::bytes::random_bytes;
use sha2::{Digest, Sha256};
use std::fmt;

/// What every token starts with.
pub const PREFIX: &str = "lk_";
/// Random bytes in a token.
const SECRET_BYTES: usize = 32;
/// Base62 characters of the secret: ⌈256 / log2(62)⌉.
const SECRET_CHARS: usize = 43;
/// Base62 characters of the checksum: 62⁶ > 2³².
const CHECKSUM_CHARS: usize = 6;
/// A token's whole length.
pub const TOKEN_LEN: usize = PREFIX.len() + SECRET_CHARS + CHECKSUM_CHARS;
/// Characters of a token shown in lists (the prefix and the secret's first 8).
const SHOWN_CHARS: usize = PREFIX.len() + 8;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is no access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    /// It does not start with `lk_`, or has another length.
    #[error("not a latchkey access token")]
    NotAToken,
    /// A character outside base62.
    #[error("an access token has only letters and digits after its prefix")]
    BadCharacter,
    /// The checksum does not match: a typo, or a forgery.
    #[error("the access token's checksum does not match")]
    BadChecksum,
}

/// A personal access token. Its `Debug` shows only the part [`AccessToken::shown`]
/// gives.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken({}…)", self.shown())
    }
}

impl AccessToken {
    /// A new token from the OS generator.
    pub fn generate() -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        random_bytes(&mut secret);
        let mut token = String::with_capacity(TOKEN_LEN);
        token.push_str(PREFIX);
        token.push_str(&base62(&secret, SECRET_CHARS));
        let checksum = crc32(token.as_bytes());
        token.push_str(&base62(&checksum.to_be_bytes(), CHECKSUM_CHARS));
        AccessToken(token)
    }

    /// `text` as a token, if it has a token's shape and checksum (no lookup is needed
    /// to refuse a typo).
    pub fn parse(text: &str) -> Result<Self, TokenFormatError> {
        if text.len() != TOKEN_LEN || !text.starts_with(PREFIX) {
            return Err(TokenFormatError::NotAToken);
        }
        // ASCII only from here on, so the split below falls between characters.
        if !text[PREFIX.len()..]
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric())
        {
            return Err(TokenFormatError::BadCharacter);
        }
        let (body, checksum) = text.split_at(TOKEN_LEN - CHECKSUM_CHARS);
        // Read as a number rather than the checksum written out again: no allocation on
        // every bearer request.
        if base62_value(checksum.as_bytes()) != Some(u64::from(crc32(body.as_bytes()))) {
            return Err(TokenFormatError::BadChecksum);
        }
        Ok(AccessToken(text.to_string()))
    }

    /// The token, to show once to the user who made it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored and looked up: the SHA-256 of the token.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The first characters, for lists ("lk_AbCd1234").
    pub fn shown(&self) -> &str {
        &self.0[..SHOWN_CHARS]
    }
}

/// `bytes` as a big-endian number in base62, left-padded with `0` to `width`.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while number.iter().any(|&byte| byte != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    digits.resize(digits.len().max(width), b'0');
    digits.reverse();
    // Only ASCII letters and digits were pushed.
    digits.into_iter().map(char::from).collect()
}

/// The number that base62 `digits` (at most 10) write, or `None` for a character
/// outside the alphabet.
fn base62_value(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |value, &digit| {
        let digit = match digit {
            b'0'..=b'9' => digit - b'0',
            b'A'..=b'Z' => digit - b'A' + 10,
            b'a'..=b'z' => digit - b'a' + 36,
            _ => return None,
        };
        value.checked_mul(62)?.checked_add(u64::from(digit))
    })
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and GitHub's token checksums use), a byte at a
/// time from a table made at compile time.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &byte| {
        CRC_TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8)
    })
}

/// The CRC-32 of each byte value, for [`crc32`].
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_and_base62_give_the_known_values() {
        // The standard check value of CRC-32.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(base62(&[0], 3), "000");
        assert_eq!(base62(&[61], 1), "z");
        assert_eq!(base62(&[62], 2), "10");
        assert_eq!(base62(&u32::MAX.to_be_bytes(), 6), "4gfFC3");
        assert_eq!(base62_value(b"4gfFC3"), Some(u64::from(u32::MAX)));
        assert_eq!(base62_value(b"10"), Some(62));
        assert_eq!(base62_value(b"1-"), None);
        // The largest secret still fits in its width.
        assert_eq!(
            base62(&[0xff; SECRET_BYTES], SECRET_CHARS).len(),
            SECRET_CHARS
        );
    }

    #[test]
    fn a_token_made_by_another_implementation_parses() {
        // Made with Python's zlib.crc32 and its own base62 (the fuzz seed `seed-valid`):
        // the format is the written one, not this code's accident.
        let token = "lk_eLyuwqFCSVQPSpsPQaEn7x6ms3ziIyQnYXQva8OVJnb0JTui8";
        assert!(AccessToken::parse(token).is_ok());
        assert_eq!(
            AccessToken::parse(token).map(|token| token.shown().to_string()),
            Ok("lk_eLyuwqFC".into())
        );
    }

    #[test]
    fn generated_tokens_have_the_shape_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let token = AccessToken::generate();
            assert_eq!(token.expose().len(), TOKEN_LEN);
            assert!(token.expose().starts_with("lk_"));
            assert_eq!(AccessToken::parse(token.expose()), Ok(token.clone()));
            assert!(seen.insert(token.hash()), "tokens differ");
        }
    }

    #[test]
    fn every_one_character_typo_is_refused_by_the_checksum() {
        let token = AccessToken::generate();
        let text = token.expose().as_bytes().to_vec();
        for position in PREFIX.len()..TOKEN_LEN {
            for &other in ALPHABET.iter().filter(|&&c| c != text[position]) {
                let mut typo = text.clone();
                typo[position] = other;
                let typo = String::from_utf8(typo).expect("ASCII");
                assert_eq!(
                    AccessToken::parse(&typo),
                    Err(TokenFormatError::BadChecksum),
                    "{typo}"
                );
            }
        }
    }

    #[test]
    fn other_shapes_are_refused_before_the_checksum() {
        let token = AccessToken::generate();
        let text = token.expose();
        assert_eq!(
            AccessToken::parse(&text[1..]),
            Err(TokenFormatError::NotAToken)
        );
        assert_eq!(
            AccessToken::parse(&format!("gh_{}", &text[3..])),
            Err(TokenFormatError::NotAToken)
        );
        assert_eq!(
            AccessToken::parse(&format!("{}-", &text[..TOKEN_LEN - 1])),
            Err(TokenFormatError::BadCharacter)
        );
        assert_eq!(AccessToken::parse(""), Err(TokenFormatError::NotAToken));
        // Multi-byte characters, even of the right byte length and across the
        // checksum's boundary, are refused without a panic.
        for filler in ["é", "€"] {
            let mut wide = String::from("lk_");
            while wide.len() < TOKEN_LEN {
                wide.push_str(filler);
            }
            assert!(AccessToken::parse(&wide).is_err());
            let wide = format!("{}é{}", &text[..TOKEN_LEN - 7], &text[TOKEN_LEN - 5..]);
            assert_eq!(wide.len(), TOKEN_LEN);
            assert_eq!(
                AccessToken::parse(&wide),
                Err(TokenFormatError::BadCharacter)
            );
        }
    }

    #[test]
    fn debug_shows_only_the_prefix() {
        let token = AccessToken::generate();
        let shown = format!("{token:?}");
        assert!(shown.contains(token.shown()));
        assert!(!shown.contains(&token.expose()[SHOWN_CHARS..]));
    }
}
