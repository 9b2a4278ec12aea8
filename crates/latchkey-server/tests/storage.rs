//! The server's files on disk: private modes for the database (and its WAL and
//! shared-memory files) and the secret key file, with a warning at start for a file
//! others can read; a full disk that the server gets over by itself.

mod common;

use common::flows::home_with_cookie;
use common::{bare_client, signup_and_login, Server};
use latchkey::store::JOURNAL_SIZE_LIMIT;
use reqwest::StatusCode;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

/// The permission bits of `file`.
fn mode(file: &Path) -> u32 {
    std::fs::metadata(file)
        .unwrap_or_else(|error| panic!("{}: {error}", file.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn database_and_key_files_are_private_and_shared_ones_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    // Writes go through the WAL: sign-up, login.
    signup_and_login(&server, "files", PASSWORD).await;
    for name in [
        "latchkey.db",
        "latchkey.db-wal",
        "latchkey.db-shm",
        "latchkey.db.key",
    ] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
    server.stop();

    // Files made readable by everyone (a copy, a restore from a backup): the server
    // says so at start, naming each.
    for name in ["latchkey.db", "latchkey.db.key"] {
        let file = dir.path().join(name);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let log = dir.path().join("server.log");
    let server = Server::start_logging(dir.path(), &[], &log);
    server.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("chmod 600"))
        .collect();
    let db = dir.path().join("latchkey.db").display().to_string();
    let key = dir.path().join("latchkey.db.key").display().to_string();
    assert!(
        warnings
            .iter()
            .any(|line| line.contains(&format!("{db} ")) || line.ends_with(&db)),
        "no warning for the database file in {text}"
    );
    assert!(
        warnings.iter().any(|line| line.contains(&key)),
        "no warning for the key file in {text}"
    );
}

/// A tmpfs of a few MiB mounted on a fresh directory (root only), unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None`, with a printed line, when this process cannot mount one (not root); a
    /// panic instead under `LATCHKEY_REQUIRE_SERVICES` (CI runs as root).
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        if mounted {
            return Some(SmallDisk { dir });
        }
        assert!(
            std::env::var("LATCHKEY_REQUIRE_SERVICES").is_err(),
            "cannot mount a tmpfs (needs root), and LATCHKEY_REQUIRE_SERVICES is set"
        );
        println!("skipped: cannot mount a small tmpfs to fill (needs root)");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// `POST /login` as `name` from a client whose user agent fills its 256 characters
/// (the largest record a login writes): the status, and the session cookie if any.
async fn login(url: &str, client: &reqwest::Client, name: &str) -> (StatusCode, String) {
    let response = client
        .post(url)
        .json(&serde_json::json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .expect("the server answers even on a full disk");
    let cookie = common::session_cookie(&response, "id")
        .map(|header| format!("id={}", common::cookie_value(&header)))
        .unwrap_or_default();
    (response.status(), cookie)
}

/// The files in `dir` and their sizes, and the space left, for failure messages.
fn listing(dir: &Path) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("ls -l {0}; df {0}", dir.display()))
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned());
    output.unwrap_or_default()
}

/// The WAL's size now (0 when there is none).
fn wal_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("latchkey.db-wal")).map_or(0, |metadata| metadata.len())
}

/// The attack: logins until the disk is full. The server answers 503 (never a panic,
/// never another error) while it is, the WAL never outgrows its limit, and once the
/// sessions expire the sweep frees space (it deletes the reserve file to make room for
/// its own `DELETE`) and logins work again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_gives_503_and_the_sweep_brings_logins_back() {
    let Some(disk) = SmallDisk::mount("6m") else {
        return;
    };
    // Sessions die 2 s after their login; the sweep runs every 25 s. However long the
    // disk takes to fill on this machine (the sweep may run while it fills: it frees
    // pages inside the database, not disk space), the next sweep after it is full is
    // at most 25 s away: that is the one waited for, not an assumed speed.
    const SWEEP_EVERY: Duration = Duration::from_secs(25);
    let started = Instant::now();
    let server = Server::start(
        disk.path(),
        &["--idle-timeout", "2s", "--cleanup-interval", "25s"],
    );
    // One account per concurrent login (one account's attempts are taken one at a time).
    let names: Vec<String> = (0..16).map(|n| format!("filler{n}")).collect();
    for name in &names {
        let signup = bare_client()
            .post(server.url("/signup"))
            .json(&serde_json::json!({ "username": name, "password": PASSWORD }))
            .send()
            .await
            .expect("signup");
        assert_eq!(signup.status(), StatusCode::CREATED);
    }
    let name = names[0].as_str();

    let client = reqwest::Client::builder()
        .user_agent("x".repeat(256))
        .build()
        .expect("client");
    let login_url = server.url("/login");
    let mut logins = 0;
    loop {
        let mut batch = tokio::task::JoinSet::new();
        for name in &names {
            let (url, client, name) = (login_url.clone(), client.clone(), name.clone());
            batch.spawn(async move { login(&url, &client, &name).await.0 });
        }
        let statuses = batch.join_all().await;
        for status in &statuses {
            assert!(
                [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(status),
                "a login on a filling disk answered {status}"
            );
        }
        logins += statuses.len();
        assert!(
            wal_bytes(disk.path()) <= JOURNAL_SIZE_LIMIT,
            "the WAL outgrew its limit: {} bytes",
            wal_bytes(disk.path())
        );
        if statuses
            .iter()
            .all(|status| *status == StatusCode::SERVICE_UNAVAILABLE)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the disk was not full after {logins} logins in {:?}",
            started.elapsed()
        );
    }
    let (status, _) = login(&login_url, &client, name).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "the disk is full");
    println!(
        "the disk was full after {logins} logins, {:?} after the start",
        started.elapsed()
    );

    // The attack is over; the sessions expire and the next sweep runs: logins come back.
    let deadline = Instant::now() + SWEEP_EVERY + Duration::from_secs(45);
    let cookie = loop {
        let (status, cookie) = login(&login_url, &client, name).await;
        if status == StatusCode::OK {
            break cookie;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            Instant::now() < deadline,
            "logins never came back after {logins} logins filled the disk"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(home_with_cookie(&server, &cookie).await, StatusCode::OK);
    assert!(wal_bytes(disk.path()) <= JOURNAL_SIZE_LIMIT);
    for n in 0..20 {
        let status = login(&login_url, &client, name).await.0;
        assert_eq!(
            status,
            StatusCode::OK,
            "login {n} after the sweep: {}",
            listing(disk.path())
        );
    }
}
