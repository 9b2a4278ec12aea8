//! Password hashes made by other frameworks, verified so their users can log in, and
//! re-hashed as argon2id after the first successful login.
//!
//! | format | example |
//! |---|---|
//! | Werkzeug PBKDF2 | `pbkdf2:sha256:600000$salt$hex`, `pbkdf2:sha512:…` |
//! | Werkzeug scrypt | `scrypt:32768:8:1$salt$hex` |
//! | bcrypt | `$2a$` / `$2b$` / `$2y$` (a password over 72 bytes never matches: bcrypt would silently use only its first 72) |
//! | Django | `pbkdf2_sha256$iterations$salt$base64`, `argon2$argon2id$…`, `bcrypt_sha256$$2b$…` |
//! | passlib | `$pbkdf2-sha256$rounds$salt$hash` (adapted base64) |
//! | PHC argon2 | `$argon2id$…` / `$argon2i$…` with any parameters |
//!
//! Parameters are checked before any work: a stored hash asking for more than
//! [`MAX_PBKDF2_ITERATIONS`], scrypt memory over [`MAX_SCRYPT_BYTES`], bcrypt cost over
//! [`MAX_BCRYPT_COST`] or argon2 memory over [`MAX_ARGON2_MEMORY_KIB`] is refused at once.

use super::PasswordError;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Most PBKDF2 iterations a stored hash may ask for.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Most memory a stored scrypt hash may ask for (128 · N · r bytes).
pub const MAX_SCRYPT_BYTES: u64 = 256 * 1024 * 1024;
/// Highest bcrypt cost a stored hash may ask for.
pub const MAX_BCRYPT_COST: u32 = 16;
/// Most memory a stored argon2 hash may ask for, in KiB.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
/// Most argon2 passes a stored hash may ask for.
pub const MAX_ARGON2_ITERATIONS: u32 = 16;
/// Most argon2 lanes a stored hash may ask for.
pub const MAX_ARGON2_PARALLELISM: u32 = 16;
/// bcrypt reads at most this many password bytes.
const BCRYPT_MAX_PASSWORD_BYTES: usize = 72;

/// The digest inside a PBKDF2 hash.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Digest2 {
    Sha256,
    Sha512,
}

/// A parsed stored hash that is not one of latchkey's own argon2 PHC strings.
#[derive(Debug, Clone)]
pub(crate) enum Legacy {
    /// PBKDF2-HMAC (Werkzeug, Django, passlib).
    Pbkdf2 {
        digest: Digest2,
        iterations: u32,
        salt: Vec<u8>,
        expected: Vec<u8>,
    },
    /// scrypt (Werkzeug).
    Scrypt {
        log_n: u8,
        r: u32,
        p: u32,
        salt: Vec<u8>,
        expected: Vec<u8>,
    },
    /// bcrypt; Django's `bcrypt_sha256` first turns the password into the hex SHA-256.
    Bcrypt { hash: String, sha256_first: bool },
}

fn malformed() -> PasswordError {
    PasswordError::MalformedHash
}

fn hostile(what: String) -> PasswordError {
    PasswordError::UnsafeHash(what)
}

/// What a stored hash is: `Ok(None)` for a PHC argon2 string (which the caller verifies,
/// after [`argon2_params`]), `Ok(Some(…))` for a legacy format, an error for anything
/// unreadable or asking for too much work.
pub(crate) fn parse(stored: &str) -> Result<Option<Legacy>, PasswordError> {
    if stored.starts_with("$argon2") || stored.starts_with("argon2$") {
        return Ok(None);
    }
    if let Some(rest) = stored.strip_prefix("pbkdf2:") {
        return werkzeug_pbkdf2(rest).map(Some);
    }
    if let Some(rest) = stored.strip_prefix("scrypt:") {
        return werkzeug_scrypt(rest).map(Some);
    }
    if let Some(rest) = stored.strip_prefix("pbkdf2_sha256$") {
        return django_pbkdf2(rest).map(Some);
    }
    if let Some(rest) = stored.strip_prefix("bcrypt_sha256$") {
        return bcrypt(rest, true).map(Some);
    }
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return bcrypt(stored, false).map(Some);
    }
    if let Some(rest) = stored.strip_prefix("$pbkdf2-sha256$") {
        return passlib_pbkdf2(rest, Digest2::Sha256).map(Some);
    }
    if let Some(rest) = stored.strip_prefix("$pbkdf2-sha512$") {
        return passlib_pbkdf2(rest, Digest2::Sha512).map(Some);
    }
    Err(malformed())
}

/// The PHC string inside a stored argon2 hash (Django prefixes it with `argon2`).
pub(crate) fn argon2_phc(stored: &str) -> &str {
    stored.strip_prefix("argon2$").map_or(stored, |rest| {
        // "argon2$argon2id$…" → "$argon2id$…"
        &stored[stored.len() - rest.len() - 1..]
    })
}

