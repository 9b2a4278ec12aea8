//! Access rules (forward authentication): any text as a rules file is parsed or refused,
//! never a panic; any path the proxy forwards is refused or normalized to one with no dot
//! segment, empty segment, backslash, NUL, `;` or `#`; `rd` goes only to a plain host name the
//! rules protect.
#![no_main]

use latchkey::access_rules::{normalize_path, return_to, AccessRules, Request};
use libfuzzer_sys::fuzz_target;

const RULES: &str = r#"
[[rule]]
host = "*.example.com"
schemes = ["http", "https"]
paths = ["/admin/"]
policy = "deny"

[[rule]]
host = "*.example.com"
schemes = ["http", "https"]
policy = "one_factor"
"#;

fuzz_target!(|input: &str| {
    // A rules file of any text.
    if let Ok(rules) = AccessRules::parse(input) {
        let request = Request {
            host: "app.example.com",
            path: "/",
            method: "GET",
        };
        let _ = rules.decide(&request, None);
    }
    // A forwarded path.
    if let Some(path) = normalize_path(input) {
        assert!(path.starts_with('/'), "{input:?} -> {path:?}");
        assert!(!path.contains(['\\', '\0', ';', '#']), "{input:?} -> {path:?}");
        assert!(!path.contains("//"), "{input:?} -> {path:?}");
        assert!(
            !path.split('/').any(|segment| segment == "." || segment == ".."),
            "{input:?} -> {path:?}"
        );
    }
    // Where a login may send the browser back to.
    let rules = AccessRules::parse(RULES).expect("the fixed rules");
    if let Some(url) = return_to(input, &rules) {
        let parsed = url::Url::parse(&url).expect("an absolute URL");
        let host = parsed.host_str().unwrap_or_default();
        assert!(
            host.ends_with(".example.com")
                && host
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.'),
            "{input:?} -> {url:?}"
        );
        assert!(parsed.username().is_empty() && parsed.password().is_none());
    }
});
