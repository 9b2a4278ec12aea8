//! Stored password hashes (imported from other systems): any string is accepted or
//! refused quickly, never a panic. The first byte picks a known format's prefix, so the
//! fuzzer spends its time inside each parser rather than finding the prefixes.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PREFIXES: [&str; 10] = [
    "",
    "pbkdf2:sha256:",
    "pbkdf2:sha512:",
    "scrypt:",
    "pbkdf2_sha256$",
    "bcrypt_sha256$$2b$",
    "$2b$",
    "$pbkdf2-sha256$",
    "$argon2id$v=19$",
    "argon2$argon2i$v=19$",
];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else { return };
    let Ok(rest) = std::str::from_utf8(rest) else { return };
    let stored = format!("{}{rest}", PREFIXES[usize::from(selector) % PREFIXES.len()]);
    let _ = latchkey::password::check_stored_hash(&stored);
});
