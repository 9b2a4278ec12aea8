//! `latchkey serve` on PostgreSQL through a transaction-pooling PgBouncer
//! (`LATCHKEY_TEST_PGBOUNCER`, started by `.ci/pgbouncer.sh`): migrations and the
//! session cache's LISTEN on direct connections (`LATCHKEY_TEST_POSTGRES`), everything
//! else through the pooler; without a listen URL the cache says at start that it only
//! has its TTL; without a migrate URL the server refuses to start; without
//! `--database-pooler transaction` it refuses to start and names that flag.

mod common;

use common::flows::{home_answer_with_cookie, home_with_cookie};
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
    let (status, body) = home_answer_with_cookie(&a, &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], format!("Hello, {name}"));
    // Cached on both; a logout on B reaches A's ten-minute cache through LISTEN.
    assert_eq!(home_with_cookie(&b, &cookie).await, StatusCode::OK);
    let logout = bare_client()
        .post(b.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(
        home_with_cookie(&b, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while home_with_cookie(&a, &cookie).await != StatusCode::UNAUTHORIZED {
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
    assert_eq!(home_with_cookie(&server, &cookie).await, StatusCode::OK);
    let logout = bare_client()
        .post(server.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(
        home_with_cookie(&server, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
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

/// A PgBouncer of this test's own (`.ci/pgbouncer.sh` with `options`), stopped when
/// dropped.
struct PrivateBouncer {
    url: String,
    dir: std::path::PathBuf,
}

impl PrivateBouncer {
    fn start(options: &[&str]) -> PrivateBouncer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/pgbouncer.sh");
        let output = std::process::Command::new("bash")
            .arg(script)
            .args(options)
            .output()
            .expect("run .ci/pgbouncer.sh");
        assert!(
            output.status.success(),
            "PgBouncer did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} in {text}"))
                .to_string()
        };
        PrivateBouncer {
            url: value("LATCHKEY_TEST_PGBOUNCER"),
            dir: value("LATCHKEY_TEST_PGBOUNCER_DIR").into(),
        }
    }
}

impl PrivateBouncer {
    /// Leaves a statement named `sqlx_s_1` on the server connection (the only one with
    /// `--pool-size 1`), as another client of a shared PgBouncer would. Needed before
    /// every run: PgBouncer closes a server connection whose client vanished
    /// mid-statement, and a lone client on a fresh one can run for a while without a
    /// collision (its first statements all land on the same server connection).
    fn share_a_statement(&self) {
        let prepared = std::process::Command::new("psql")
            .args([self.url.as_str(), "-c", "PREPARE sqlx_s_1 AS SELECT 1"])
            .output()
            .expect("psql");
        let said = String::from_utf8_lossy(&prepared.stderr);
        assert!(
            prepared.status.success() || said.contains("already exists"),
            "{said}"
        );
    }
}

impl Drop for PrivateBouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = std::process::Command::new("kill")
                .args(["-9", pid.trim()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `latchkey` with `args` and waits for it to exit (a `serve` that is still running
/// after 60 s started, which fails the test); its stderr.
fn must_fail(args: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .args(common::FAST_HASHING)
        .env("LATCHKEY_LOG", "warn")
        .env_remove("LATCHKEY_SECRET_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run latchkey");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            use std::io::Read;
            if let Some(mut pipe) = child.stderr.take() {
                pipe.read_to_string(&mut stderr).expect("stderr");
            }
            assert!(!status.success(), "latchkey {args:?} succeeded: {stderr}");
            return stderr;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            use std::io::Read;
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("latchkey {args:?} is still running after 60 s: {stderr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The reporter's setup: a transaction-pooling PgBouncer that ignores sqlx's
/// `extra_float_digits`, whose server connection another client has used (it holds a
/// statement named `sqlx_s_1`, as the server connections of a shared PgBouncer do), and
/// `--database-url` pointing at it without `--database-pooler transaction`: `serve` and
/// the CLI stop with a message that names the missing flag, every time; with the flag
/// (and a direct migrate URL) the same PgBouncer serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_pooler_flag_a_transaction_pooler_is_named() {
    let Some((_, direct)) = urls() else {
        return;
    };
    let bouncer = PrivateBouncer::start(&[
        "--ignore-startup-parameters",
        "extra_float_digits",
        "--pool-size",
        "1",
    ]);
    for _ in 0..2 {
        bouncer.share_a_statement();
        let address = free_address().to_string();
        let stderr = must_fail(&["serve", "--bind", &address, "--database-url", &bouncer.url]);
        assert!(
            stderr.contains("start with --database-pooler transaction")
                && stderr.contains("prepared statement \"sqlx_s_1\" already exists"),
            "{stderr}"
        );
    }
    bouncer.share_a_statement();
    let stderr = must_fail(&["user", "list", "--database-url", &bouncer.url]);
    assert!(
        stderr.contains("start with --database-pooler transaction"),
        "{stderr}"
    );

    let server = Server::start_on(
        &bouncer.url,
        &[
            "--database-pooler",
            "transaction",
            "--database-migrate-url",
            &direct,
        ],
    );
    let name = unique("pgbflag");
    let cookie = signup_and_login(&server, &name, PASSWORD).await;
    assert_eq!(home_with_cookie(&server, &cookie).await, StatusCode::OK);
}

/// The shared PgBouncer does not ignore `extra_float_digits`: without
/// `--database-pooler transaction` the server stops at connect, naming the flag; and a
/// migrate URL through PgBouncer is refused as such.
#[test]
fn without_the_pooler_flag_pgbouncer_refusing_a_parameter_is_named() {
    let Some((bouncer, _)) = urls() else {
        return;
    };
    let address = free_address().to_string();
    let stderr = must_fail(&["serve", "--bind", &address, "--database-url", &bouncer]);
    assert!(
        stderr.contains("start with --database-pooler transaction")
            && stderr.contains("unsupported startup parameter"),
        "{stderr}"
    );
    let stderr = must_fail(&[
        "serve",
        "--bind",
        &address,
        "--database-url",
        &bouncer,
        "--database-pooler",
        "transaction",
        "--database-migrate-url",
        &bouncer,
    ]);
    assert!(
        stderr.contains("--database-migrate-url goes through PgBouncer"),
        "{stderr}"
    );
}
