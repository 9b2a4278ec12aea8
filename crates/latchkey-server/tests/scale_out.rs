//! Two `latchkey serve` processes sharing PostgreSQL (users) and a session store
//! (PostgreSQL, Redis, or a Redis Cluster with PostgreSQL behind PgBouncer): a login on one works on the other, a logout or a password
//! change on one ends the session on the other, and concurrent writes through both
//! lose nothing.

mod common;

use common::flows::home_with_cookie;
use common::pages::csrf_token;
use common::{bare_client, service_url, unique, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// Where two servers keep users and sessions.
struct Deployment {
    /// `--database-url`.
    database: String,
    /// The flags that choose the session store and how PostgreSQL is reached.
    flags: Vec<String>,
}

impl Deployment {
    /// Users in the test PostgreSQL database (straight), sessions in `store`.
    fn direct(store: &str) -> Option<Deployment> {
        Some(Deployment {
            database: service_url("LATCHKEY_TEST_POSTGRES")?,
            flags: vec!["--session-store".into(), store.into()],
        })
    }

    /// As a deployment past one machine runs: sessions on the Redis Cluster, PostgreSQL
    /// through a transaction-pooling PgBouncer (migrations and the cache's `LISTEN` on
    /// direct connections).
    fn past_one_machine() -> Option<Deployment> {
        let cluster = service_url("LATCHKEY_TEST_REDIS_CLUSTER")?;
        let bouncer = service_url("LATCHKEY_TEST_PGBOUNCER")?;
        let direct = service_url("LATCHKEY_TEST_POSTGRES")?;
        Some(Deployment {
            database: bouncer,
            flags: vec![
                "--session-store".into(),
                cluster,
                "--database-pooler".into(),
                "transaction".into(),
                "--database-migrate-url".into(),
                direct.clone(),
                "--database-listen-url".into(),
                direct,
            ],
        })
    }

    /// Two servers, with `extra` flags.
    fn servers(&self, extra: &[&str]) -> (Server, Server) {
        let mut args: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        (
            Server::start_on(&self.database, &args),
            Server::start_on(&self.database, &args),
        )
    }

    /// The flags a CLI command needs to reach the same database and sessions.
    fn cli_flags(&self) -> Vec<&str> {
        let mut flags = vec!["--database-url", self.database.as_str()];
        flags.extend(self.flags.iter().map(String::as_str));
        flags
    }
}

/// Two servers on `deployment` with the session data API.
fn two_servers(deployment: &Deployment) -> (Server, Server) {
    deployment.servers(&["--enable-session-data-api"])
}

async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let mut request = bare_client().request(method, server.url(path));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let cookie = common::session_cookie(&response, "id")
        .map(|header| format!("id={}", common::cookie_value(&header)));
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, cookie)
}

/// Signs a new user up on `server` and logs in; returns the name and session cookie.
async fn new_login(server: &Server) -> (String, String) {
    let name = unique("u");
    let credentials = json!({ "username": name, "password": PASSWORD });
    let (status, _, _) = send(
        server,
        reqwest::Method::POST,
        "/signup",
        None,
        Some(credentials.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, cookie) = send(
        server,
        reqwest::Method::POST,
        "/login",
        None,
        Some(credentials),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    (name, cookie.expect("session cookie"))
}

/// Changes the password through the `/password` form (CSRF token from the page);
/// returns the status and the session cookie the browser keeps.
async fn change_password(server: &Server, cookie: &str) -> (StatusCode, Option<String>) {
    let page = bare_client()
        .get(server.url("/password"))
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .expect("password page")
        .text()
        .await
        .expect("page");
    let csrf = csrf_token(&page);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirects
        .post(server.url("/password"))
        .header("cookie", cookie)
        .header("accept", "text/html")
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("current", PASSWORD),
            ("new", "another long passphrase"),
            ("confirm", "another long passphrase"),
        ])
        .send()
        .await
        .expect("change password");
    let kept = common::session_cookie(&response, "id")
        .map(|header| format!("id={}", common::cookie_value(&header)));
    (response.status(), kept)
}

