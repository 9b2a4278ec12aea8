//! Random bytes and hex: the ground floor every secret and every key stands on.

/// Fills `buf` from the operating system's CSPRNG: the one source of every secret
/// latchkey makes (session and remember-me tokens, CSRF values, salts, nonces, mailed
/// tokens and codes, TOTP secrets, recovery codes).
pub fn random_bytes(buf: &mut [u8]) {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    OsRng.fill_bytes(buf);
}

/// `bytes` as lower-case hex, two digits a byte.
pub fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The bytes `hex` spells (either case, two digits a byte), `None` if it spells none.
pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    // `from_str_radix` alone would take a sign ("+f").
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|index| {
            hex.get(index..index + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff];
        assert_eq!(lower_hex(&bytes), "000fa5ff");
        assert_eq!(from_hex("000fa5ff"), Some(bytes.to_vec()));
        assert_eq!(from_hex("000FA5FF"), Some(bytes.to_vec()));
        for bad in ["0", "zz", "0g", "+1", "é0"] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
    }
}
