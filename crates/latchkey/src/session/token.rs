//! Session tokens (the secret in the cookie) and session ids (what stores key on).

use crate::bytes::{lower_hex, random_bytes};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;

/// Number of random bytes in a session token.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token in its cookie form (unpadded base64url of [`TOKEN_BYTES`]).
pub const TOKEN_CHARS: usize = 43;

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
        let bytes: [u8; 32] = crate::bytes::from_hex(hex)?.try_into().ok()?;
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

    /// 3.2.4 / 6.3.1: every secret comes from the OS CSPRNG because there is no other
    /// random source in the shipped code. The crates' `src/` trees are read (comments
    /// aside) for any RNG or seeding API; the only ones allowed are `random_bytes` above
    /// and the `OsRng` the password module hands to argon2's salt generator. Their
    /// manifests may not name an RNG crate either, so a `thread_rng` or a seeded
    /// generator would have to come in through one of these two checks.
    #[test]
    fn random_bytes_and_argon2s_salts_are_the_only_randomness_in_the_source() {
        // "Rng" and "rng" catch every generator type and constructor (`OsRng`,
        // `StdRng`, `SmallRng`, `ThreadRng`, `thread_rng`, `rand::rng()`, `ChaCha20Rng`).
        const RNG_WORDS: [&str; 11] = [
            "Rng",
            "rng",
            "rand_core",
            "rand::",
            "random()",
            "from_entropy",
            "seed_from_u64",
            "from_seed",
            "getrandom",
            "fastrand",
            "new_v4",
        ];
        // File (relative to crates/) and the exact lines allowed to name an RNG.
        let allowed: [(&str, &str); 4] = [
            (
                "latchkey/src/bytes.rs",
                "use argon2::password_hash::rand_core::{OsRng, RngCore};",
            ),
            ("latchkey/src/bytes.rs", "OsRng.fill_bytes(buf);"),
            (
                "latchkey/src/password/mod.rs",
                "use argon2::password_hash::rand_core::OsRng;",
            ),
            (
                "latchkey/src/password/mod.rs",
                "SaltString::generate(&mut OsRng)",
            ),
        ];
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("crates/")
            .to_path_buf();
        let mut found = Vec::new();
        let mut files = 0;
        let mut stack = vec![
            crates.join("latchkey/src"),
            crates.join("latchkey-server/src"),
        ];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read dir") {
                    stack.push(entry.expect("entry").path());
                }
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            files += 1;
            let relative = path
                .strip_prefix(&crates)
                .expect("under crates/")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("read source");
            // Items under `#[cfg(test)]` (a `mod tests { … }`) are skipped, by braces.
            let (mut in_test, mut depth, mut entered) = (false, 0i64, false);
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("").trim();
                if code.starts_with("#[cfg(test)]") {
                    (in_test, depth, entered) = (true, 0, false);
                    continue;
                }
                if in_test {
                    depth += code.matches('{').count() as i64;
                    depth -= code.matches('}').count() as i64;
                    entered |= code.contains('{') || code.ends_with(';');
                    in_test = !(entered && depth <= 0);
                    continue;
                }
                if RNG_WORDS.iter().any(|word| code.contains(word))
                    && !allowed
                        .iter()
                        .any(|(file, allowed)| *file == relative && code.contains(allowed))
                {
                    found.push(format!("{relative}: {code}"));
                }
            }
        }
        assert!(files > 50, "read only {files} source files");
        assert!(
            found.is_empty(),
            "randomness other than random_bytes (OS CSPRNG):\n{}",
            found.join("\n")
        );
        for manifest in ["latchkey/Cargo.toml", "latchkey-server/Cargo.toml"] {
            let text = std::fs::read_to_string(crates.join(manifest)).expect("manifest");
            let mut section = String::new();
            for line in text.lines().map(str::trim) {
                if line.starts_with('[') {
                    section = line.to_string();
                    continue;
                }
                let name = line.split('=').next().unwrap_or("").trim();
                if section == "[dependencies]" {
                    assert!(
                        !(name.starts_with("rand")
                            || ["fastrand", "getrandom", "oorandom", "nanorand", "uuid"]
                                .contains(&name)),
                        "{manifest} depends on an RNG crate: {line}"
                    );
                }
            }
        }
    }

    /// `random_bytes` is what it says: the OS generator, every byte written.
    #[test]
    fn random_bytes_fills_the_whole_buffer() {
        // The chance that a given byte stays zero in all of 8 draws is 2^-64.
        let mut seen = [0u8; 64];
        for _ in 0..8 {
            let mut buf = [0u8; 64];
            random_bytes(&mut buf);
            for (seen, byte) in seen.iter_mut().zip(buf) {
                *seen |= byte;
            }
        }
        assert!(seen.iter().all(|byte| *byte != 0), "{seen:?}");
    }
}