async fn login_logout_and_password_change_cross_processes(deployment: Option<Deployment>) {
    let Some(deployment) = deployment else {
        return;
    };
    let (a, b) = two_servers(&deployment);

    // Log in on A, use the cookie on B; log out on B and A refuses it.
    let (name, cookie) = new_login(&a).await;
    let (status, body, _) = send(&b, reqwest::Method::GET, "/home", Some(&cookie), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "message": format!("Hello, {name}") }));
    let (status, _, _) = send(&b, reqwest::Method::POST, "/logout", Some(&cookie), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        home_with_cookie(&a, &cookie).await,
        StatusCode::UNAUTHORIZED,
        "A still accepts a cookie logged out on B"
    );

    // A password change on A ends the session used on B.
    let credentials = json!({ "username": name, "password": PASSWORD });
    let (_, _, on_b) = send(
        &b,
        reqwest::Method::POST,
        "/login",
        None,
        Some(credentials.clone()),
    )
    .await;
    let on_b = on_b.expect("cookie");
    let (_, _, on_a) = send(&a, reqwest::Method::POST, "/login", None, Some(credentials)).await;
    let on_a = on_a.expect("cookie");
    assert_eq!(home_with_cookie(&b, &on_b).await, StatusCode::OK);
    let (status, kept) = change_password(&a, &on_a).await;
    assert!(status.is_redirection(), "password change answered {status}");
    let kept = kept.unwrap_or(on_a);
    assert_eq!(
        home_with_cookie(&b, &on_b).await,
        StatusCode::UNAUTHORIZED,
        "B's session outlived the password change on A"
    );
    assert_eq!(
        home_with_cookie(&b, &kept).await,
        StatusCode::OK,
        "the browser that changed it stays logged in"
    );
}

