//! Faults: Redis or PostgreSQL going away under a running server gives clear 503s and
//! never a login, and the server recovers by itself when they come back; a server
//! killed with SIGKILL in the middle of sign-ups keeps every user it answered 201 for.

mod common;

use common::{bare_client, service_url, unique, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

/// `POST /login` as `name`.
async fn login(server: &Server, name: &str) -> reqwest::Response {
    bare_client()
        .post(server.url("/login"))
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .expect("login")
}

/// `GET /home` with `cookie`: its status and JSON body.
async fn home(server: &Server, cookie: &str) -> (StatusCode, Value) {
    let response = bare_client()
        .get(server.url("/home"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("the server answers even when its stores are down");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asks `/home` until it answers `wanted` (or fails after 20 s); every other answer
/// must be in `allowed`.
async fn home_until(
    server: &Server,
    cookie: &str,
    wanted: StatusCode,
    allowed: &[StatusCode],
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = home(server, cookie).await;
        if status == wanted {
            return body;
        }
        assert!(allowed.contains(&status), "unexpected {status}: {body}");
        assert!(
            Instant::now() < deadline,
            "never got {wanted}, last {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A private redis-server on a free port, so stopping it disturbs no other test.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
        assert!(status.is_ok_and(|status| status.success()), "kill {signal}");
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn redis_going_away_gives_503_and_the_server_recovers() {
    // The machine's Redis must be there for the rest of the suite; this test runs its own.
    if service_url("LATCHKEY_TEST_REDIS").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_address().port();
    let redis = Redis::start(port);
    let store = format!("redis://127.0.0.1:{}", redis.port);
    let server = Server::start(dir.path(), &["--session-store", &store]);
    let name = unique("r");
    let cookie = common::signup_and_login(&server, &name, PASSWORD).await;
    assert_eq!(home(&server, &cookie).await.0, StatusCode::OK);

    // Redis hangs (SIGSTOP): requests time out into 503, never 200 or 401.
    redis.signal("-STOP");
    let body = home_until(&server, &cookie, StatusCode::SERVICE_UNAVAILABLE, &[]).await;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|error| error.contains("unavailable")),
        "{body}"
    );
    redis.signal("-CONT");
    let body = home_until(
        &server,
        &cookie,
        StatusCode::OK,
        &[StatusCode::SERVICE_UNAVAILABLE],
    )
    .await;
    assert_eq!(
        body,
        json!({ "message": format!("Hello, {name}") }),
        "the same session, intact"
    );

    // Redis stops and comes back empty: 503 while it is down, then the server serves
    // new logins again without a restart (the old session died with Redis's memory).
    redis.stop();
    home_until(&server, &cookie, StatusCode::SERVICE_UNAVAILABLE, &[]).await;
    assert_eq!(
        login(&server, &name).await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a login without a session store"
    );
    let _redis = Redis::start(port);
    home_until(
        &server,
        &cookie,
        StatusCode::UNAUTHORIZED,
        &[StatusCode::SERVICE_UNAVAILABLE],
    )
    .await;
    assert_eq!(
        login(&server, &name).await.status(),
        StatusCode::OK,
        "logins work again"
    );
}

/// Stops `redis` and starts a fresh one on its port while nobody asks the server
/// anything, so the server's connection is dead but it does not know yet.
fn restart_while_idle(redis: Redis) -> Redis {
    let port = redis.port;
    redis.stop();
    Redis::start(port)
}

#[tokio::test]
async fn the_first_request_after_an_idle_redis_restart_is_served() {
    if service_url("LATCHKEY_TEST_REDIS").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(common::free_address().port());
    let store = format!("redis://127.0.0.1:{}", redis.port);
    let server = Server::start(dir.path(), &["--session-store", &store]);
    let name = unique("i");
    let cookie = common::signup_and_login(&server, &name, PASSWORD).await;
    assert_eq!(home(&server, &cookie).await.0, StatusCode::OK);

    // The first request after the restart reads a session: the old one died with
    // Redis's memory, so 401, and never 503.
    let redis = restart_while_idle(redis);
    let (status, body) = home(&server, &cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let fresh = login(&server, &name).await;
    assert_eq!(fresh.status(), StatusCode::OK, "a fresh login, first time");

    // The first request after the restart writes (a login: throttle counters and a new
    // session): it works first time.
    let _redis = restart_while_idle(redis);
    let fresh = login(&server, &name).await;
    assert_eq!(
        fresh.status(),
        StatusCode::OK,
        "a login right after the restart"
    );
    let header = common::session_cookie(&fresh, "id").expect("session cookie");
    let cookie = format!("id={}", common::cookie_value(&header));
    assert_eq!(home(&server, &cookie).await.0, StatusCode::OK);
}

/// A TCP proxy that can cut every connection and refuse new ones: PostgreSQL "going
/// away" for the server, without stopping the machine's PostgreSQL under other tests.
struct Cut {
    address: SocketAddr,
    down: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Cut {
    async fn start(target: SocketAddr) -> Cut {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let down = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (is_down, connections) = (down.clone(), live.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_down.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().expect("lock").push(task.abort_handle());
            }
        });
        Cut {
            address,
            down,
            live,
        }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for connection in self.live.lock().expect("lock").drain(..) {
                connection.abort();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_gives_503_and_the_server_recovers() {
    let Some(postgres) = service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let url = reqwest::Url::parse(&postgres).expect("PostgreSQL URL");
    let target: SocketAddr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
    .parse()
    .expect("PostgreSQL address");
    let cut = Cut::start(target).await;
    let mut through = url.clone();
    through.set_port(Some(cut.address.port())).expect("port");
    let server = Server::start_on(through.as_str(), &["--session-store", "database"]);
    let name = unique("p");
    let cookie = common::signup_and_login(&server, &name, PASSWORD).await;

    cut.set_down(true);
    let body = home_until(
        &server,
        &cookie,
        StatusCode::SERVICE_UNAVAILABLE,
        &[StatusCode::OK],
    )
    .await;
    assert!(body["error"].is_string(), "{body}");
    // Nobody's login is mistaken for a session while the database is away.
    let (status, _) = home(&server, "id=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert!(
        matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::UNAUTHORIZED
        ),
        "{status}"
    );

    cut.set_down(false);
    let body = home_until(
        &server,
        &cookie,
        StatusCode::OK,
        &[StatusCode::SERVICE_UNAVAILABLE],
    )
    .await;
    assert_eq!(body, json!({ "message": format!("Hello, {name}") }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_signups_loses_no_answered_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = common::free_address();
    let server = Server::start_at(dir.path(), address, &[]);
    let url = server.url("");
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let attempts: Vec<_> = (0..60)
        .map(|index| {
            let url = url.clone();
            let answered_count = answered.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(index * 5)).await;
                let name = format!("signup{index}");
                let answered = bare_client()
                    .post(format!("{url}/signup"))
                    .json(&json!({ "username": name, "password": PASSWORD }))
                    .send()
                    .await
                    .map(|response| response.status());
                if let Ok(StatusCode::CREATED) = answered {
                    answered_count.fetch_add(1, Ordering::SeqCst);
                }
                (name, answered)
            })
        })
        .collect();
    // Kill once a few sign-ups were answered, while the rest are still arriving.
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::SeqCst) < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    let mut created = Vec::new();
    for attempt in attempts {
        let (name, answered) = attempt.await.expect("task");
        if let Ok(StatusCode::CREATED) = answered {
            created.push(name);
        }
    }
    assert!(
        !created.is_empty(),
        "no sign-up was answered before the kill: make the kill later"
    );
    assert!(
        created.len() < 60,
        "every sign-up finished before the kill: make it earlier"
    );

    let restarted = Server::start_at(dir.path(), address, &[]);
    for name in &created {
        assert_eq!(
            login(&restarted, name).await.status(),
            StatusCode::OK,
            "{name} was answered 201 but is gone"
        );
    }
    println!(
        "{} of 60 sign-ups answered before SIGKILL; all of them persisted",
        created.len()
    );
}
