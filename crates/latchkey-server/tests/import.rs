//! `latchkey user import`: users from Flask, Django and bcrypt systems log in with their
//! old passwords (and get argon2id hashes); a file with bad rows imports nothing and
//! names every bad line.

mod common;

use common::flows::login_status;
use common::{bare_client, cli, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The committed vectors (tests/data/legacy_hashes.json at the workspace root).
fn vectors() -> Vec<(String, String, String)> {
    let data: Value =
        serde_json::from_str(include_str!("../../../tests/data/legacy_hashes.json")).expect("json");
    data["hashes"]
        .as_array()
        .expect("hashes")
        .iter()
        .filter(|row| row["format"] != "bcrypt 72 bytes")
        .map(|row| {
            let field = |name: &str| row[name].as_str().expect(name).to_string();
            (field("format"), field("password"), field("hash"))
        })
        .collect()
}

#[tokio::test]
async fn imported_users_log_in_with_their_old_passwords() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = common::database_url(dir.path());
    let vectors = vectors();
    let lines: Vec<String> = vectors
        .iter()
        .enumerate()
        .map(|(index, (_, _, hash))| {
            json!({ "username": format!("old{index}"), "email": format!("old{index}@example.com"), "password_hash": hash })
                .to_string()
        })
        .collect();
    let file = dir.path().join("users.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let file_text = file.display().to_string();
    let (ok, stdout, stderr) = cli(
        &["user", "import", &file_text, "--database-url", &database],
        "",
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("imported {} user(s)", vectors.len())),
        "{stdout}"
    );

    let server = Server::start(dir.path(), &["--login-ip-burst", "1000"]);
    for (index, (format, password, _)) in vectors.iter().enumerate() {
        let name = format!("old{index}");
        assert_eq!(
            login_status(&bare_client(), &server, &name, password).await,
            StatusCode::OK,
            "{format}"
        );
        // Now argon2id: the same password still works, by email too.
        assert_eq!(
            login_status(
                &bare_client(),
                &server,
                &format!("{name}@example.com"),
                password
            )
            .await,
            StatusCode::OK,
            "{format}"
        );
    }
    let (ok, stdout, _) = cli(&["user", "list", "--database-url", &database], "");
    assert!(ok && stdout.contains("old0"), "{stdout}");
}

#[tokio::test]
async fn one_bad_row_imports_nothing_and_every_bad_line_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = common::database_url(dir.path());
    let good = &vectors()[0].2;
    let csv = format!(
        "username,email,password_hash\n\
         alice,alice@example.com,{good}\n\
         bad name,,{good}\n\
         carol,,not-a-hash\n\
         ALICE,,{good}\n\
         dave,dave@,{good}\n\
         erin,,scrypt:1073741824:8:1$salt$00\n\
         frank,frank@example.com,{good}\n"
    );
    let file = dir.path().join("users.csv");
    std::fs::write(&file, csv).expect("write");
    let file_text = file.display().to_string();
    let (ok, _, stderr) = cli(
        &["user", "import", &file_text, "--database-url", &database],
        "",
    );
    assert!(!ok);
    assert!(stderr.contains("rejected 5 of 7 row(s)"), "{stderr}");
    for line in [3, 4, 5, 6, 7] {
        assert!(
            stderr.contains(&format!("line {line}:")),
            "line {line} not named:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("line 2:") && !stderr.contains("line 8:"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing imported"), "{stderr}");
    let (_, stdout, _) = cli(&["user", "list", "--database-url", &database], "");
    assert!(
        !stdout.contains("alice") && !stdout.contains("frank"),
        "{stdout}"
    );

    // A name already in the database is named too, and so is a look-alike of it.
    let (ok, _, stderr) = cli(
        &[
            "user",
            "add",
            "frank",
            "--password-stdin",
            "--database-url",
            &database,
        ],
        "a fine long passphrase\n",
    );
    assert!(ok, "{stderr}");
    let file = dir.path().join("again.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n",
            json!({ "username": "Frank", "password_hash": good }),
            json!({ "username": "fr\u{430}nk", "password_hash": good }),
        ),
    )
    .expect("write");
    let file_text = file.display().to_string();
    let (ok, _, stderr) = cli(
        &["user", "import", &file_text, "--database-url", &database],
        "",
    );
    assert!(
        !ok && stderr.contains("line 1:")
            && stderr.contains("line 2:")
            && stderr.contains("already taken"),
        "{stderr}"
    );
}
