//! No user enumeration: an unknown name, a wrong password and a disabled account get
//! the same status and body. That they cost the same work is counted in
//! tests/legacy_hashes.rs and timed in benches/login_timing.rs (timing belongs in
//! benchmarks, not in tests on a shared machine).

mod common;

use common::{bare_client, cli, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
const ROUNDS: usize = 3;

#[tokio::test]
async fn failures_look_the_same_in_status_and_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &[
            "--argon2-memory-kib",
            "4096",
            "--argon2-iterations",
            "1",
            "--login-free-failures",
            "100000",
            "--login-ip-burst",
            "100000",
            "--login-ip-hourly",
            "100000",
        ],
    );
    let client = bare_client();
    for name in ["known", "disabled"] {
        let response = client
            .post(server.url("/signup"))
            .json(&json!({ "username": name, "password": PASSWORD }))
            .send()
            .await
            .expect("signup");
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let (ok, _, stderr) = cli(
        &[
            "user",
            "disable",
            "disabled",
            "--database-url",
            &server.database_url,
        ],
        "",
    );
    assert!(ok, "{stderr}");

    let cases = [
        ("wrong password", "known", "not the password at all"),
        ("unknown name", "nobody-at-all", PASSWORD),
        ("disabled account", "disabled", PASSWORD),
    ];
    let mut answers = Vec::new();
    for round in 0..ROUNDS {
        for offset in 0..cases.len() {
            // Rotate the order every round so drift hits every case alike.
            let index = (round + offset) % cases.len();
            let (_, name, password) = cases[index];
            let response = client
                .post(server.url("/login"))
                .json(&json!({ "username": name, "password": password }))
                .send()
                .await
                .expect("login");
            let status = response.status();
            let body: Value = response.json().await.expect("json");
            answers.push((status, body));
        }
    }
    let first = answers[0].clone();
    assert_eq!(first.0, StatusCode::UNAUTHORIZED);
    assert!(
        answers.iter().all(|answer| *answer == first),
        "answers differ"
    );
}
