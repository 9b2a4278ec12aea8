//! Load benchmark: authenticated `GET /home` through latchkey (memory and SQLite session
//! stores) against a bare axum handler with no session layer, in the same run. The SQLite
//! server also takes bearer credentials (issue 27): the same `GET /home` with a personal
//! access token (`Authorization: Bearer lk_…`, scope `read`) and with a bearer session
//! (the session token in `Authorization: Bearer`), measured against its cookie session.
//! Users, sessions and access tokens are in the one SQLite file.
//!
//! `cargo bench --bench home_throughput` (options via env: `BENCH_SECONDS` per round,
//! default 3; `BENCH_ROUNDS`, default 5; `BENCH_CONNECTIONS`, default 32). The servers run
//! on one runtime thread pinned to core 0 and the load generator on core 1, over
//! keep-alive HTTP/1.1 on loopback; the targets are measured in interleaved rounds and the median round is
//! reported: req/s, p50, p99 and the ratio to the bare handler.
//!
//! `BENCH_SERVE_ONLY=1` only starts the servers and prints a line `name address header`
//! for each (bare, memory, sqlite, token, bearer; `header` is a whole header line such
//! as `Cookie: id=…` or `Authorization: Bearer …`, none for bare), for an external load
//! generator such as `wrk`.

mod common;

use axum::routing::get;
use axum::{Json, Router};
use latchkey::access_token::store::SqliteAccessTokens;
use latchkey::access_token::{NewAccessToken, TokenLifetime, TokenScopes};
use latchkey::axum::RequireLogin;
use latchkey::store::{open_sqlite, MemoryStore, SqliteStore};
use latchkey::{
    AuthLayer, Authenticator, HashParams, NewUser, PasswordBackend, PasswordHasher, SessionConfig,
    SessionLayer, SessionStore, SqliteUserStore, Timestamp, User, UserStore,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Pins the calling thread to one CPU core (Linux), so the servers and the load
/// generator do not compete for the same core.
fn pin_to_core(core: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: `set` is a plain bit set owned by this frame; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Core for the servers; the load generator takes the other one.
const SERVER_CORE: usize = 0;
const CLIENT_CORE: usize = 1;

/// Starts a server on its own one-worker runtime, pinned to the server core; returns its
/// address.
fn spawn_server(router: Router) -> SocketAddr {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        pin_to_core(SERVER_CORE);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(|| pin_to_core(SERVER_CORE))
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            sender
                .send(listener.local_addr().expect("address"))
                .expect("send");
            axum::serve(listener, router).await.expect("serve");
        });
    });
    receiver.recv().expect("server address")
}

struct Measurement {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn home(RequireLogin(user): RequireLogin<User>) -> Json<Value> {
    Json(json!({ "message": format!("Hello, {}", user.username) }))
}

/// The credentials the SQLite server takes for user foo, as whole header lines.
struct Credentials {
    cookie: String,
    token: String,
    bearer: String,
}

/// latchkey on the SQLite database at `url` (users, sessions and access tokens in that
/// one file), with bearer sessions and personal access tokens enabled, user foo logged
/// in twice (one session for the cookie, one for the bearer) and holding a token with
/// scope `read`.
async fn sqlite_api_app(url: &str) -> (Router, Credentials) {
    let pool = open_sqlite(url).await.expect("open");
    let users = SqliteUserStore::new(pool.clone());
    let hasher = PasswordHasher::new(HashParams::insecure_fast()).expect("hasher");
    let hash = hasher.hash("foo").await.expect("hash");
    let user = users
        .create(NewUser::new("foo", None, hash).expect("user"))
        .await
        .expect("create");
    let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::new(pool.clone()));
    let config = SessionConfig::insecure_for_local_development().with_bearer_tokens(true);
    let cookie_session = common::log_in(store.clone(), &config, &user).await;
    let bearer_session = common::log_in(store.clone(), &config, &user).await;
    let tokens = SqliteAccessTokens::new(pool);
    let (token, _) = latchkey::access_token::issue(
        &tokens,
        &TokenScopes::read_write(),
        &TokenLifetime::default(),
        NewAccessToken {
            user_id: user.id.to_string(),
            name: "bench".into(),
            scopes: vec!["read".into()],
            lifetime: None,
        },
        Timestamp::now(),
    )
    .await
    .expect("issue token");
    let authenticator = Authenticator::new(PasswordBackend::new(users, hasher))
        .with_access_tokens(tokens, TokenScopes::read_write());
    let router = Router::new()
        .route("/home", get(home))
        .layer(AuthLayer::new(authenticator))
        .layer(SessionLayer::from_arc(store, config));
    let credentials = Credentials {
        cookie: format!("Cookie: id={cookie_session}"),
        token: format!("Authorization: Bearer {}", token.expose()),
        bearer: format!("Authorization: Bearer {bearer_session}"),
    };
    (router, credentials)
}

