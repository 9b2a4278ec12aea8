//! Request bodies: arbitrary bytes posted as JSON or as a form to every route that
//! reads a body get an answer below 500, never a panic.
#![no_main]

use axum::body::Body;
use axum::http::{header, Method, Request};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
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

const PATHS: [&str; 5] = ["/signup", "/login", "/logout", "/password", "/home"];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else { return };
    let path = PATHS[usize::from(selector) % PATHS.len()];
    let content_type = if selector & 0x80 == 0 {
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
    let response = harness
        .runtime
        .block_on(harness.router.clone().oneshot(request))
        .expect("infallible");
    assert!(
        response.status().as_u16() < 500,
        "{path} answered {} to {body:?}",
        response.status()
    );
});
