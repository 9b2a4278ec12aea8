//! Access tokens as a client sends them: whatever comes in, parsing never panics, and
//! what it takes is a token of the exact shape whose checksum holds (so a one-byte
//! change of it is refused).
#![no_main]

use latchkey::access_token::{AccessToken, TOKEN_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(token) = AccessToken::parse(text) {
        let exposed = token.expose();
        assert_eq!(exposed, text);
        assert_eq!(exposed.len(), TOKEN_LEN);
        assert!(exposed.starts_with("lk_"));
        assert!(exposed[3..].bytes().all(|byte| byte.is_ascii_alphanumeric()));
        // The last checksum character changed: refused.
        let mut altered = exposed.as_bytes().to_vec();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).expect("ASCII");
        assert!(AccessToken::parse(&altered).is_err(), "{altered}");
    }
});
