//! Time-based one-time codes (RFC 6238, on `totp-rs`): SHA-1, 6 digits, 30-second steps,
//! one step of clock skew either way. A code is accepted only for a time step after the
//! last one accepted for that user, so a code (or an older one) never counts twice.

use totp_rs::{Algorithm, Secret, TOTP};

/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
pub const SECRET_BYTES: usize = 20;

/// Seconds per time step.
pub const STEP_SECONDS: u64 = 30;

/// A user's TOTP generator.
pub struct Totp {
    totp: TOTP,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Totp(..)")
    }
}

/// Why a secret cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("unusable TOTP secret: {0}")]
pub struct TotpError(String);

impl Totp {
    /// A new random secret.
    pub fn generate_secret() -> Vec<u8> {
        let mut secret = vec![0u8; SECRET_BYTES];
        crate::bytes::random_bytes(&mut secret);
        secret
    }

    /// The generator over raw `secret` bytes (at least 16), labelled `account` at
    /// `issuer` in authenticator apps (neither may hold a colon).
    pub fn new(secret: Vec<u8>, issuer: &str, account: &str) -> Result<Self, TotpError> {
        let label = |text: &str| text.replace(':', " ");
        TOTP::new(
            Algorithm::SHA1,
            6,
            1,
            STEP_SECONDS,
            secret,
            Some(label(issuer)),
            label(account),
        )
        .map(|totp| Totp { totp })
        .map_err(|error| TotpError(error.to_string()))
    }

    /// The generator over a secret given in base32 (from another system, or an app's
    /// export).
    pub fn from_base32(secret: &str, issuer: &str, account: &str) -> Result<Self, TotpError> {
        let bytes = Secret::Encoded(secret.trim().replace(' ', "").to_uppercase())
            .to_bytes()
            .map_err(|error| TotpError(format!("{error:?}")))?;
        Self::new(bytes, issuer, account)
    }

    /// The secret in standard base32 (RFC 4648, no padding), for typing into an app or
    /// moving to another system.
    pub fn secret_base32(&self) -> String {
        Secret::Raw(self.totp.secret.clone())
            .to_encoded()
            .to_string()
    }

    /// The `otpauth://totp/…` URI an authenticator app scans.
    pub fn otpauth_uri(&self) -> String {
        self.totp.get_url()
    }

    /// The code for unix time `seconds`.
    pub fn code_at(&self, seconds: u64) -> String {
        self.totp.generate(seconds)
    }

    /// The time step `code` belongs to at unix time `now` (this step or one either side),
    /// if it is later than `after` (the last step accepted before); compared in constant
    /// time.
    pub fn matching_step(&self, code: &str, now: u64, after: Option<u64>) -> Option<u64> {
        use subtle::ConstantTimeEq;
        let code = code.trim().replace(' ', "");
        let current = now / STEP_SECONDS;
        [
            current.checked_sub(1),
            Some(current),
            current.checked_add(1),
        ]
        .into_iter()
        .flatten()
        .filter(|step| after.is_none_or(|last| *step > last))
        .find(|step| {
            let expected = self.totp.generate(step * STEP_SECONDS);
            bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        // RFC 6238, appendix B, the SHA-1 seed, the last 6 of its 8 digits.
        let totp = Totp::new(b"12345678901234567890".to_vec(), "latchkey", "test").expect("totp");
        assert_eq!(totp.code_at(59), "287082");
        assert_eq!(totp.code_at(1_111_111_109), "081804");
        assert_eq!(totp.code_at(2_000_000_000), "279037");
    }

    #[test]
    fn a_step_either_side_is_accepted_once_and_never_an_older_one() {
        let totp = Totp::new(Totp::generate_secret(), "latchkey", "ada").expect("totp");
        let now = 1_800_000_015;
        let step = now / STEP_SECONDS;
        for (offset, expected) in [
            (-1i64, Some(step - 1)),
            (0, Some(step)),
            (1, Some(step + 1)),
        ] {
            let at = (now as i64 + offset * STEP_SECONDS as i64) as u64;
            assert_eq!(totp.matching_step(&totp.code_at(at), now, None), expected);
        }
        let two_back = totp.code_at(now - 2 * STEP_SECONDS);
        assert_eq!(
            totp.matching_step(&two_back, now, None),
            None,
            "beyond the skew"
        );
        let current = totp.code_at(now);
        assert_eq!(
            totp.matching_step(&current, now, Some(step)),
            None,
            "used step"
        );
        assert_eq!(
            totp.matching_step(&current, now, Some(step - 1)),
            Some(step)
        );
        assert_eq!(totp.matching_step("12 34 56x", now, None), None);
        assert!(totp
            .otpauth_uri()
            .starts_with("otpauth://totp/latchkey:ada?secret="));
        assert_eq!(totp.secret_base32().len(), 32);
    }
}
