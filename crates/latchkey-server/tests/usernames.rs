//! Look-alike user names over HTTP against the real binary (issue 15, item 10): once
//! `admin` exists, every name that looks like it (Cyrillic а, dotless ı, fullwidth
//! letters, other case, zero-width space, right-to-left override) is refused as taken
//! or invalid, NFC and NFD spellings are one name, two racing sign-ups of look-alikes
//! cannot both win, any form of a name logs in, and users stored before names were
//! normalised keep working.

mod common;

use common::flows::{login_status, post};
use common::{
    bare_client, cli, count_of, database_url, free_address, last_byte_burst, raw_json_post, Server,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

async fn sign_up(server: &Server, username: &str) -> (StatusCode, Value) {
    post(
        &bare_client(),
        server,
        "/signup",
        json!({ "username": username, "password": PASSWORD }),
    )
    .await
}

/// The usernames `latchkey user list` shows for the database in `dir`.
fn listed_users(dir: &std::path::Path) -> Vec<String> {
    let (ok, stdout, stderr) = cli(&["user", "list", "--database-url", &database_url(dir)], "");
    assert!(ok, "{stderr}");
    stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

#[tokio::test]
async fn look_alikes_of_an_existing_name_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--signups-per-ip-hourly", "100"]);
    assert_eq!(sign_up(&server, "admin").await.0, StatusCode::CREATED);
    assert_eq!(sign_up(&server, "jos\u{e9}").await.0, StatusCode::CREATED);

    let taken = [
        ("\u{430}dmin", "Cyrillic а"),
        ("adm\u{131}n", "dotless ı"),
        ("\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}", "fullwidth"),
        ("ADMIN", "upper case"),
        ("Adm\u{131}n", "dotless ı, capital"),
        ("adrnin", "rn for m"),
        ("jose\u{301}", "NFD é"),
        ("JOS\u{c9}", "upper-case É"),
    ];
    for (name, what) in taken {
        let (status, body) = sign_up(&server, name).await;
        assert_eq!(status, StatusCode::CONFLICT, "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("is not available"), "{what}: {error}");
    }
    let invalid = [
        ("admin\u{200b}", "zero-width space"),
        ("ad\u{200d}min", "zero-width joiner"),
        ("\u{202e}nimda", "right-to-left override"),
        ("admin\u{2067}", "right-to-left isolate"),
    ];
    for (name, what) in invalid {
        let (status, body) = sign_up(&server, name).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["field"], "username", "{what}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("invisible or text-direction characters"),
            "{what}: {error}"
        );
    }
    // A fresh name with a direction control is refused too, not only look-alikes.
    let (status, _) = sign_up(&server, "\u{202e}toor").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Nothing was created but the two originals.
    server.stop();
    assert_eq!(listed_users(dir.path()), ["admin", "jos\u{e9}"]);
}

#[tokio::test]
async fn any_form_of_a_name_logs_in_and_is_stored_normalised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    // Signed up fullwidth and decomposed: stored as plain letters, composed.
    let (status, body) = sign_up(&server, "\u{ff2a}ose\u{301}").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for form in [
        "Jos\u{e9}",
        "jos\u{e9}",
        "JOSE\u{301}",
        "\u{ff2a}\u{ff2f}\u{ff33}\u{c9}",
    ] {
        assert_eq!(
            login_status(&bare_client(), &server, form, PASSWORD).await,
            StatusCode::OK,
            "{form:?}"
        );
    }
    // A look-alike from another script is another name: it does not log in.
    assert_eq!(
        login_status(&bare_client(), &server, "J\u{43e}s\u{e9}", PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    server.stop();
    assert_eq!(listed_users(dir.path()), ["Jos\u{e9}"]);
}

/// Two sign-ups of look-alike names at the same instant: the database's unique
/// skeleton lets exactly one in.
#[tokio::test]
async fn racing_look_alike_sign_ups_cannot_both_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = free_address();
    let server = Server::start_at(dir.path(), address, &["--signups-per-ip-hourly", "100"]);
    let names = [
        "root",
        "r\u{43e}\u{43e}t",
        "ro\u{3bf}t",
        "\u{ff52}\u{ff4f}\u{ff4f}\u{ff54}",
        "ROOT",
    ];
    let requests: Vec<Vec<u8>> = names
        .iter()
        .map(|name| {
            let body = json!({ "username": name, "password": PASSWORD }).to_string();
            raw_json_post("/signup", &body, &[])
        })
        .collect();
    let statuses = last_byte_burst(address, &requests).await;
    assert_eq!(count_of(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count_of(&statuses, 409), names.len() - 1, "{statuses:?}");
    server.stop();
    assert_eq!(listed_users(dir.path()).len(), 1);
}

/// Users stored before names were normalised (their key only lower-cased, no skeleton),
/// as a database from an earlier version holds them: at start the server re-keys them,
/// so any form of their name logs in and their look-alikes are refused; of two
/// look-alike accounts made before, the second keeps its old key and still logs in with
/// the name it was made with.
#[tokio::test]
async fn users_stored_before_normalisation_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    assert_eq!(sign_up(&server, "template").await.0, StatusCode::CREATED);
    server.stop();
    {
        let db = rusqlite::Connection::open(dir.path().join("latchkey.db")).expect("open");
        let hash: String = db
            .query_row(
                "SELECT password_hash FROM users WHERE username = 'template'",
                [],
                |row| row.get(0),
            )
            .expect("template hash");
        // What the old sign-up stored: the name as typed, its lower-case form as key.
        for name in ["\u{ff22}ert", "carol", "\u{441}arol", "Zo\u{eb}"] {
            db.execute(
                "INSERT INTO users (username, username_key, password_hash, created_at) \
                 VALUES (?1, ?2, ?3, 0)",
                rusqlite::params![name, name.to_lowercase(), hash],
            )
            .expect("insert legacy user");
        }
        db.execute(
            "UPDATE users SET username_skeleton = NULL WHERE username = 'template'",
            [],
        )
        .expect("template as a legacy row too");
    }
    let server = Server::start(dir.path(), &["--signups-per-ip-hourly", "100"]);
    // The fullwidth legacy name logs in as typed then, and in plain letters now.
    for form in [
        "\u{ff22}ert",
        "bert",
        "BERT",
        "template",
        "Zo\u{eb}",
        "zoe\u{308}",
    ] {
        assert_eq!(
            login_status(&bare_client(), &server, form, PASSWORD).await,
            StatusCode::OK,
            "{form:?}"
        );
    }
    // Its look-alikes are refused.
    for name in ["bert", "B\u{435}rt", "template", "zo\u{eb}"] {
        assert_eq!(
            sign_up(&server, name).await.0,
            StatusCode::CONFLICT,
            "{name:?}"
        );
    }
    // Both look-alike accounts made before still log in by the names they were made with.
    assert_eq!(
        login_status(&bare_client(), &server, "carol", PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(
        login_status(&bare_client(), &server, "\u{441}arol", PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(sign_up(&server, "CAROL").await.0, StatusCode::CONFLICT);
    assert_eq!(
        sign_up(&server, "c\u{430}rol").await.0,
        StatusCode::CONFLICT
    );
}

/// Emails are unique under the same normalisation as names (case, width, composition)
/// and refuse invisible characters. A sign-up with a registered email answers 409 (an
/// accepted disclosure, like the username's: there is no mail channel to answer
/// generically), so probing for registered emails is bounded by the per-address
/// sign-up cap, which counts every attempt.
#[tokio::test]
async fn emails_are_normalised_and_probing_them_is_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--signups-per-ip-hourly", "5"]);
    let anonymous = bare_client();
    let signup = |username: &'static str, email: &'static str| {
        post(
            &anonymous,
            &server,
            "/signup",
            json!({ "username": username, "email": email, "password": PASSWORD }),
        )
    };
    assert_eq!(
        signup("grover", "grover@example.com").await.0,
        StatusCode::CREATED
    );
    for (status, email) in [
        (StatusCode::CONFLICT, "GROVER@example.COM"),
        (StatusCode::CONFLICT, "\u{ff47}rover@example.com"),
        (StatusCode::BAD_REQUEST, "grover\u{200b}@example.com"),
    ] {
        let (answer, body) = signup("elmo", email).await;
        assert_eq!(answer, status, "{email:?}: {body}");
    }
    assert_eq!(
        login_status(
            &bare_client(),
            &server,
            "\u{ff27}rover@example.com",
            PASSWORD
        )
        .await,
        StatusCode::OK
    );
    // Five attempts counted: the sixth is refused whatever it holds.
    let (status, _) = signup("oscar", "oscar@example.com").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = signup("zoe", "zoe@example.com").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    server.stop();
    assert_eq!(listed_users(dir.path()), ["grover", "oscar"]);
}