/// The argon2 parameters of a parsed PHC string, refused when they would cost too much
/// to verify. The raw numbers are checked before the argon2 crate sees them: it
/// computes with them unchecked (a huge `p` overflowed inside it, found by fuzzing).
pub(crate) fn argon2_params(
    parsed: &argon2::password_hash::PasswordHash<'_>,
) -> Result<argon2::Params, PasswordError> {
    // Every occurrence counts (argon2 reads them all, the last one wins), and a
    // repeated name is not a hash anyone wrote.
    let mut seen = Vec::new();
    for (name, value) in parsed.params.iter() {
        let name = name.as_str();
        if seen.contains(&name) {
            return Err(malformed());
        }
        seen.push(name);
        let limit = match name {
            "m" => MAX_ARGON2_MEMORY_KIB,
            "t" => MAX_ARGON2_ITERATIONS,
            "p" => MAX_ARGON2_PARALLELISM,
            _ => continue,
        };
        let number = value.decimal().map_err(|_| malformed())?;
        if number > limit {
            return Err(hostile(format!("argon2 {name}={number} exceeds {limit}")));
        }
    }
    argon2::Params::try_from(parsed).map_err(|_| malformed())
}

fn iterations(text: &str) -> Result<u32, PasswordError> {
    let iterations: u64 = text.parse().map_err(|_| malformed())?;
    if iterations == 0 {
        return Err(malformed());
    }
    if iterations > u64::from(MAX_PBKDF2_ITERATIONS) {
        return Err(hostile(format!("{iterations} PBKDF2 iterations")));
    }
    Ok(iterations as u32)
}

fn digest_size(digest: Digest2) -> usize {
    match digest {
        Digest2::Sha256 => 32,
        Digest2::Sha512 => 64,
    }
}

/// `sha256:600000$salt$hex` (after `pbkdf2:`).
fn werkzeug_pbkdf2(rest: &str) -> Result<Legacy, PasswordError> {
    let (method, salt, hex) = three_parts(rest)?;
    let mut method = method.split(':');
    let digest = match method.next() {
        Some("sha256") => Digest2::Sha256,
        Some("sha512") => Digest2::Sha512,
        _ => return Err(malformed()),
    };
    let iterations = iterations(method.next().ok_or_else(malformed)?)?;
    if method.next().is_some() {
        return Err(malformed());
    }
    let expected = decode_hex(hex)?;
    if expected.len() != digest_size(digest) {
        return Err(malformed());
    }
    Ok(Legacy::Pbkdf2 {
        digest,
        iterations,
        salt: salt.as_bytes().to_vec(),
        expected,
    })
}

/// `32768:8:1$salt$hex` (after `scrypt:`).
fn werkzeug_scrypt(rest: &str) -> Result<Legacy, PasswordError> {
    let (params, salt, hex) = three_parts(rest)?;
    let numbers: Vec<u64> = params
        .split(':')
        .map(|number| number.parse().map_err(|_| malformed()))
        .collect::<Result<_, _>>()?;
    let [n, r, p] = numbers[..] else {
        return Err(malformed());
    };
    if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 || r > 64 || p > 64 {
        return Err(malformed());
    }
    let memory = 128u64.saturating_mul(n).saturating_mul(r);
    if memory > MAX_SCRYPT_BYTES || n.saturating_mul(r).saturating_mul(p) > 1 << 24 {
        return Err(hostile(format!("scrypt N={n} r={r} p={p}")));
    }
    let expected = decode_hex(hex)?;
    if expected.is_empty() || expected.len() > 128 {
        return Err(malformed());
    }
    Ok(Legacy::Scrypt {
        log_n: n.trailing_zeros() as u8,
        r: r as u32,
        p: p as u32,
        salt: salt.as_bytes().to_vec(),
        expected,
    })
}

/// `iterations$salt$base64` (after `pbkdf2_sha256$`).
fn django_pbkdf2(rest: &str) -> Result<Legacy, PasswordError> {
    let (iterations_text, salt, hash) = three_parts(rest)?;
    let iterations = iterations(iterations_text)?;
    let expected = STANDARD.decode(hash).map_err(|_| malformed())?;
    if expected.len() != 32 {
        return Err(malformed());
    }
    Ok(Legacy::Pbkdf2 {
        digest: Digest2::Sha256,
        iterations,
        salt: salt.as_bytes().to_vec(),
        expected,
    })
}

/// `rounds$salt$hash` in passlib's adapted base64 (after `$pbkdf2-sha256$`).
fn passlib_pbkdf2(rest: &str, digest: Digest2) -> Result<Legacy, PasswordError> {
    let (rounds, salt, hash) = three_parts(rest)?;
    let iterations = iterations(rounds)?;
    let adapted = |text: &str| {
        STANDARD_NO_PAD
            .decode(text.replace('.', "+"))
            .map_err(|_| malformed())
    };
    let expected = adapted(hash)?;
    if expected.len() != digest_size(digest) {
        return Err(malformed());
    }
    Ok(Legacy::Pbkdf2 {
        digest,
        iterations,
        salt: adapted(salt)?,
        expected,
    })
}

