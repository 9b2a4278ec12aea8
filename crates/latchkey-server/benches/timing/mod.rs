//! What the timing benches share: the real binary on a fresh SQLite file, clients that
//! send a request of each of two kinds in turn (the order swapped every round), and the
//! percentiles of each kind.

#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Concurrent clients.
pub const CLIENTS: usize = 8;

/// `latchkey serve` on a SQLite file in a fresh folder, with cheap hashing, no sign-up
/// or mail caps, and `extra` flags.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The SQLite file.
    pub database: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts it; waits until it answers (30 s at most).
    pub async fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("port")
            .port();
        let bind = format!("127.0.0.1:{port}");
        let database = dir.path().join("bench.db");
        let url = format!("sqlite://{}", database.display());
        let child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["serve", "--bind", &bind, "--database-url", &url])
            .args(["--argon2-memory-kib", "64", "--argon2-iterations", "1"])
            .args(["--signups-per-ip-hourly", "1000000"])
            .args(["--mail-requests-per-address-hourly", "1000000"])
            .args(["--mail-requests-per-ip-hourly", "1000000"])
            .args(extra)
            .env("LATCHKEY_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start latchkey");
        let server = Server {
            base: format!("http://{bind}"),
            database,
            child,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client
            .get(format!("{}/login", server.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "latchkey did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Signs `name` up with the address `name@example.com`.
    pub async fn sign_up(&self, client: &reqwest::Client, name: &str) {
        let signup = client
            .post(format!("{}/signup", self.base))
            .json(&serde_json::json!({
                "username": name,
                "email": format!("{name}@example.com"),
                "password": "correct horse battery staple",
            }))
            .send()
            .await
            .expect("signup");
        assert_eq!(signup.status(), reqwest::StatusCode::CREATED);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`CLIENTS`] clients, each doing `per_client` rounds; round `r` of client `c` times
/// `first(user)` and `second(user)` for `user = (c × per_client + r) % users`, in that
/// order in even rounds and the other way in odd ones. The times of each kind.
pub async fn paired_rounds<A, B, FA, FB>(
    per_client: usize,
    users: usize,
    first: A,
    second: B,
) -> (Vec<Duration>, Vec<Duration>)
where
    A: Fn(reqwest::Client, usize) -> FA + Clone + Send + 'static,
    B: Fn(reqwest::Client, usize) -> FB + Clone + Send + 'static,
    FA: Future<Output = Duration> + Send,
    FB: Future<Output = Duration> + Send,
{
    let mut tasks = Vec::new();
    for task in 0..CLIENTS {
        let (first, second) = (first.clone(), second.clone());
        let client = reqwest::Client::new();
        tasks.push(tokio::spawn(async move {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for round in 0..per_client {
                let user = (task * per_client + round) % users;
                if round % 2 == 0 {
                    a.push(first(client.clone(), user).await);
                    b.push(second(client.clone(), user).await);
                } else {
                    b.push(second(client.clone(), user).await);
                    a.push(first(client.clone(), user).await);
                }
            }
            (a, b)
        }));
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for task in tasks {
        let (first, second) = task.await.expect("client");
        a.extend(first);
        b.extend(second);
    }
    (a, b)
}

/// The `fraction` percentile of `times`.
pub fn percentile(times: &mut [Duration], fraction: f64) -> Duration {
    times.sort();
    times[((times.len() as f64 - 1.0) * fraction) as usize]
}

/// Prints the p50 and p90 of each kind (`names`) and the first's p50 over the second's;
/// returns that ratio.
pub fn report(names: [&str; 2], mut first: Vec<Duration>, mut second: Vec<Duration>) -> f64 {
    let ms = |time: Duration| time.as_secs_f64() * 1e3;
    println!("{:<22} {:>10} {:>10}", "", "p50", "p90");
    let mut p50s = [Duration::ZERO; 2];
    for (index, (name, times)) in names.iter().zip([&mut first, &mut second]).enumerate() {
        p50s[index] = percentile(times, 0.5);
        let p90 = percentile(times, 0.9);
        println!("{name:<22} {:>7.3} ms {:>7.3} ms", ms(p50s[index]), ms(p90));
    }
    p50s[0].as_secs_f64() / p50s[1].as_secs_f64()
}
