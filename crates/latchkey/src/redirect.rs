//! Safe `next` redirects: only same-site relative paths are followed.

/// Where to go after login when `next` is missing or unsafe.
pub const DEFAULT_AFTER_LOGIN: &str = "/home";

/// Longest `next` followed.
const MAX_NEXT_CHARS: usize = 2048;

/// Returns `next` if it is a same-site relative path (`/`, `/home?tab=2`, …), `None`
/// otherwise.
///
/// Refused: anything not starting with exactly one `/` (`//host`, `/\host`, `https:…`,
/// `javascript:…`, relative `home`), any backslash, whitespace or control character
/// (browsers strip or rewrite them, turning `/\t/host` into `//host`), and the same
/// tricks percent-encoded once or twice (`/%2F%2Fhost`, `/%5Chost`, `/%252F%252Fhost`).
///
/// ```
/// use latchkey::redirect::safe_next;
/// assert_eq!(safe_next("/home?tab=2"), Some("/home?tab=2"));
/// assert_eq!(safe_next("//evil.example"), None);
/// assert_eq!(safe_next("/\\evil.example"), None);
/// assert_eq!(safe_next("https://evil.example"), None);
/// ```
pub fn safe_next(next: &str) -> Option<&str> {
    if next.chars().count() > MAX_NEXT_CHARS || !is_safe_path(next) {
        return None;
    }
    // Percent-decoding must not reveal an unsafe path either (servers and browsers may
    // decode before routing); two rounds cover double encoding.
    let once = percent_decode(next)?;
    if !is_safe_path(&once) {
        return None;
    }
    let twice = percent_decode(&once)?;
    is_safe_path(&twice).then_some(next)
}

/// `next` if safe, else [`DEFAULT_AFTER_LOGIN`].
pub fn next_or_home(next: Option<&str>) -> &str {
    next.and_then(safe_next).unwrap_or(DEFAULT_AFTER_LOGIN)
}

fn is_safe_path(path: &str) -> bool {
    let mut chars = path.chars();
    if chars.next() != Some('/') {
        return false;
    }
    if matches!(chars.next(), Some('/') | Some('\\')) {
        return false;
    }
    !path
        .chars()
        .any(|c| c == '\\' || c.is_whitespace() || c.is_control() || is_invisible(c))
}

/// Characters browsers drop from URLs or render as nothing (so `/\u{200b}/host` would
/// become `//host`).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'
    )
}

/// Decodes `%XX` escapes; `None` if the result is not UTF-8 (treated as unsafe).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
            if let Some(value) = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                out.push(value);
                index += 3;
                continue;
            }
        }
        out.push(byte);
        index += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known open-redirect payloads (OWASP, PayloadsAllTheThings, Flask-Login and
    /// Microdot reports): none may be followed.
    const UNSAFE: &[&str] = &[
        "//evil.example",
        "///evil.example",
        "////evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "\\/evil.example",
        "/\\/evil.example",
        "https://evil.example",
        "http://evil.example/home",
        "HTTPS://evil.example",
        "//evil.example/%2F..",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "/%2F%2Fevil.example",
        "/%2f%2fevil.example",
        "/%5Cevil.example",
        "/%5cevil.example",
        "%2F%2Fevil.example",
        "/%252F%252Fevil.example",
        "/%255Cevil.example",
        "/\tevil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "/ /evil.example",
        "/%09/evil.example",
        "/%0a/evil.example",
        "/%00/evil.example",
        "/\u{0}/evil.example",
        "/\u{200b}/evil.example",
        "/\u{feff}/evil.example",
        " /home",
        "home",
        "evil.example",
        "",
        "@evil.example",
        "/%E0%A4%A",
        "/%ff",
    ];

    const SAFE: &[&str] = &[
        "/",
        "/home",
        "/home?tab=2",
        "/home#top",
        "/users/42/sessions",
        "/search?q=caf%C3%A9",
        "/a/b/../c",
        "/path;param",
        "/%41",
        "/@user",
        "/home?next=//evil.example",
    ];

    #[test]
    fn known_open_redirect_payloads_are_refused() {
        assert!(UNSAFE.len() >= 25);
        for payload in UNSAFE {
            assert_eq!(safe_next(payload), None, "{payload:?} must be refused");
            assert_eq!(next_or_home(Some(payload)), DEFAULT_AFTER_LOGIN);
        }
    }

    #[test]
    fn same_site_paths_are_followed() {
        for path in SAFE {
            assert_eq!(safe_next(path), Some(*path), "{path:?} should be followed");
        }
        assert_eq!(next_or_home(None), DEFAULT_AFTER_LOGIN);
        assert!(safe_next(&format!("/{}", "a".repeat(MAX_NEXT_CHARS))).is_none());
    }

    /// What a browser would do with `next` on https://site.example: the host it lands
    /// on (WHATWG URL parsing, as browsers do).
    fn landing_host(next: &str) -> Option<String> {
        let base = url::Url::parse("https://site.example/login").ok()?;
        base.join(next).ok()?.host_str().map(str::to_string)
    }

    proptest::proptest! {
        #[test]
        fn followed_paths_never_leave_the_site(next in "[/\\\\%a-zA-Z0-9:.@?#\t\n ]{0,12}") {
            if let Some(path) = safe_next(&next) {
                proptest::prop_assert_eq!(landing_host(path), Some("site.example".to_string()));
                let decoded = percent_decode(path).unwrap_or_default();
                proptest::prop_assert_eq!(landing_host(&decoded), Some("site.example".to_string()));
            }
        }

        #[test]
        fn arbitrary_text_never_escapes(next in proptest::prelude::any::<String>()) {
            if let Some(path) = safe_next(&next) {
                proptest::prop_assert_eq!(landing_host(path), Some("site.example".to_string()));
            }
        }

        #[test]
        fn plain_paths_are_kept(segments in proptest::collection::vec("[a-z0-9_-]{1,8}", 0..5)) {
            let path = format!("/{}", segments.join("/"));
            proptest::prop_assert_eq!(safe_next(&path), Some(path.as_str()));
        }
    }
}
