//! `next` redirect targets: whatever comes in, what goes out is a local path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|next: &str| {
    if let Some(path) = latchkey::redirect::safe_next(next) {
        assert!(path.starts_with('/'), "{path:?}");
        assert!(!path.starts_with("//") && !path.starts_with("/\\"), "{path:?}");
        assert!(!path.contains('\\'), "{path:?}");
        assert!(!path.chars().any(char::is_control), "{path:?}");
    }
});
