//! What the strength check of new passwords costs (`PasswordPolicy::check`, zxcvbn): it
//! runs on the hashing threads at sign-up and password change, and its worst case adds
//! to what one such request makes the server compute. Typical passwords, and 128
//! characters (the longest accepted; zxcvbn reads the first 100) built to give it many
//! overlapping matches.
//!
//! `cargo bench --bench password_policy [-- SECONDS]` (default 2 s per case)

use latchkey::PasswordPolicy;
use std::time::{Duration, Instant};

fn main() {
    // `cargo bench` passes `--bench` too; the first number is the duration.
    let seconds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<u64>().ok())
        .unwrap_or(2);
    let policy = PasswordPolicy::default();
    let cases = [
        ("12 characters, common", "123456789012".to_string()),
        ("21 characters, words", "correct horse battery".to_string()),
        ("128 characters, one word repeated", "password".repeat(16)),
        (
            "128 characters, years and keyboard rows",
            "1qaz2wsx19841985qwertyasdf".repeat(5)[..128].to_string(),
        ),
        (
            "128 characters, mixed",
            "Tr0ub4dor&3 correct-horse 2024-01-02 zxcvbn!".repeat(3)[..128].to_string(),
        ),
    ];
    for (name, password) in cases {
        assert_eq!(password.chars().count().min(128), password.chars().count());
        let started = Instant::now();
        let mut done = 0u32;
        while started.elapsed() < Duration::from_secs(seconds) {
            std::hint::black_box(policy.check(std::hint::black_box(&password)).is_ok());
            done += 1;
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(done);
        println!("{name}: {micros:.0} µs per check");
    }
}
