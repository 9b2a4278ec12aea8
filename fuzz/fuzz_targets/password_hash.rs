//! Stored password hashes (imported from other systems). Whatever the string:
//! * the import check answers within 100 ms, the same answer twice;
//! * a hash the import check refuses never verifies: verification answers an error or
//!   "no match", within 100 ms, so hostile parameters (bcrypt cost 31, PBKDF2 with a
//!   billion rounds, argon2 with 4 GiB) never start. (Not "an error": a PHC string of
//!   another algorithm with no parameters, `argon2$v` say, which the import check
//!   refuses, passes verification's own pre-checks and is answered "no match" by the
//!   argon2 crate, at no cost.)
//! * never a panic.
//!
//! The first byte picks a known format's prefix, so the fuzzer spends its time inside
//! each parser rather than finding the prefixes. A hash the check accepts is not
//! verified here: its parameters may be up to the caps (seconds of work per input).
#![no_main]

use latchkey::{HashParams, PasswordHasher};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

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

/// Parsing and refusing are string work: far below this even on a loaded machine.
const QUICK: Duration = Duration::from_millis(100);

struct Harness {
    runtime: tokio::runtime::Runtime,
    hasher: PasswordHasher,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let hasher = PasswordHasher::new(HashParams::insecure_fast()).expect("hasher");
    Harness { runtime, hasher }
});

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let stored = format!("{}{rest}", PREFIXES[usize::from(selector) % PREFIXES.len()]);

    let started = Instant::now();
    let checked = latchkey::password::check_stored_hash(&stored);
    assert!(
        started.elapsed() < QUICK,
        "checking {stored:?} took {:?}",
        started.elapsed()
    );
    assert_eq!(
        latchkey::password::check_stored_hash(&stored).is_ok(),
        checked.is_ok(),
        "{stored:?}: the same answer twice"
    );
    if checked.is_ok() {
        return;
    }
    let harness = &*HARNESS;
    let before = harness.hasher.verifications();
    let started = Instant::now();
    let verified = harness
        .runtime
        .block_on(harness.hasher.verify("a password", &stored));
    let took = started.elapsed();
    match verified {
        Ok(true) => panic!("{stored:?}: refused on import, but it verifies"),
        Err(_) => {
            // Refused by the pre-checks: nothing counted, nothing handed to the hashing
            // threads.
            assert_eq!(
                harness.hasher.verifications(),
                before,
                "{stored:?}: refused, but counted as a verification"
            );
            assert!(took < QUICK, "refusing {stored:?} took {took:?}");
        }
        Ok(false) => {
            // The one way past the pre-checks that the import check closes: Django's
            // `argon2$` prefix before a PHC string of another algorithm, which the
            // argon2 crate answers "no match" without hashing. The hop to the
            // (low-priority) hashing threads may wait on a loaded machine; hashing
            // with parameters past the caps would take far longer.
            let algorithm = stored
                .strip_prefix("argon2$")
                .and_then(|phc| phc.split('$').next())
                .unwrap_or_else(|| panic!("{stored:?}: refused on import, but verified"));
            assert!(
                !algorithm.starts_with("argon2"),
                "{stored:?}: refused on import, but verified as {algorithm:?}"
            );
            assert!(took < Duration::from_secs(2), "{stored:?} took {took:?}");
        }
    }
});
