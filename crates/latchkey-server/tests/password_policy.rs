//! The password policy over HTTP: guessable passwords (common ones, sequences, the
//! username) refused with the reason at sign-up and password change, length counted in
//! characters with no truncation, and a 1 MiB password refused before any hashing.

mod common;

use common::flows::post;
use common::{bare_client, signup_and_login, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn sign_up_enforces_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (status, body) = post(
        &bare_client(),
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
            .is_some_and(|error| error.contains("too easy to guess")),
        "{body}"
    );

    // Twelve emoji are twelve characters; 129 characters are too many.
    let (status, _) = post(
        &bare_client(),
        &server,
        "/signup",
        json!({ "username": "e", "password": "🔑🌵🐙🎻🚲🧀🪁🦔🌋🎲🧭🪐" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = post(
        &bare_client(),
        &server,
        "/signup",
        json!({ "username": "l", "password": "ab".repeat(64) + "c" }),
    )
    .await;
    assert_eq!(
        (status, body["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("password"))
    );

    // No truncation: a 113-character password does not log in with its first 112.
    let long = "the quick brown fox jumps over the lazy dog while seven wizards quietly \
                box a jovial sphinx of black quartz, abcd"
        .to_string();
    assert_eq!(long.chars().count(), 113);
    assert_eq!(
        post(
            &bare_client(),
            &server,
            "/signup",
            json!({ "username": "t", "password": long })
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let shorter: String = long.chars().take(112).collect();
    assert_eq!(
        post(
            &bare_client(),
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
            &bare_client(),
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
            &bare_client(),
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

/// The attack: an account opened, or a password changed, to one of the first guesses of
/// any attacker. Each is refused with zxcvbn's reason, and nothing is stored.
#[tokio::test]
async fn guessable_passwords_are_refused_at_sign_up_and_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    for (username, password, reason) in [
        (
            "victim",
            "123456789012",
            "Sequences like abc or 6543 are easy to guess.",
        ),
        ("victim", "qwerty123456", "This is a very common password."),
        ("victim", "1qaz2wsx3edc", "This is a very common password."),
        ("victim", "passwordpassword", "Repeats like"),
        ("grover.monster", "grover.monster", "too easy to guess"),
    ] {
        let (status, body) = post(
            &bare_client(),
            &server,
            "/signup",
            json!({ "username": username, "password": password }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{password}: {body}");
        assert_eq!(body["field"], "password");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("too easy to guess") && error.contains(reason),
            "{password}: {error}"
        );
    }
    // Nothing was created: the name is still free.
    let cookie = signup_and_login(&server, "victim", "correct horse battery").await;

    let response = bare_client()
        .post(server.url("/password"))
        .header("cookie", &cookie)
        .json(&json!({ "current": "correct horse battery", "new": "123456789012" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["field"], "new");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|error| error.contains("Sequences like abc")),
        "{body}"
    );
    // The password did not change.
    for (password, expected) in [
        ("123456789012", StatusCode::UNAUTHORIZED),
        ("correct horse battery", StatusCode::OK),
    ] {
        let (status, _) = post(
            &bare_client(),
            &server,
            "/login",
            json!({ "username": "victim", "password": password }),
        )
        .await;
        assert_eq!(status, expected, "{password}");
    }
}

/// `--min-password-strength 0` turns the strength check off (lengths still apply).
#[tokio::test]
async fn the_strength_check_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--min-password-strength", "0"]);
    let (status, body) = post(
        &bare_client(),
        &server,
        "/signup",
        json!({ "username": "lenient", "password": "123456789012" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
