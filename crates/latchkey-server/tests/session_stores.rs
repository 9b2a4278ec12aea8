//! The server's `--session-store` choices end to end: the encrypted cookie store, a
//! memory store mirrored to the database behind a cache, Redis reached from the CLI, and
//! the combinations it refuses.

mod common;

use common::{bare_client, cli, service_url, unique, Server};
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

async fn status(server: &Server, method: reqwest::Method, path: &str, cookie: &str) -> StatusCode {
    bare_client()
        .request(method, server.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("request")
        .status()
}

#[tokio::test]
async fn cookie_store_keeps_sessions_in_the_browser_and_refuses_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = common::free_address();
    let server = Server::start_at(dir.path(), address, &["--session-store", "cookie"]);
    let cookie = common::signup_and_login(&server, "cookie-user", PASSWORD).await;
    assert!(
        cookie.len() > 200,
        "the record travels in the cookie: {cookie}"
    );
    assert_eq!(
        status(&server, reqwest::Method::GET, "/home", &cookie).await,
        StatusCode::OK
    );

    // The key file beside the database survives a restart, and so do the cookies.
    server.stop();
    let server = Server::start_at(dir.path(), address, &["--session-store", "cookie"]);
    assert_eq!(
        status(&server, reqwest::Method::GET, "/home", &cookie).await,
        StatusCode::OK
    );

    // After logout, a copy of the cookie is refused (revocation record in the database).
    assert_eq!(
        status(&server, reqwest::Method::POST, "/logout", &cookie).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&server, reqwest::Method::GET, "/home", &cookie).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn memory_sessions_mirrored_to_the_database_behind_a_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &[
            "--session-store",
            "memory",
            "--session-mirror",
            "database",
            "--session-cache",
            "1s",
        ],
    );
    let cookie = common::signup_and_login(&server, "mirrored", PASSWORD).await;
    assert_eq!(
        status(&server, reqwest::Method::GET, "/home", &cookie).await,
        StatusCode::OK
    );

    // The database mirror holds the session: the CLI reads it from there.
    let url = server.database_url.clone();
    let (ok, stdout, stderr) = cli(
        &[
            "session",
            "list",
            "--user",
            "mirrored",
            "--database-url",
            &url,
        ],
        "",
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.contains("mirrored"))
            .count(),
        1,
        "{stdout}"
    );

    assert_eq!(
        status(&server, reqwest::Method::POST, "/logout", &cookie).await,
        StatusCode::OK
    );
    let (ok, stdout, _) = cli(
        &[
            "session",
            "list",
            "--user",
            "mirrored",
            "--database-url",
            &url,
        ],
        "",
    );
    assert!(ok);
    assert!(
        !stdout.contains("mirrored"),
        "logout reached the mirror: {stdout}"
    );
}

#[tokio::test]
async fn the_cli_ends_sessions_kept_in_redis_at_once() {
    let Some(redis) = service_url("LATCHKEY_TEST_REDIS") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // A prefix of this run's own: the machine's Redis outlives this test's fresh
    // database, and other runs' sessions of a user with the same id must not mix in.
    let prefix = unique("cli-prefix");
    let server = Server::start(
        dir.path(),
        &["--session-store", &redis, "--redis-prefix", &prefix],
    );
    let name = unique("cli");
    let cookie = common::signup_and_login(&server, &name, PASSWORD).await;
    let url = server.database_url.clone();
    let flags = [
        "--database-url",
        url.as_str(),
        "--session-store",
        redis.as_str(),
        "--redis-prefix",
        prefix.as_str(),
    ];

    let token = cookie.trim_start_matches("id=");
    let session_id = latchkey::SessionToken::parse(token)
        .expect("a session token")
        .id()
        .to_hex();
    let mut list = vec!["session", "list", "--user", name.as_str()];
    list.extend_from_slice(&flags);
    let (ok, stdout, stderr) = cli(&list, "");
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&session_id), "{stdout}");
    // Under the default prefix (another deployment) the session is not there.
    let (ok, stdout, stderr) = cli(&list[..list.len() - 2], "");
    assert!(ok, "{stderr}");
    assert!(!stdout.contains(&session_id), "{stdout}");

    let mut passwd = vec!["user", "passwd", name.as_str(), "--password-stdin"];
    passwd.extend_from_slice(&flags);
    let (ok, stdout, stderr) = cli(&passwd, "a brand new password\n");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("session(s) ended") && !stdout.contains(" 0 session(s) ended"),
        "{stdout}"
    );
    // Deleted from Redis: refused at once, without waiting for the user cache.
    assert_eq!(
        status(&server, reqwest::Method::GET, "/home", &cookie).await,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn combinations_that_cannot_work_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = common::database_url(dir.path());
    let cases: [(&[&str], &str); 3] = [
        (&["--session-store", "mysql://x"], "is not a session store"),
        (
            &["--session-store", "cookie", "--session-mirror", "database"],
            "takes no --session-mirror",
        ),
        (
            &["--session-store", "memory", "--session-mirror", "cookie"],
            "cannot be a mirror",
        ),
    ];
    for (flags, reason) in cases {
        let mut args = vec!["serve", "--database-url", database.as_str()];
        args.extend_from_slice(flags);
        let (ok, _, stderr) = cli(&args, "");
        assert!(!ok, "{flags:?} started");
        assert!(stderr.contains(reason), "{flags:?}: {stderr}");
    }
    // The CLI cannot see sessions in another process's memory, and says so.
    let (ok, _, stderr) = cli(
        &[
            "session",
            "revoke",
            "--user",
            "x",
            "--database-url",
            &database,
            "--session-store",
            "memory",
        ],
        "",
    );
    assert!(
        !ok && stderr.contains("out of this command's reach"),
        "{stderr}"
    );
}

