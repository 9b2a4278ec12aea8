//! Throttling over HTTP: per-account lockouts with Retry-After that refuse even the
//! right password, unknown names throttled exactly like known ones, per-IP bursts,
//! X-Forwarded-For believed only from trusted proxies, sign-ups per IP, and counters
//! shared by two processes.

mod common;

use common::{bare_client, service_url, unique, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

async fn signup(server: &Server, name: &str) -> StatusCode {
    bare_client()
        .post(server.url("/signup"))
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .expect("signup")
        .status()
}

/// `POST /login`: status, `Retry-After` and body.
async fn login(
    server: &Server,
    name: &str,
    password: &str,
    forwarded: Option<&str>,
) -> (StatusCode, Option<u64>, Value) {
    let mut request = bare_client()
        .post(server.url("/login"))
        .json(&json!({ "username": name, "password": password }));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let response = request.send().await.expect("login");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Five free failures, a sixth that starts a 1 s lockout, then: what the next attempt
/// (with `password`) gets.
async fn after_six_failures(
    server: &Server,
    name: &str,
    password: &str,
) -> (StatusCode, Option<u64>, Value) {
    for attempt in 1..=6 {
        let (status, _, _) = login(server, name, "wrong password!", None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "failure {attempt} of {name}"
        );
    }
    login(server, name, password, None).await
}

#[tokio::test]
async fn an_account_locks_out_with_retry_after_even_for_the_right_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    assert_eq!(signup(&server, "victim").await, StatusCode::CREATED);
    let (status, retry_after, body) = after_six_failures(&server, "victim", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(retry_after, Some(1));
    assert!(body["error"]
        .as_str()
        .is_some_and(|error| error.contains("Too many attempts")));

    // An unknown name goes through exactly the same steps and gets the same answer.
    let (ghost_status, ghost_retry, ghost_body) =
        after_six_failures(&server, "ghost", PASSWORD).await;
    assert_eq!(
        (ghost_status, ghost_retry, ghost_body),
        (status, retry_after, body)
    );

    // Once the lockout is over the right password works and clears the failures.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        login(&server, "victim", PASSWORD, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        login(&server, "victim", "wrong password!", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Browsers get the login page with the same status and Retry-After.
    for _ in 0..6 {
        login(&server, "victim", "wrong password!", None).await;
    }
    let page = reqwest::Client::new()
        .post(server.url("/login"))
        .header("accept", "text/html")
        .json(&json!({ "username": "victim", "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn one_address_cannot_spray_many_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--login-ip-burst", "3"]);
    for name in ["a1", "a2", "a3"] {
        assert_eq!(
            login(&server, name, "guess guess guess", None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, retry_after, _) = login(&server, "a4", "guess guess guess", None).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a fourth account from the same address"
    );
    assert!(
        retry_after.is_some_and(|seconds| (1..=60).contains(&seconds)),
        "{retry_after:?}"
    );
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    let (status, _, _) = login(&server, "a5", "guess guess guess", Some("203.0.113.9")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn forwarded_for_is_believed_from_a_trusted_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &["--login-ip-burst", "3", "--trusted-proxy", "127.0.0.1"],
    );
    for name in ["b1", "b2", "b3"] {
        let (status, _, _) = login(&server, name, "guess guess guess", Some("203.0.113.1")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = login(&server, "b4", "guess guess guess", Some("203.0.113.1")).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the client behind the proxy is limited"
    );
    // Another client behind the same proxy is counted on its own, and a spoofed hop
    // to the left of the proxy's entry is ignored.
    let (status, _, _) = login(
        &server,
        "b5",
        "guess guess guess",
        Some("203.0.113.1, 203.0.113.2"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_ups_are_limited_per_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--signups-per-ip-hourly", "2"]);
    assert_eq!(signup(&server, "first").await, StatusCode::CREATED);
    assert_eq!(signup(&server, "second").await, StatusCode::CREATED);
    assert_eq!(
        signup(&server, "third").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&server, "third", PASSWORD, None).await.0,
        StatusCode::UNAUTHORIZED,
        "the refused sign-up created nothing"
    );
}

#[tokio::test]
async fn two_processes_count_failures_together() {
    let Some(postgres) = service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let a = Server::start_on(&postgres, &["--session-store", "database"]);
    let b = Server::start_on(&postgres, &["--session-store", "database"]);
    let name = unique("shared");
    assert_eq!(signup(&a, &name).await, StatusCode::CREATED);
    for attempt in 0..6 {
        let server = if attempt % 2 == 0 { &a } else { &b };
        assert_eq!(
            login(server, &name, "wrong password!", None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&a, &name, PASSWORD, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&b, &name, PASSWORD, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}
