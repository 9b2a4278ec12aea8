//! No user enumeration: an unknown name, a wrong password and a disabled account get
//! the same status and body, and their response times cannot be told apart (a rank
//! test over many interleaved tries, with a real argon2id cost dominating).

mod common;

use common::{bare_client, cli, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";
const ROUNDS: usize = 40;

/// The probability that a time from `a` exceeds one from `b` (Mann-Whitney U / n²):
/// 0.5 when the two cannot be told apart.
fn superiority(a: &[Duration], b: &[Duration]) -> f64 {
    let mut wins = 0.0;
    for x in a {
        for y in b {
            wins += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (a.len() * b.len()) as f64
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

#[tokio::test]
async fn failures_look_the_same_in_status_body_and_time() {
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
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut answers = Vec::new();
    for round in 0..ROUNDS {
        for offset in 0..cases.len() {
            // Rotate the order every round so drift hits every case alike.
            let index = (round + offset) % cases.len();
            let (_, name, password) = cases[index];
            let started = Instant::now();
            let response = client
                .post(server.url("/login"))
                .json(&json!({ "username": name, "password": password }))
                .send()
                .await
                .expect("login");
            let status = response.status();
            let body: Value = response.json().await.expect("json");
            times[index].push(started.elapsed());
            answers.push((status, body));
        }
    }
    let first = answers[0].clone();
    assert_eq!(first.0, StatusCode::UNAUTHORIZED);
    assert!(
        answers.iter().all(|answer| *answer == first),
        "answers differ"
    );

    for a in 0..cases.len() {
        for b in a + 1..cases.len() {
            let p = superiority(&times[a], &times[b]);
            println!(
                "{} vs {}: medians {:?} / {:?}, P(slower) = {p:.2}",
                cases[a].0,
                cases[b].0,
                median(&times[a]),
                median(&times[b])
            );
            assert!(
                (0.15..=0.85).contains(&p),
                "{} and {} can be told apart by time: P = {p:.2}",
                cases[a].0,
                cases[b].0
            );
        }
    }
}