/// Drives `connections` keep-alive connections for `duration`, each sending
/// `GET /home` with the header line `header` back to back.
fn load(address: SocketAddr, header: &str, connections: usize, duration: Duration) -> Measurement {
    pin_to_core(CLIENT_CORE);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let request = format!(
        "GET /home HTTP/1.1\r\nHost: bench\r\n{header}\r\nAccept: application/json\r\n\r\n"
    );
    runtime.block_on(async move {
        let deadline = Instant::now() + duration;
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let request = request.clone();
                tokio::spawn(async move {
                    let mut stream = TcpStream::connect(address).await.expect("connect");
                    stream.set_nodelay(true).expect("nodelay");
                    let mut latencies = Vec::new();
                    let mut buffer = vec![0u8; 8192];
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        stream.write_all(request.as_bytes()).await.expect("write");
                        read_response(&mut stream, &mut buffer).await;
                        latencies.push(started.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("task"));
        }
        latencies.sort();
        let percentile =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        Measurement {
            requests_per_second: latencies.len() as f64 / duration.as_secs_f64(),
            p50: percentile(0.50),
            p99: percentile(0.99),
        }
    })
}

/// Reads one HTTP/1.1 response (headers plus Content-Length body); panics on non-200.
async fn read_response(stream: &mut TcpStream, buffer: &mut [u8]) {
    let mut filled = 0;
    loop {
        let read = stream.read(&mut buffer[filled..]).await.expect("read");
        assert!(read > 0, "server closed the connection");
        filled += read;
        let text = &buffer[..filled];
        if let Some(end) = text.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = std::str::from_utf8(&text[..end]).expect("ascii head");
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "unexpected answer: {head}"
            );
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if filled >= end + 4 + length {
                return;
            }
        }
    }
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let connections: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let rounds_count: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let setup = tokio::runtime::Runtime::new().expect("setup runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());

    let bare = spawn_server(common::bare_app());
    let (memory_router, memory_cookie) =
        setup.block_on(common::logged_in_app(Arc::new(MemoryStore::new())));
    let memory_header = format!("Cookie: {memory_cookie}");
    let memory = spawn_server(memory_router);
    let (sqlite_router, sqlite) = setup.block_on(sqlite_api_app(&sqlite_url));
    let sqlite_address = spawn_server(sqlite_router);

    if std::env::var("BENCH_SERVE_ONLY").is_ok() {
        // For an external load generator (wrk): print where to point it, then serve.
        println!(
            "bare {bare}\nmemory {memory} {memory_header}\nsqlite {sqlite_address} {}\ntoken {sqlite_address} {}\nbearer {sqlite_address} {}",
            sqlite.cookie, sqlite.token, sqlite.bearer
        );
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let targets = [
        ("bare axum, no session layer", bare, "Cookie: x=1"),
        ("latchkey, memory store", memory, memory_header.as_str()),
        (
            "latchkey, SQLite store",
            sqlite_address,
            sqlite.cookie.as_str(),
        ),
        (
            "SQLite, access token",
            sqlite_address,
            sqlite.token.as_str(),
        ),
        (
            "SQLite, bearer session",
            sqlite_address,
            sqlite.bearer.as_str(),
        ),
    ];
    // The row the bearer credentials are compared with: the cookie on the same store.
    const COOKIE_ROW: usize = 2;
    // Warm up every server, then measure them in interleaved rounds, so that noise from
    // the shared machine hits every target alike; report the median round.
    for (_, address, header) in targets {
        load(address, header, 4, Duration::from_millis(500));
    }
    let mut rounds: Vec<Vec<Measurement>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds_count {
        for (index, (_, address, header)) in targets.iter().enumerate() {
            rounds[index].push(load(*address, header, connections, duration));
        }
    }
    let medians: Vec<Measurement> = rounds
        .into_iter()
        .map(|mut measured| {
            measured.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
            measured.swap_remove(measured.len() / 2)
        })
        .collect();
    let baseline = medians[0].requests_per_second;
    let cookie_baseline = medians[COOKIE_ROW].requests_per_second;
    let results = targets.iter().map(|(name, _, _)| *name).zip(medians.iter());
    println!(
        "\nauthenticated GET /home, {connections} connections, median of {rounds_count} rounds of {seconds}s\n\n{:<30} {:>10} {:>10} {:>10} {:>8} {:>9}",
        "stack", "req/s", "p50", "p99", "ratio", "vs cookie"
    );
    for (index, (name, measurement)) in results.enumerate() {
        let to_cookie = if index > COOKIE_ROW {
            format!("{:.2}", measurement.requests_per_second / cookie_baseline)
        } else {
            String::new()
        };
        println!(
            "{:<30} {:>10.0} {:>10.2?} {:>10.2?} {:>8.2} {:>9}",
            name,
            measurement.requests_per_second,
            measurement.p50,
            measurement.p99,
            measurement.requests_per_second / baseline,
            to_cookie
        );
    }
}
