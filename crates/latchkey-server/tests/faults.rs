//! Faults: Redis or PostgreSQL going away under a running server gives clear 503s and
//! never a login, and the server recovers by itself when they come back; a server
//! killed with SIGKILL in the middle of sign-ups keeps every user it answered 201 for.

mod common;

use common::flows::{home_answer_with_cookie, home_with_cookie, login};
use common::{bare_client, service_url, unique, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

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
        let (status, body) = home_answer_with_cookie(server, cookie).await;
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
    /// Its log (Redis logs to stdout).
    _log: tempfile::NamedTempFile,
}

impl Redis {
    /// A redis-server on a port of `common::free_address` (another one when a process
    /// took it meanwhile).
    fn start_free() -> Redis {
        for _ in 0..4 {
            match Self::try_start(common::free_address().port()) {
                Ok(redis) => return redis,
                Err(output) if common::ports::says_port_taken(&output) => continue,
                Err(output) => panic!("redis-server did not start: {output}"),
            }
        }
        Self::start(common::free_address().port())
    }

    /// A redis-server on `port`; fails with its log when it exits or does not listen
    /// within 10 s.
    fn start(port: u16) -> Redis {
        Self::try_start(port)
            .unwrap_or_else(|output| panic!("redis-server did not start on {port}: {output}"))
    }

    fn try_start(port: u16) -> Result<Redis, String> {
        let log = tempfile::NamedTempFile::new().expect("redis log");
        let mut child = Command::new("redis-server")
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
            .stdout(log.reopen().expect("redis log"))
            .stderr(log.reopen().expect("redis log"))
            .spawn()
            .expect("redis-server");
        let waited = common::ports::wait_until_listening(&mut child, port, Duration::from_secs(10));
        let output = || std::fs::read_to_string(log.path()).unwrap_or_default();
        match waited {
            Ok(()) => Ok(Redis {
                child,
                port,
                _log: log,
            }),
            Err(common::ports::NotListening::Died(status)) => {
                Err(format!("exited ({status}): {}", output()))
            }
            Err(common::ports::NotListening::TimedOut) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("not listening after 10 s: {}", output()))
            }
        }
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
    let redis = Redis::start_free();
    let port = redis.port;
    let store = format!("redis://127.0.0.1:{}", redis.port);
    let server = Server::start(dir.path(), &["--session-store", &store]);
    let name = unique("r");
    let cookie = common::signup_and_login(&server, &name, PASSWORD).await;
    assert_eq!(home_with_cookie(&server, &cookie).await, StatusCode::OK);

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
        login(&bare_client(), &server, &name, PASSWORD)
            .await
            .status(),
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
        login(&bare_client(), &server, &name, PASSWORD)
            .await
            .status(),
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
    let redis = Redis::start_free();
    let store = format!("redis://127.0.0.1:{}", redis.port);
    let server = Server::start(dir.path(), &["--session-store", &store]);
    let name = unique("i");
    let cookie = common::signup_and_login(&server, &name, PASSWORD).await;
    assert_eq!(home_with_cookie(&server, &cookie).await, StatusCode::OK);

    // The first request after the restart reads a session: the old one died with
    // Redis's memory, so 401, and never 503.
    let redis = restart_while_idle(redis);
    let (status, body) = home_answer_with_cookie(&server, &cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let fresh = login(&bare_client(), &server, &name, PASSWORD).await;
    assert_eq!(fresh.status(), StatusCode::OK, "a fresh login, first time");

    // The first request after the restart writes (a login: throttle counters and a new
    // session): it works first time.
    let _redis = restart_while_idle(redis);
    let fresh = login(&bare_client(), &server, &name, PASSWORD).await;
    assert_eq!(
        fresh.status(),
        StatusCode::OK,
        "a login right after the restart"
    );
    let header = common::session_cookie(&fresh, "id").expect("session cookie");
    let cookie = format!("id={}", common::cookie_value(&header));
    assert_eq!(home_with_cookie(&server, &cookie).await, StatusCode::OK);
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
    let (status, _) =
        home_answer_with_cookie(&server, "id=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
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
            login(&bare_client(), &restarted, name, PASSWORD)
                .await
                .status(),
            StatusCode::OK,
            "{name} was answered 201 but is gone"
        );
    }
    println!(
        "{} of 60 sign-ups answered before SIGKILL; all of them persisted",
        created.len()
    );
}

