//! Request bodies: arbitrary bytes posted as JSON or as a form to every route that reads
//! a body. Whatever the bytes:
//! * an answer below 500, within 2 s (cheap hashing, in process), never a panic;
//! * the security headers on every answer (issue 15 item 19: they were once skipped on
//!   some answers);
//! * a 4xx on the JSON branch is a JSON `{"error": "…"}` body, never an empty or HTML one;
//! * a body that is not a JSON object never succeeds on a route that reads one.
#![no_main]

use axum::body::Body;
use axum::http::{header, Method, Request};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tower::ServiceExt;

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let router = runtime
        .block_on(latchkey_server::app::in_memory_router())
        .expect("router");
    Harness { runtime, router }
});

/// Routes that read a JSON object (true) or take a body they may ignore (false).
const PATHS: [(&str, bool); 20] = [
    ("/signup", true),
    ("/login", true),
    ("/password/forgot", true),
    ("/password/reset", true),
    ("/login/email", true),
    ("/login/email/verify", true),
    ("/login/email/confirm", true),
    ("/email/verify", true),
    ("/email/verify/resend", true),
    ("/account/email/confirm", true),
    ("/login/second-factor", true),
    ("/login/passkey/finish", true),
    ("/logout", false),
    ("/password", false),
    ("/home", false),
    ("/account/email", false),
    ("/account/totp", false),
    ("/account/totp/confirm", false),
    ("/sessions/revoke-others", false),
    ("/login/passkey/begin", false),
];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let (path, reads_json) = PATHS[usize::from(selector & 0x7f) % PATHS.len()];
    let json = selector & 0x80 == 0;
    let content_type = if json {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let harness = &*HARNESS;
    let started = Instant::now();
    let response = harness
        .runtime
        .block_on(harness.router.clone().oneshot(request))
        .expect("infallible");
    let status = response.status();
    let what = format!("{path} ({content_type}) answered {status} to {body:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{what} after {:?}",
        started.elapsed()
    );
    assert!(status.as_u16() < 500, "{what}");
    let headers = response.headers();
    let get = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    assert_eq!(get("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(get("referrer-policy"), Some("same-origin"), "{what}");
    assert!(get("cache-control").is_some(), "{what}: no Cache-Control");
    let answer_is_json =
        get("content-type").is_some_and(|value| value.starts_with("application/json"));
    let bytes = harness
        .runtime
        .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
        .expect("a body under 1 MiB");
    if json && status.is_client_error() {
        assert!(answer_is_json, "{what}: a 4xx that is not JSON");
        let error: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error body");
        assert!(error["error"].is_string(), "{what}: {error}");
    }
    if json && reads_json {
        let object =
            serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|value| value.is_object());
        assert!(
            object || !status.is_success(),
            "{what}: a success without a JSON object"
        );
    }
});
