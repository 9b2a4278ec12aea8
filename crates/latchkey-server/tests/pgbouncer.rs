//! `latchkey serve` on PostgreSQL through a transaction-pooling PgBouncer
//! (`LATCHKEY_TEST_PGBOUNCER`, started by `.ci/pgbouncer.sh`): migrations and the
//! session cache's LISTEN on direct connections (`LATCHKEY_TEST_POSTGRES`), everything
//! else through the pooler; without a listen URL the cache says at start that it only
//! has its TTL; without a migrate URL the server refuses to start.

mod common;

use common::{bare_client, cli, free_address, service_url, signup_and_login, unique, Server};
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

/// The PgBouncer and the direct PostgreSQL URLs, or `None` (skip).
fn urls() -> Option<(String, String)> {
    Some((
        service_url("LATCHKEY_TEST_PGBOUNCER")?,
        service_url("LATCHKEY_TEST_POSTGRES")?,
    ))
}

async fn home(server: &Server, cookie: &str) -> StatusCode {
    bare_client()
        .get(server.url("/home"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("home")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_through_pgbouncer_with_direct_migrations_and_listen() {
    let Some((bouncer, direct)) = urls() else {
        return;
    };
    let args = [
        "--database-pooler",
        "transaction",
        "--database-migrate-url",
        &direct,
        "--database-listen-url",
        &direct,
        "--session-store",
        "database",
        "--session-cache",
        "10m",
    ];
    let (a, b) = (
        Server::start_on(&bouncer, &args),
        Server::start_on(&bouncer, &args),
    );
    let name = unique("pgb");
    let cookie = signup_and_login(&a, &name, PASSWORD).await;
    let home_a = bare_client()
        .get(a.url("/home"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("home");
    assert_eq!(home_a.status(), StatusCode::OK);
    let body: serde_json::Value = home_a.json().await.expect("json");
    assert_eq!(body["message"], format!("Hello, {name}"));
    // Cached on both; a logout on B reaches A's ten-minute cache through LISTEN.
    assert_eq!(home(&b, &cookie).await, StatusCode::OK);
    let logout = bare_client()
        .post(b.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(home(&b, &cookie).await, StatusCode::UNAUTHORIZED);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while home(&a, &cookie).await != StatusCode::UNAUTHORIZED {
        assert!(
            std::time::Instant::now() < deadline,
            "A's cache never heard of the logout on B"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_listen_url_the_cache_says_it_only_has_its_ttl() {
    let Some((bouncer, direct)) = urls() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("serve.log");
    let server = Server::start_on_logging(
        &bouncer,
        &[
            "--database-pooler",
            "transaction",
            "--database-migrate-url",
            &direct,
            "--session-store",
            "database",
            "--session-cache",
            "1s",
        ],
        &log,
    );
    let name = unique("pgbttl");
    let cookie = signup_and_login(&server, &name, PASSWORD).await;
    assert_eq!(home(&server, &cookie).await, StatusCode::OK);
    let logout = bare_client()
        .post(server.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(home(&server, &cookie).await, StatusCode::UNAUTHORIZED);
    server.stop();
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains("session cache without change notifications")
            && logged.contains("--database-listen-url"),
        "no fallback line in:\n{logged}"
    );
}

#[test]
fn a_transaction_pooler_without_a_migrate_url_is_refused() {
    let Some((bouncer, _)) = urls() else {
        return;
    };
    let address = free_address().to_string();
    let (ok, _, stderr) = cli(
        &[
            "serve",
            "--bind",
            &address,
            "--database-url",
            &bouncer,
            "--database-pooler",
            "transaction",
        ],
        "",
    );
    assert!(!ok, "started without a migrate URL");
    assert!(stderr.contains("--database-migrate-url"), "{stderr}");
}