/// A private Redis Cluster (3 masters, 3 replicas) from `.ci/redis-cluster.sh`, so that
/// killing one of its masters disturbs no other test. Stopped when dropped.
struct Cluster {
    url: String,
    dir: std::path::PathBuf,
}

impl Cluster {
    fn start() -> Cluster {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/redis-cluster.sh");
        // Its own range, apart from every port a sibling test may be about to bind.
        let range = &common::ports::PRIVATE_CLUSTER_NODES;
        let output = Command::new("bash")
            .arg(script)
            .arg("--ports")
            .arg(format!("{}-{}", range.start(), range.end()))
            .output()
            .expect("run .ci/redis-cluster.sh");
        assert!(
            output.status.success(),
            "the cluster did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} in {text}"))
                .to_string()
        };
        Cluster {
            url: value("LATCHKEY_TEST_REDIS_CLUSTER"),
            dir: value("LATCHKEY_TEST_REDIS_CLUSTER_DIR").into(),
        }
    }

    /// `redis-cli` against the node at `port`.
    fn cli(port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// The ports of the seed nodes in the cluster's URL.
    fn seed_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.url
            .trim_start_matches("redis-cluster://")
            .split(',')
            .map(node_port)
    }

    /// The port of the master serving `slot`, asked of any live node.
    fn master_of(&self, slot: u16) -> u16 {
        for port in self.seed_ports() {
            for line in Self::cli(port, &["cluster", "nodes"]).lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                    continue;
                }
                let serves = fields[8..].iter().any(|range| {
                    let (start, end) = range.split_once('-').unwrap_or((range, range));
                    match (start.parse::<u16>(), end.parse::<u16>()) {
                        (Ok(start), Ok(end)) => (start..=end).contains(&slot),
                        _ => false,
                    }
                });
                if serves {
                    return node_port(fields[1]);
                }
            }
        }
        panic!("no master serves slot {slot}")
    }

    /// The hash slot of `key`, as the cluster computes it (`CLUSTER KEYSLOT`).
    fn slot_of(&self, key: &str) -> u16 {
        let port = self.seed_ports().next().expect("a seed");
        let slot = Self::cli(port, &["cluster", "keyslot", key]);
        slot.trim().parse().expect("a slot number")
    }

    /// The port of a replica of the master at `master`.
    fn replica_of(&self, master: u16) -> u16 {
        let id = Self::cli(master, &["cluster", "myid"]).trim().to_string();
        for line in Self::cli(master, &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 3 && fields[2].contains("slave") && fields[3] == id {
                return node_port(fields[1]);
            }
        }
        panic!("the master at {master} has no replica")
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-9`) to the node at `port`.
    fn signal(&self, port: u16, signal: &str) {
        let pid = std::fs::read_to_string(self.dir.join(format!("{port}.pid"))).expect("pid file");
        let status = Command::new("kill").args([signal, pid.trim()]).status();
        assert!(
            status.is_ok_and(|status| status.success()),
            "kill {signal} {pid}"
        );
    }

    /// Kills the node at `port` with SIGKILL.
    fn kill(&self, port: u16) {
        self.signal(port, "-9");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "pid") {
                    if let Ok(pid) = std::fs::read_to_string(&path) {
                        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster master killed under a load of `GET /home` from two server
/// processes (users in PostgreSQL through PgBouncer): every answer is 200 or 503 and
/// never names another user, only sessions on the dead master's slots meet 503, and
/// once its replica has taken over every request succeeds again, with the sessions
/// written before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_failover_under_load_answers_200_or_503_and_recovers() {
    let Some(postgres) = service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    // The cluster tests need redis-server; LATCHKEY_TEST_REDIS_CLUSTER says it is here.
    if service_url("LATCHKEY_TEST_REDIS_CLUSTER").is_none() {
        return;
    }
    let Some(bouncer) = service_url("LATCHKEY_TEST_PGBOUNCER") else {
        return;
    };
    let cluster = Cluster::start();
    // Users through a transaction-pooling PgBouncer, as past one machine.
    let args = [
        "--session-store",
        cluster.url.as_str(),
        "--database-pooler",
        "transaction",
        "--database-migrate-url",
        &postgres,
    ];
    let servers = Arc::new([
        Server::start_on(&bouncer, &args),
        Server::start_on(&bouncer, &args),
    ]);

    // Twelve users, each logged in on one process; their sessions spread over the shards.
    let mut users = Vec::new();
    for index in 0..12 {
        let name = unique("fo");
        let cookie = common::signup_and_login(&servers[index % 2], &name, PASSWORD).await;
        users.push((name, cookie));
    }
    // Replication is asynchronous: give the replicas a moment to hold every session.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let users = Arc::new(users);

    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<(Instant, StatusCode, usize)>::new()));
    let mut load = Vec::new();
    for worker in 0..8 {
        let (servers, users, stop, answers) = (
            servers.clone(),
            users.clone(),
            stop.clone(),
            answers.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut turn = worker;
            while !stop.load(Ordering::SeqCst) {
                let (name, cookie) = &users[turn % users.len()];
                let (status, body) = home_answer_with_cookie(&servers[turn % 2], cookie).await;
                assert!(
                    status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
                    "during the failover: {status} {body}"
                );
                if status == StatusCode::OK {
                    assert_eq!(
                        body,
                        json!({ "message": format!("Hello, {name}") }),
                        "a session answered as another user"
                    );
                }
                answers
                    .lock()
                    .expect("answers")
                    .push((Instant::now(), status, turn % users.len()));
                turn += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Kill the master that holds the first user's session.
    let key = session_key(&users[0].1);
    let victim = cluster.master_of(cluster.slot_of(&key));
    // Which users' sessions live on the master about to die.
    let on_victim: Vec<bool> = users
        .iter()
        .map(|(_, cookie)| {
            let key = session_key(cookie);
            cluster.master_of(cluster.slot_of(&key)) == victim
        })
        .collect();
    let killed_at = Instant::now();
    cluster.kill(victim);

    // Wait for the replica to take over: then two seconds of nothing but 200s.
    let deadline = killed_at + Duration::from_secs(30);
    let recovered_at = loop {
        assert!(Instant::now() < deadline, "the cluster never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answers = answers.lock().expect("answers");
        let recent: Vec<_> = answers
            .iter()
            .filter(|(at, _, _)| at.elapsed() < Duration::from_secs(2))
            .collect();
        let since_kill = killed_at.elapsed() > Duration::from_secs(2);
        if since_kill && recent.len() > 20 && recent.iter().all(|(_, s, _)| *s == StatusCode::OK) {
            break Instant::now() - Duration::from_secs(2);
        }
    };
    stop.store(true, Ordering::SeqCst);
    for worker in load {
        worker.await.expect("no load worker saw a wrong answer");
    }
    let answers = std::mem::take(&mut *answers.lock().expect("answers"));
    let unavailable = answers
        .iter()
        .filter(|(_, status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    let last_503 = answers
        .iter()
        .filter(|(_, status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .map(|(at, _, _)| at.duration_since(killed_at))
        .max();
    // The other shards kept serving (the cluster runs with
    // cluster-require-full-coverage no): only sessions on the dead master's slots met 503.
    for (_, status, user) in &answers {
        assert!(
            *status == StatusCode::OK || on_victim[*user],
            "user {user}, whose session is on a live shard, got {status}"
        );
    }
    println!(
        "failover: {} answers, {unavailable} were 503, the last {last_503:?} after the kill; \
         all 200 again {:?} after it",
        answers.len(),
        recovered_at.duration_since(killed_at)
    );
    assert!(
        unavailable > 0,
        "no request ever met the dead master: the load did not test the failover"
    );

    // Every session written before the failover survived it.
    for (name, cookie) in users.iter() {
        for server in servers.iter() {
            let (status, body) = home_answer_with_cookie(server, cookie).await;
            assert_eq!(status, StatusCode::OK, "{name}'s session was lost: {body}");
        }
    }
}

/// The Redis key of the session behind an `id=<token>` cookie (the hex SHA-256 of the
/// token, under the default prefix).
fn session_key(cookie: &str) -> String {
    let id = latchkey::SessionToken::parse(cookie.trim_start_matches("id="))
        .expect("a session token")
        .id();
    format!("latchkey:s:{{{}}}", id.to_hex())
}

/// The port of a cluster node from its address (`host:port`, or `host:port@bus` as
/// `CLUSTER NODES` shows it).
fn node_port(address: &str) -> u16 {
    let address = address.split('@').next().unwrap_or(address);
    address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("a port in {address}"))
}

/// `POST /logout` with `cookie`: its status.
async fn logout(server: &Server, cookie: &str) -> StatusCode {
    bare_client()
        .post(server.url("/logout"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("logout")
        .status()
}

/// A session's slot moves to another master while the server runs: mid-migration the
/// key is answered through `ASK`, after it through `MOVED`, and the session works at
/// every step (as do logout and a new login on that slot's keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_slot_migration_is_followed() {
    let Some(postgres) = service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    if service_url("LATCHKEY_TEST_REDIS_CLUSTER").is_none() {
        return;
    }
    let cluster = Cluster::start();
    let server = Server::start_on(&postgres, &["--session-store", cluster.url.as_str()]);
    let name = unique("mv");
    let cookie = common::signup_and_login(&server, &name, PASSWORD).await;
    let greeting = json!({ "message": format!("Hello, {name}") });
    let key = session_key(&cookie);
    let slot = cluster.slot_of(&key);
    let source = cluster.master_of(slot);
    let target = cluster.master_of((slot + 5462) % 16384);
    assert_ne!(source, target);
    let id = |port: u16| Cluster::cli(port, &["cluster", "myid"]).trim().to_string();
    let (source_id, target_id) = (id(source), id(target));
    let slot_text = slot.to_string();

    // Mid-migration: the slot is importing on the target, migrating on the source.
    Cluster::cli(
        target,
        &["cluster", "setslot", &slot_text, "importing", &source_id],
    );
    Cluster::cli(
        source,
        &["cluster", "setslot", &slot_text, "migrating", &target_id],
    );
    assert_eq!(
        home_answer_with_cookie(&server, &cookie).await,
        (StatusCode::OK, greeting.clone())
    );
    // The key moves: the source now answers ASK for it.
    let moved = Cluster::cli(
        source,
        &[
            "migrate",
            "127.0.0.1",
            &target.to_string(),
            "",
            "0",
            "5000",
            "keys",
            &key,
        ],
    );
    assert!(moved.trim() == "OK", "MIGRATE: {moved}");
    assert_eq!(
        home_answer_with_cookie(&server, &cookie).await,
        (StatusCode::OK, greeting.clone())
    );
    // The migration ends: every node says the target owns the slot (MOVED from the source).
    for port in [target, source] {
        Cluster::cli(
            port,
            &["cluster", "setslot", &slot_text, "node", &target_id],
        );
    }
    assert_eq!(Cluster::cli(target, &["exists", &key]).trim(), "1");
    assert_eq!(
        home_answer_with_cookie(&server, &cookie).await,
        (StatusCode::OK, greeting)
    );
    assert_eq!(logout(&server, &cookie).await, StatusCode::OK);
    assert_eq!(
        home_with_cookie(&server, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(Cluster::cli(target, &["exists", &key]).trim(), "0");
}

/// A logout on a Redis Cluster waits for a replica to have the deletion, so that a
/// failover right after cannot bring the session back; when no replica confirms it
/// in time (here: the replica is stopped) the logout still succeeds, and says so in the
/// log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_logout_waits_for_a_replica() {
    if service_url("LATCHKEY_TEST_REDIS_CLUSTER").is_none() {
        return;
    }
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(dir.path(), &["--session-store", &cluster.url], &log);
    let unconfirmed = "not on a replica yet";

    // A healthy replica confirms at once.
    let cookie = common::signup_and_login(&server, "alice", PASSWORD).await;
    assert_eq!(logout(&server, &cookie).await, StatusCode::OK);
    assert_eq!(
        home_with_cookie(&server, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(unconfirmed), "{text}");

    // With the replica stopped, the logout waits for it, then goes through and says so.
    let login = login(&bare_client(), &server, "alice", PASSWORD).await;
    let header = common::session_cookie(&login, "id").expect("session cookie");
    let cookie = format!("id={}", common::cookie_value(&header));
    let key = session_key(&cookie);
    let replica = cluster.replica_of(cluster.master_of(cluster.slot_of(&key)));
    cluster.signal(replica, "-STOP");
    let status = logout(&server, &cookie).await;
    cluster.signal(replica, "-CONT");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        home_with_cookie(&server, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains(unconfirmed), "no warning in {text}");
}

/// Logouts on a Redis Cluster master that has no replica (its replica killed, as after a
/// failover that promoted it) do not wait for one: eight at once all answer 200, in well
/// under the 4 s that eight waits of 500 ms for a replica took, one behind the other on
/// that master's connection (past the 2 s command timeout: 503s). On a master with a
/// replica, a logout is still on that replica by the time it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_logouts_on_a_master_without_replica_do_not_queue() {
    if service_url("LATCHKEY_TEST_REDIS_CLUSTER").is_none() {
        return;
    }
    const LOGOUTS: usize = 8;
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--session-store", &cluster.url]);
    let name = "alice";
    let first = common::signup_and_login(&server, name, PASSWORD).await;
    let lonely = cluster.master_of(cluster.slot_of(&session_key(&first)));
    let (mut on_lonely, mut elsewhere) = (vec![first], Vec::new());
    while on_lonely.len() < LOGOUTS || elsewhere.is_empty() {
        assert!(
            on_lonely.len() + elsewhere.len() < 200,
            "sessions never landed"
        );
        let cookie = login_until_ok(&server, name, PASSWORD).await;
        if cluster.master_of(cluster.slot_of(&session_key(&cookie))) == lonely {
            on_lonely.push(cookie);
        } else {
            elsewhere.push(cookie);
        }
    }

    // With a replica: the deletion is on it when the logout is answered.
    let cookie = &elsewhere[0];
    let key = session_key(cookie);
    let replica = cluster.replica_of(cluster.master_of(cluster.slot_of(&key)));
    // A replica redirects EXISTS to its master; KEYS (no key argument) it answers.
    let on_replica = |key: &str| Cluster::cli(replica, &["keys", key]).trim() == key;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !on_replica(&key) {
        assert!(Instant::now() < deadline, "{key} never reached its replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(logout(&server, cookie).await, StatusCode::OK);
    assert!(
        !on_replica(&key),
        "a logout was answered before its replica had it"
    );

    // Without a replica: no wait, so no queue.
    cluster.kill(cluster.replica_of(lonely));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !Cluster::cli(lonely, &["info", "replication"]).contains("connected_slaves:0") {
        assert!(Instant::now() < deadline, "{lonely} still sees its replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let mut logouts = tokio::task::JoinSet::new();
    for cookie in &on_lonely {
        let (url, cookie) = (server.url("/logout"), cookie.clone());
        logouts.spawn(async move {
            let response = bare_client().post(url).header("cookie", cookie).send();
            response.await.expect("logout").status()
        });
    }
    let statuses = logouts.join_all().await;
    let took = started.elapsed();
    println!("{LOGOUTS} logouts on a master without replica took {took:?}: {statuses:?}");
    assert!(
        statuses.iter().all(|status| *status == StatusCode::OK),
        "{statuses:?} after {took:?}"
    );
    // Half of what the waits alone took, one behind the other.
    assert!(
        took < Duration::from_millis(500) * LOGOUTS as u32 / 2,
        "{LOGOUTS} logouts took {took:?}"
    );
    for cookie in &on_lonely {
        let key = session_key(cookie);
        assert_eq!(Cluster::cli(lonely, &["exists", &key]).trim(), "0");
        assert_eq!(
            home_with_cookie(&server, cookie).await,
            StatusCode::UNAUTHORIZED
        );
    }
}

/// `POST /login` as `name` with `password` until it answers 200 (503s while the
/// server's cluster connection catches up with a failover; at most 20 s): the `id=…`
/// cookie of the new session.
async fn login_until_ok(server: &Server, name: &str, password: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = bare_client()
            .post(server.url("/login"))
            .json(&json!({ "username": name, "password": password }))
            .send()
            .await
            .expect("login");
        let status = response.status();
        if status == StatusCode::OK {
            let header = common::session_cookie(&response, "id").expect("session cookie");
            return format!("id={}", common::cookie_value(&header));
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "login of {name}");
        assert!(Instant::now() < deadline, "logins never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `latchkey user passwd` on a Redis Cluster whose master holding the user's session
/// index was just killed: run at once, while its replica takes over, and three times
/// more, with new sessions each time, every run succeeds, ends every session logged in
/// before it (deleted from the cluster, refused by the server). Each time, at least six
/// of them are on the shard that failed over, whose new master has no replica: a wait
/// for a replica per ended session blocked that master's connection for 500 ms each, so
/// that the deletes queued behind timed out ("session store unavailable: timed out").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_passwd_follows_a_redis_cluster_failover() {
    if service_url("LATCHKEY_TEST_REDIS_CLUSTER").is_none() {
        return;
    }
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--session-store", &cluster.url]);
    let database = common::database_url(dir.path());
    let name = "alice";
    common::signup_and_login(&server, name, PASSWORD).await;
    let (ok, users, stderr) = common::cli(&["user", "list", "--database-url", &database], "");
    assert!(ok, "{stderr}");
    let id = users
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(name))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("{name} in {users}"))
        .to_string();
    let index_slot = cluster.slot_of(&format!("latchkey:u:{{{id}}}"));

    let mut password = PASSWORD.to_string();
    for round in 0..4 {
        // Sessions on every shard, at least six on the one of the user's index.
        let shard = cluster.master_of(index_slot);
        let (mut cookies, mut on_shard) = (Vec::new(), 0);
        while on_shard < 6 || cookies.len() < on_shard + 2 {
            assert!(cookies.len() < 100, "sessions never landed on {shard}");
            let cookie = login_until_ok(&server, name, &password).await;
            if cluster.master_of(cluster.slot_of(&session_key(&cookie))) == shard {
                on_shard += 1;
            }
            cookies.push(cookie);
        }
        if round == 0 {
            // Replication is asynchronous: give the replicas a moment to hold them all.
            tokio::time::sleep(Duration::from_millis(500)).await;
            cluster.kill(shard);
        }
        password = format!("{PASSWORD} {round}");
        let started = Instant::now();
        let (ok, said, stderr) = common::cli(
            &[
                "user",
                "passwd",
                name,
                "--password-stdin",
                "--database-url",
                &database,
                "--session-store",
                &cluster.url,
            ],
            &format!("{password}\n"),
        );
        println!(
            "round {round}: `user passwd` took {:?}: {}",
            started.elapsed(),
            said.trim()
        );
        assert!(ok, "round {round}: {stderr}");
        let ended: usize = said
            .split(" session(s) ended")
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no count of ended sessions in {said}"));
        assert!(ended >= cookies.len(), "round {round}: {said}");
        for cookie in &cookies {
            let key = session_key(cookie);
            let master = cluster.master_of(cluster.slot_of(&key));
            assert_eq!(
                Cluster::cli(master, &["exists", &key]).trim(),
                "0",
                "round {round}: {key} outlived `user passwd`"
            );
            home_until(
                &server,
                cookie,
                StatusCode::UNAUTHORIZED,
                &[StatusCode::SERVICE_UNAVAILABLE],
            )
            .await;
        }
    }
}

/// When a shard cannot recover (its master and its replica killed), `latchkey user
/// passwd` waits out its patience (30 s), then fails saying that the cluster did not
/// recover in time, instead of hanging or failing with a bare "connection refused".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_passwd_says_why_when_a_shard_does_not_recover() {
    if service_url("LATCHKEY_TEST_REDIS_CLUSTER").is_none() {
        return;
    }
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--session-store", &cluster.url]);
    let database = common::database_url(dir.path());
    common::signup_and_login(&server, "bob", PASSWORD).await;
    // The fresh database's first user is 1: its session index is in the slot of "1".
    let master = cluster.master_of(cluster.slot_of("latchkey:u:{1}"));
    let replica = cluster.replica_of(master);
    cluster.kill(replica);
    cluster.kill(master);
    let started = Instant::now();
    let (ok, said, stderr) = common::cli(
        &[
            "user",
            "passwd",
            "bob",
            "--password-stdin",
            "--database-url",
            &database,
            "--session-store",
            &cluster.url,
        ],
        &format!("{PASSWORD} again\n"),
    );
    let took = started.elapsed();
    println!(
        "after {took:?}: {}",
        stderr.lines().last().unwrap_or_default()
    );
    assert!(!ok, "{said}");
    assert!(
        stderr.contains("the Redis Cluster did not recover in time"),
        "{stderr}"
    );
    assert!(
        took > Duration::from_secs(25) && took < Duration::from_secs(60),
        "gave up after {took:?}"
    );
}