#[tokio::test]
async fn secret_keys_roll_over_without_logging_anyone_out() {
    const OLD: &str = "an old server key of at least thirty-two bytes";
    const NEW: &str = "a new server key that is also thirty-two bytes";
    let dir = tempfile::tempdir().expect("tempdir");
    let address = common::free_address();
    let cookie_store = ["--session-store", "cookie"];
    let server = Server::start_with_keys(dir.path(), address, &cookie_store, OLD);
    let cookie = common::signup_and_login(&server, "rolling", PASSWORD).await;
    server.stop();

    // The new key first, the old one still accepted: the old cookie works.
    let keys = format!("{NEW},{OLD}");
    let server = Server::start_with_keys(dir.path(), address, &cookie_store, &keys);
    assert_eq!(
        status(&server, reqwest::Method::GET, "/home", &cookie).await,
        StatusCode::OK
    );
    let fresh = common::signup_and_login(&server, "rolled", PASSWORD).await;
    server.stop();

    // The old key removed: its cookies stop opening, the new key's still do.
    let server = Server::start_with_keys(dir.path(), address, &cookie_store, NEW);
    assert_eq!(
        status(&server, reqwest::Method::GET, "/home", &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&server, reqwest::Method::GET, "/home", &fresh).await,
        StatusCode::OK
    );
}

/// `PUT /api/session/data/{key}` with `value`: its status and body.
async fn put_data(
    server: &Server,
    cookie: &str,
    key: &str,
    value: &serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let response = bare_client()
        .put(server.url(&format!("/api/session/data/{key}")))
        .header("cookie", cookie)
        .json(value)
        .send()
        .await
        .expect("put");
    let status = response.status();
    (status, response.json().await.expect("a JSON answer"))
}

/// The session data the API reports.
async fn session_data(server: &Server, cookie: &str) -> serde_json::Value {
    let response = bare_client()
        .get(server.url("/api/session/data"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("data")
}

/// The attack: 64 values of 60 KB in one session through the data API (a 3.8 MB
/// record). Whatever the store, the write past the record limit (64 KiB by default) is
/// answered 413 with a message, and the session keeps what it had; so is the key past
/// `--max-session-keys`.
#[tokio::test]
async fn session_data_past_the_limits_is_refused_in_every_store() {
    let mut stores = vec!["database".to_string(), "memory".to_string()];
    if let Some(redis) = service_url("LATCHKEY_TEST_REDIS") {
        stores.push(redis);
    }
    for store in &stores {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = unique("big");
        let server = Server::start(
            dir.path(),
            &[
                "--session-store",
                store,
                "--redis-prefix",
                &prefix,
                "--enable-session-data-api",
                "--max-session-keys",
                "6",
            ],
        );
        let cookie = common::signup_and_login(&server, &unique("big"), PASSWORD).await;
        let value = serde_json::json!("x".repeat(60_000));
        let (answer, body) = put_data(&server, &cookie, "v0", &value).await;
        assert_eq!(answer, StatusCode::OK, "{store}: {body}");
        for n in 1..64 {
            let (answer, body) = put_data(&server, &cookie, &format!("v{n}"), &value).await;
            assert_eq!(answer, StatusCode::PAYLOAD_TOO_LARGE, "{store}, value {n}");
            let message = body["error"].as_str().unwrap_or_default();
            assert!(
                message.contains("too large") && message.contains("65536"),
                "{store}: {body}"
            );
        }
        let increment = bare_client()
            .post(server.url("/api/session/data/v0/increment"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("increment");
        assert_eq!(
            increment.status(),
            StatusCode::OK,
            "{store}: a small value fits"
        );
        let data = session_data(&server, &cookie).await;
        assert_eq!(data, serde_json::json!({ "v0": 1 }), "{store}");

        // Keys: the session holds v0 and the API's keys up to the limit of 6 in all.
        let mut stored = 0;
        for n in 0..10 {
            let (answer, body) = put_data(&server, &cookie, &format!("k{n}"), &n.into()).await;
            match answer {
                StatusCode::OK => {
                    assert_eq!(stored, n, "{store}: a key stored after one was refused");
                    stored += 1;
                }
                StatusCode::PAYLOAD_TOO_LARGE => {
                    let message = body["error"].as_str().unwrap_or_default();
                    assert!(message.contains("keys, limit 6"), "{store}: {body}");
                }
                other => panic!("{store}: key {n} answered {other}: {body}"),
            }
        }
        let data = session_data(&server, &cookie).await;
        let keys = data.as_object().map_or(0, |data| data.len());
        assert_eq!(keys, 1 + stored, "{store}: {data}");
        assert!((1..6).contains(&stored), "{store}: {stored} keys stored");
        assert_eq!(
            status(&server, reqwest::Method::GET, "/home", &cookie).await,
            StatusCode::OK,
            "{store}: the session lives on"
        );
    }
}
