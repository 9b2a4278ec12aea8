//! The server's files on disk: private modes for the database (and its WAL and
//! shared-memory files) and the secret key file, with a warning at start for a file
//! others can read.

mod common;

use common::{signup_and_login, Server};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
