//! The password policy over HTTP: common passwords refused, length counted in
//! characters with no truncation, and a 1 MiB password refused before any hashing.

mod common;

use common::{bare_client, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn post(server: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    let response = bare_client()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sign_up_enforces_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (status, body) = post(
        &server,
        "/signup",
        json!({ "username": "c", "password": "Qwerty123456" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "password");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|error| error.contains("most common")),
        "{body}"
    );

    // Twelve emoji are twelve characters; 129 characters are too many.
    let (status, _) = post(
        &server,
        "/signup",
        json!({ "username": "e", "password": "🔑".repeat(12) }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = post(
        &server,
        "/signup",
        json!({ "username": "l", "password": "ab".repeat(64) + "c" }),
    )
    .await;
    assert_eq!(
        (status, body["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("password"))
    );

    // No truncation: a 100-character password does not log in with its first 99.
    let long = "pass phrase ".repeat(9) + "abcd";
    assert_eq!(long.chars().count(), 112);
    assert_eq!(
        post(
            &server,
            "/signup",
            json!({ "username": "t", "password": long })
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let shorter: String = long.chars().take(111).collect();
    assert_eq!(
        post(
            &server,
            "/login",
            json!({ "username": "t", "password": shorter })
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(
            &server,
            "/login",
            json!({ "username": "t", "password": long })
        )
        .await
        .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_mebibyte_password_is_refused_before_hashing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let huge = "x".repeat(1 << 20);
    for path in ["/signup", "/login"] {
        let started = Instant::now();
        let (status, _) = post(
            &server,
            path,
            json!({ "username": "big", "password": huge }),
        )
        .await;
        // 413: the body limit (64 KiB) stops it before parsing, lookup or hashing.
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} took {:?}",
            started.elapsed()
        );
    }
}
