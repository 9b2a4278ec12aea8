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

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;
const USERS: usize = 200;

fn percentile(times: &mut [Duration], fraction: f64) -> Duration {
    times.sort();
    times[((times.len() as f64 - 1.0) * fraction) as usize]
}

fn main() {
    let per_client = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(100)
        .min(USERS * 8 / CLIENTS);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("port")
        .port();
    let bind = format!("127.0.0.1:{port}");
    let file = dir.path().join("bench.db");
    let database = format!("sqlite://{}", file.display());
    let mut server = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--bind", &bind, "--database-url", &database])
        .args(["--argon2-memory-kib", "64", "--argon2-iterations", "1"])
        .args(["--signups-per-ip-hourly", "1000000"])
        .args(["--mail-requests-per-address-hourly", "1000000"])
        .args(["--mail-requests-per-ip-hourly", "1000000"])
        .args(["--codes-per-address-hourly", "1000000"])
        .args(["--codes-per-ip-hourly", "1000000"])
        .env("LATCHKEY_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start latchkey");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = format!("http://{bind}");
    let (mut live, mut none) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("{base}/login")).send().await.is_err() {
            assert!(Instant::now() < deadline, "latchkey did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for kind in ["live", "none"] {
            for index in 0..USERS {
                let signup = client
                    .post(format!("{base}/signup"))
                    .json(&serde_json::json!({
                        "username": format!("{kind}{index}"),
                        "email": format!("{kind}{index}@example.com"),
                        "password": "correct horse battery staple",
                    }))
                    .send()
                    .await
                    .expect("signup");
                assert_eq!(signup.status(), reqwest::StatusCode::CREATED);
            }
        }
        for index in 0..USERS {
            let asked = client
                .post(format!("{base}/login/email"))
                .json(&serde_json::json!({ "email": format!("live{index}@example.com") }))
                .send()
                .await
                .expect("ask for a code");
            assert_eq!(asked.status(), reqwest::StatusCode::ACCEPTED);
        }
        // The codes are issued in the background: wait until all of them are stored.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let issued: i64 = rusqlite::Connection::open(&file)
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
        let url: &'static str = Box::leak(format!("{base}/login/email/verify").into_boxed_str());
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
        let mut tasks = Vec::new();
        for task in 0..CLIENTS {
            let client = reqwest::Client::new();
            tasks.push(tokio::spawn(async move {
                let (mut live, mut none) = (Vec::new(), Vec::new());
                for round in 0..per_client {
                    let user = (task * per_client + round) % USERS;
                    let live_email = format!("live{user}@example.com");
                    let none_email = format!("none{user}@example.com");
                    if round % 2 == 0 {
                        live.push(verify(client.clone(), live_email).await);
                        none.push(verify(client.clone(), none_email).await);
                    } else {
                        none.push(verify(client.clone(), none_email).await);
                        live.push(verify(client.clone(), live_email).await);
                    }
                }
                (live, none)
            }));
        }
        let (mut live, mut none) = (Vec::new(), Vec::new());
        for task in tasks {
            let (l, n) = task.await.expect("client");
            live.extend(l);
            none.extend(n);
        }
        (live, none)
    });
    let _ = server.kill();
    let _ = server.wait();
    let ms = |time: Duration| time.as_secs_f64() * 1e3;
    let (live_p50, none_p50) = (percentile(&mut live, 0.5), percentile(&mut none, 0.5));
    let (live_p90, none_p90) = (percentile(&mut live, 0.9), percentile(&mut none, 0.9));
    println!(
        "POST /login/email/verify (a wrong code), {CLIENTS} clients, {} requests of each kind",
        live.len()
    );
    println!("{:<22} {:>10} {:>10}", "address", "p50", "p90");
    for (kind, p50, p90) in [
        ("with a live code", live_p50, live_p90),
        ("without a live code", none_p50, none_p90),
    ] {
        println!("{kind:<22} {:>7.3} ms {:>7.3} ms", ms(p50), ms(p90));
    }
    println!(
        "live ÷ none at p50: {:.3}",
        live_p50.as_secs_f64() / none_p50.as_secs_f64()
    );
}
