//! Session cookies from the wire: any string parses to a token or to nothing, and an
//! encrypted cookie either fails to open or opens to a record that seals and opens
//! again to the same record. Never a panic.
#![no_main]

use latchkey::store::CookieStore;
use latchkey::SessionToken;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static COOKIES: LazyLock<Option<CookieStore>> =
    LazyLock::new(|| CookieStore::new(&[b"a fuzzing key of at least thirty-two bytes".as_slice()]).ok());

fuzz_target!(|value: &str| {
    if let Some(token) = SessionToken::parse(value) {
        assert_eq!(token.encode(), value, "a token round-trips");
    }
    let Some(cookies) = COOKIES.as_ref() else { return };
    if let Some((token, record)) = cookies.open(value) {
        let sealed = cookies.seal(&token, &record).expect("an opened record seals again");
        let (again, reopened) = cookies.open(&sealed).expect("and opens again");
        assert!(again == token && reopened == record);
    }
});
