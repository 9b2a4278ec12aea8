//! Does `POST /login/email/verify` with a wrong code answer in the same time whether the
//! address has a live sign-in code? The real binary on a SQLite file, 200 users who asked
//! for a code and 200 who did not, and concurrent clients each sending a wrong code for
//! one of each in turn (the order swapped every round; no live code gets near its ten
//! tries). The p50 and p90 of each kind are reported, and the live kind's p50 as a ratio
//! to the other's, measured in the same run. Both paths run one statement, compare one
//! MAC and write one audit line.
//!
//! `cargo bench -p latchkey-server --bench code_timing [-- REQUESTS_PER_CLIENT]`
//! (default 100; 8 clients: at most 4 wrong tries per live code)

mod timing;

use std::time::{Duration, Instant};
use timing::{paired_rounds, report, Server, CLIENTS};

const USERS: usize = 200;

fn main() {
    let per_client = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(100)
        .min(USERS * 8 / CLIENTS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (live, none) = runtime.block_on(async {
        let caps = [
            "--codes-per-address-hourly",
            "1000000",
            "--codes-per-ip-hourly",
            "1000000",
        ];
        let server = Server::start(&caps).await;
        let client = reqwest::Client::new();
        for kind in ["live", "none"] {
            for index in 0..USERS {
                server.sign_up(&client, &format!("{kind}{index}")).await;
            }
        }
        for index in 0..USERS {
            let asked = client
                .post(format!("{}/login/email", server.base))
                .json(&serde_json::json!({ "email": format!("live{index}@example.com") }))
                .send()
                .await
                .expect("ask for a code");
            assert_eq!(asked.status(), reqwest::StatusCode::ACCEPTED);
        }
        // The codes are issued in the background: wait until all of them are stored.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let issued: i64 = rusqlite::Connection::open(&server.database)
                .and_then(|db| {
                    db.query_row(
                        "SELECT count(*) FROM email_tokens WHERE purpose = 'sign_in'",
                        [],
                        |row| row.get(0),
                    )
                })
                .unwrap_or(0);
            if issued as usize >= USERS {
                break;
            }
            assert!(Instant::now() < deadline, "only {issued} codes issued");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url: &'static str =
            Box::leak(format!("{}/login/email/verify", server.base).into_boxed_str());
        let verify = move |client: reqwest::Client, email: String| async move {
            let started = Instant::now();
            let response = client
                .post(url)
                // Never a right code: 1,000,000 is not six digits.
                .json(&serde_json::json!({ "email": email, "code": "1000000" }))
                .send()
                .await
                .expect("verify");
            assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
            let _ = response.bytes().await;
            started.elapsed()
        };
        paired_rounds(
            per_client,
            USERS,
            move |client, user| verify(client, format!("live{user}@example.com")),
            move |client, user| verify(client, format!("none{user}@example.com")),
        )
        .await
    });
    println!(
        "POST /login/email/verify (a wrong code), {CLIENTS} clients, {} requests of each kind",
        live.len()
    );
    let ratio = report(["with a live code", "without a live code"], live, none);
    println!("live ÷ none at p50: {ratio:.3}");
}