/// `$2b$12$…` (Django's `bcrypt_sha256$` prefix already removed; its old form has an
/// extra `$` before the bcrypt string).
fn bcrypt(hash: &str, sha256_first: bool) -> Result<Legacy, PasswordError> {
    let hash = if sha256_first {
        hash.trim_start_matches('$')
    } else {
        hash
    };
    let hash = format!("${hash}").replacen("$$", "$", 1);
    let mut fields = hash.split('$');
    let (Some(""), Some(version), Some(cost)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed());
    };
    if !matches!(version, "2a" | "2b" | "2y") || hash.len() != 60 {
        return Err(malformed());
    }
    let cost: u32 = cost.parse().map_err(|_| malformed())?;
    if cost > MAX_BCRYPT_COST {
        return Err(hostile(format!("bcrypt cost {cost}")));
    }
    Ok(Legacy::Bcrypt { hash, sha256_first })
}

fn three_parts(text: &str) -> Result<(&str, &str, &str), PasswordError> {
    let mut parts = text.splitn(3, '$');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(c)) if !a.is_empty() && !c.is_empty() && !c.contains('$') => {
            Ok((a, b, c))
        }
        _ => Err(malformed()),
    }
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, PasswordError> {
    crate::bytes::from_hex(hex).ok_or_else(malformed)
}

impl Legacy {
    /// Whether `password` matches (constant-time compare of the derived bytes).
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        match self {
            Legacy::Pbkdf2 {
                digest,
                iterations,
                salt,
                expected,
            } => {
                let mut derived = vec![0u8; expected.len()];
                let done = match digest {
                    Digest2::Sha256 => pbkdf2::pbkdf2::<hmac::Hmac<Sha256>>(
                        password,
                        salt,
                        *iterations,
                        &mut derived,
                    ),
                    Digest2::Sha512 => pbkdf2::pbkdf2::<hmac::Hmac<Sha512>>(
                        password,
                        salt,
                        *iterations,
                        &mut derived,
                    ),
                };
                done.is_ok() && bool::from(derived.ct_eq(expected))
            }
            Legacy::Scrypt {
                log_n,
                r,
                p,
                salt,
                expected,
            } => {
                let Ok(params) = scrypt::Params::new(*log_n, *r, *p, expected.len()) else {
                    return false;
                };
                let mut derived = vec![0u8; expected.len()];
                scrypt::scrypt(password, salt, &params, &mut derived).is_ok()
                    && bool::from(derived.ct_eq(expected))
            }
            Legacy::Bcrypt { hash, sha256_first } => {
                let prepared: Vec<u8> = if *sha256_first {
                    crate::bytes::lower_hex(&Sha256::digest(password)).into_bytes()
                } else {
                    password.to_vec()
                };
                // bcrypt ignores bytes past 72: a longer password never matches.
                prepared.len() <= BCRYPT_MAX_PASSWORD_BYTES
                    && bcrypt::verify(&prepared, hash).unwrap_or(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_parameters_are_refused_before_any_work() {
        for stored in [
            "pbkdf2:sha256:4000000000$salt$00",
            "pbkdf2_sha256$99999999999$salt$AAAA",
            "$pbkdf2-sha256$20000000$c2FsdA$AAAA",
            "scrypt:1073741824:8:1$salt$00",
            "scrypt:16384:65536:1$salt$00",
            "$2b$31$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
        ] {
            let result = parse(stored);
            assert!(
                matches!(
                    result,
                    Err(PasswordError::UnsafeHash(_)) | Err(PasswordError::MalformedHash)
                ),
                "{stored}: {result:?}"
            );
        }
        assert!(matches!(
            parse("pbkdf2:sha256:4000000000$salt$00"),
            Err(PasswordError::UnsafeHash(_))
        ));
        assert!(matches!(
            parse("scrypt:1073741824:8:1$salt$00"),
            Err(PasswordError::UnsafeHash(_))
        ));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for stored in [
            "",
            "$",
            "pbkdf2:",
            "pbkdf2:md5:1$a$00",
            "pbkdf2:sha256:1$a$zz",
            "scrypt:3:8:1$a$00",
            "scrypt:16384:8$a$00",
            "pbkdf2_sha256$1$a$!!",
            "$2b$",
            "$2c$10$x",
            "bcrypt_sha256$",
            "$pbkdf2-sha256$1$$",
            "plain text",
        ] {
            assert!(parse(stored).is_err(), "{stored:?}");
        }
    }

    #[test]
    fn huge_argon2_numbers_are_refused_not_overflowed() {
        // Found by the password_hash fuzz target: argon2's own check overflowed on p.
        for stored in [
            "$argon2id$v=19$p=3616161736",
            "$argon2id$v=19$m=4294967295,t=1,p=4294967295$c2FsdHNhbHQ$aGFzaA",
            "$argon2i$v=19$m=65536,t=4294967295,p=1$c2FsdHNhbHQ$aGFzaA",
            "$argon2id$v=19$p=8,p=806969908,m=608960988",
        ] {
            assert!(super::super::check_stored_hash(stored).is_err(), "{stored}");
        }
    }

    #[test]
    fn django_argon2_becomes_a_phc_string() {
        assert_eq!(
            argon2_phc("argon2$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA"),
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA"
        );
        assert_eq!(argon2_phc("$argon2id$x"), "$argon2id$x");
    }
}
