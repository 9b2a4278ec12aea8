//! User names: whatever comes in, an accepted name is already normalised (validating it
//! again changes nothing), 1–64 characters, free of whitespace, control, invisible and
//! direction characters and `@`; its login key and skeleton are stable under the key.
#![no_main]

use latchkey::user::{
    is_invisible_or_bidi_control, login_key, username_skeleton, validate_username,
    MAX_USERNAME_CHARS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let key = login_key(raw);
    assert_eq!(login_key(&key), key, "{raw:?}");
    let Ok(name) = validate_username(raw) else {
        return;
    };
    let chars = name.chars().count();
    assert!((1..=MAX_USERNAME_CHARS).contains(&chars), "{name:?}");
    assert!(
        !name.chars().any(|c| c.is_whitespace()
            || c.is_control()
            || is_invisible_or_bidi_control(c)
            || c == '@'),
        "{name:?}"
    );
    assert_eq!(
        validate_username(&name).ok().as_deref(),
        Some(name.as_str()),
        "{raw:?}"
    );
    assert_eq!(login_key(&name), key, "{raw:?}");
    assert_eq!(username_skeleton(&name), username_skeleton(&key), "{raw:?}");
});