async fn concurrent_writes_through_both_lose_nothing(deployment: Option<Deployment>) {
    let Some(deployment) = deployment else {
        return;
    };
    let (a, b) = two_servers(&deployment);
    let (_, cookie) = new_login(&a).await;

    // 2 x 50 requests, each writing its own key; 2 x 50 increments of one counter.
    let mut requests = Vec::new();
    for index in 0..100 {
        let server = if index % 2 == 0 { a.url("") } else { b.url("") };
        let cookie = cookie.clone();
        requests.push(tokio::spawn(async move {
            let client = bare_client();
            let put = client
                .put(format!("{server}/api/session/data/key{index}"))
                .header("cookie", &cookie)
                .json(&json!(index))
                .send();
            let increment = client
                .post(format!("{server}/api/session/data/counter/increment"))
                .header("cookie", &cookie)
                .send();
            let (put, increment) = tokio::join!(put, increment);
            (
                put.expect("put").status(),
                increment.expect("increment").status(),
            )
        }));
    }
    for request in requests {
        assert_eq!(
            request.await.expect("task"),
            (StatusCode::OK, StatusCode::OK)
        );
    }
    let (status, data, _) = send(
        &b,
        reqwest::Method::GET,
        "/api/session/data",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for index in 0..100 {
        assert_eq!(
            data[format!("key{index}")],
            json!(index),
            "key{index} was lost"
        );
    }
    assert_eq!(data["counter"], json!(100), "increments were lost");

    // A logged-out session never comes back because a request in flight saved it.
    let writes: Vec<_> = (0..20)
        .map(|index| {
            let server = if index % 2 == 0 { a.url("") } else { b.url("") };
            let cookie = cookie.clone();
            tokio::spawn(async move {
                bare_client()
                    .post(format!("{server}/api/session/data/late/increment"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .map(|response| response.status())
            })
        })
        .collect();
    let (status, _, _) = send(&a, reqwest::Method::POST, "/logout", Some(&cookie), None).await;
    assert_eq!(status, StatusCode::OK);
    for write in writes {
        let _ = write.await;
    }
    assert_eq!(
        home_with_cookie(&a, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        home_with_cookie(&b, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
}

/// Deletes the record of the session `cookie` (`id=…`) straight from the session store,
/// the way no latchkey process ever does: without the announcement that tells caches.
/// PostgreSQL announces from a trigger, which is off for this one connection
/// (`session_replication_role = replica`); on Redis the announcements come from
/// latchkey's scripts, which a plain `DEL` is not.
async fn delete_unannounced(deployment: &Deployment, cookie: &str) {
    let token = cookie.strip_prefix("id=").expect("an id= cookie");
    let id = latchkey::session::SessionToken::parse(token)
        .expect("a session token")
        .id()
        .to_hex();
    let store = deployment.flags[1].as_str();
    if store == "database" {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&deployment.database)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query("SET session_replication_role = replica")
            .execute(&mut connection)
            .await
            .expect("triggers off");
        let deleted = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(&id)
            .execute(&mut connection)
            .await
            .expect("delete");
        assert_eq!(deleted.rows_affected(), 1, "the session's row");
        return;
    }
    let mut node = store
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split([',', '/']).next())
        .expect("host:port in the store URL")
        .to_string();
    let key = format!("latchkey:s:{{{id}}}");
    // A cluster answers `-MOVED slot host:port` from a node that does not own the key.
    for _ in 0..3 {
        let reply = redis_command(&node, &["DEL", &key]);
        if let Some(moved) = reply.strip_prefix("-MOVED ") {
            node = moved.split_whitespace().nth(1).expect("node").to_string();
            continue;
        }
        assert_eq!(reply, ":1", "DEL {key} on {node}");
        return;
    }
    panic!("DEL {key}: moved too often");
}

/// One command to the Redis at `address` (RESP, no client library); its reply line.
fn redis_command(address: &str, args: &[&str]) -> String {
    use std::io::{BufRead, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to Redis");
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).expect("send");
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .expect("reply");
    line.trim_end().to_string()
}

/// Both servers cache sessions for ten minutes (`--session-cache 10m`). The cache is in
/// use: a session deleted from the store without an announcement is still served by A,
/// which had it cached, while B, which never read it, finds nothing (the control). And
/// a logout on B still reaches A's cache as soon as the store announces it.
async fn cached_logout_cross_processes(deployment: Option<Deployment>) {
    let Some(deployment) = deployment else {
        return;
    };
    let (a, b) = deployment.servers(&["--session-cache", "10m"]);
    // The cache is bypassed until A's subscription to the announcements is up (on a
    // cluster, one per shard) and emptied when it comes up: a probe that finds A going
    // to the store is tried again with a new session, for 10 s at most.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, probe) = new_login(&a).await;
        assert_eq!(home_with_cookie(&a, &probe).await, StatusCode::OK);
        delete_unannounced(&deployment, &probe).await;
        assert_eq!(
            home_with_cookie(&b, &probe).await,
            StatusCode::UNAUTHORIZED,
            "the store no longer has the session"
        );
        if home_with_cookie(&a, &probe).await == StatusCode::OK {
            break; // A answered from its cache, without reading the store.
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A never answered from its cache: every probe deleted from the store was gone \
             for A too"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let (_, cookie) = new_login(&a).await;
    assert_eq!(home_with_cookie(&a, &cookie).await, StatusCode::OK);
    assert_eq!(home_with_cookie(&b, &cookie).await, StatusCode::OK);
    let (status, _, _) = send(&b, reqwest::Method::POST, "/logout", Some(&cookie), None).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while home_with_cookie(&a, &cookie).await != StatusCode::UNAUTHORIZED {
        assert!(
            std::time::Instant::now() < deadline,
            "A's cache still accepts a cookie logged out on B"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn postgres_cached_sessions_see_a_logout_elsewhere() {
    cached_logout_cross_processes(Deployment::direct("database")).await;
}

#[tokio::test]
async fn redis_cached_sessions_see_a_logout_elsewhere() {
    let Some(redis) = service_url("LATCHKEY_TEST_REDIS") else {
        return;
    };
    cached_logout_cross_processes(Deployment::direct(&redis)).await;
}

#[tokio::test]
async fn postgres_sessions_cross_processes() {
    login_logout_and_password_change_cross_processes(Deployment::direct("database")).await;
}

#[tokio::test]
async fn redis_sessions_cross_processes() {
    let Some(redis) = service_url("LATCHKEY_TEST_REDIS") else {
        return;
    };
    login_logout_and_password_change_cross_processes(Deployment::direct(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_writes_through_two_processes() {
    concurrent_writes_through_both_lose_nothing(Deployment::direct("database")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_concurrent_writes_through_two_processes() {
    let Some(redis) = service_url("LATCHKEY_TEST_REDIS") else {
        return;
    };
    concurrent_writes_through_both_lose_nothing(Deployment::direct(&redis)).await;
}

#[tokio::test]
async fn cluster_and_pgbouncer_sessions_cross_processes() {
    login_logout_and_password_change_cross_processes(Deployment::past_one_machine()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_and_pgbouncer_concurrent_writes_through_two_processes() {
    concurrent_writes_through_both_lose_nothing(Deployment::past_one_machine()).await;
}

#[tokio::test]
async fn cluster_and_pgbouncer_cached_sessions_see_a_logout_elsewhere() {
    cached_logout_cross_processes(Deployment::past_one_machine()).await;
}

/// `latchkey user passwd` from the command line (through PgBouncer) ends the user's
/// sessions in the cluster at once: both processes refuse the old cookies on the next request.
#[tokio::test]
async fn cluster_and_pgbouncer_cli_password_change_ends_sessions_on_both() {
    let Some(deployment) = Deployment::past_one_machine() else {
        return;
    };
    let (a, b) = two_servers(&deployment);
    let (name, on_a) = new_login(&a).await;
    let credentials = json!({ "username": name, "password": PASSWORD });
    let (_, _, on_b) = send(&b, reqwest::Method::POST, "/login", None, Some(credentials)).await;
    let on_b = on_b.expect("cookie");
    assert_eq!(home_with_cookie(&b, &on_a).await, StatusCode::OK);
    assert_eq!(home_with_cookie(&a, &on_b).await, StatusCode::OK);
    let mut args = vec!["user", "passwd", &name, "--password-stdin"];
    args.extend(deployment.cli_flags());
    let (ok, stdout, stderr) = common::cli(&args, "an entirely new password\n");
    assert!(ok, "{stdout} {stderr}");
    for cookie in [&on_a, &on_b] {
        assert_eq!(home_with_cookie(&a, cookie).await, StatusCode::UNAUTHORIZED);
        assert_eq!(home_with_cookie(&b, cookie).await, StatusCode::UNAUTHORIZED);
    }
}

/// Failed logins through either process count against the account together (the
/// counters are in the cluster): six failures, then both refuse even the right password.
#[tokio::test]
async fn cluster_and_pgbouncer_throttle_both_processes_together() {
    let Some(deployment) = Deployment::past_one_machine() else {
        return;
    };
    let (a, b) = two_servers(&deployment);
    let (name, _) = new_login(&a).await;
    for attempt in 0..6 {
        let server = if attempt % 2 == 0 { &a } else { &b };
        let wrong = json!({ "username": name, "password": "not the password" });
        let (status, _, _) = send(server, reqwest::Method::POST, "/login", None, Some(wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    for server in [&a, &b] {
        let right = json!({ "username": name, "password": PASSWORD });
        let (status, _, _) = send(server, reqwest::Method::POST, "/login", None, Some(right)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
}
