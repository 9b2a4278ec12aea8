//! The seed's JSON flow over real HTTP against the real `latchkey` binary.

mod common;

use common::flows::{home_answer, home_with_cookie, login, login_status, post_response};
use common::{bare_client, cli, client, cookie_value, session_cookie, set_cookie_headers, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

async fn signup(client: &reqwest::Client, server: &Server, name: &str, email: Option<&str>) {
    let mut body = json!({ "username": name, "password": PASSWORD });
    if let Some(email) = email {
        body["email"] = json!(email);
    }
    let response = post_response(client, server, "/signup", body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "message": "User account has been created." })
    );
}

#[tokio::test]
async fn signup_login_home_logout_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = client();
    signup(&browser, &server, "foo", Some("foo@example.com")).await;

    let (status, body) = home_answer(&browser, &server).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({ "error": "I can't let you do that" }));

    let response = login(&browser, &server, "foo", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "message": "Logged in" })
    );

    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let response = browser
            .request(method, server.url("/home"))
            .send()
            .await
            .expect("home");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({ "message": "Hello, foo" })
        );
    }

    let response = post_response(&browser, &server, "/logout", json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let removal = session_cookie(&response, "id").expect("logout expires the cookie");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "message": "Logged out" })
    );
    assert_eq!(
        home_answer(&browser, &server).await.0,
        StatusCode::UNAUTHORIZED
    );

    let response = post_response(&browser, &server, "/logout", json!({})).await;
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "message": "Not logged in" })
    );
}

#[tokio::test]
async fn login_by_email_is_case_insensitive_and_usernames_are_unique() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = client();
    signup(&browser, &server, "Grover", Some("grover@example.com")).await;

    for taken in ["grover", "GROVER"] {
        let response = post_response(
            &browser,
            &server,
            "/signup",
            json!({ "username": taken, "password": PASSWORD }),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({ "error": format!("Username {taken} is not available.") })
        );
    }
    let response = post_response(
        &browser,
        &server,
        "/signup",
        json!({ "username": "ernie", "password": PASSWORD, "email": "GROVER@example.com" }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);

    assert_eq!(
        login_status(&browser, &server, "Grover@Example.com", PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(
        home_answer(&browser, &server).await.1,
        json!({ "message": "Hello, Grover" })
    );
    let other = client();
    assert_eq!(
        login_status(&other, &server, "grover", PASSWORD).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_password_unknown_and_disabled_users_get_the_same_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = client();
    signup(&browser, &server, "bert", None).await;
    signup(&browser, &server, "ernie", None).await;
    let (ok, _, stderr) = cli(
        &[
            "user",
            "disable",
            "ernie",
            "--database-url",
            &server.database_url,
        ],
        "",
    );
    assert!(ok, "{stderr}");

    let expected = json!({ "error": "Invalid username or password" });
    for (name, password) in [
        ("bert", "wrong password!"),
        ("nobody", PASSWORD),
        ("ernie", PASSWORD),
    ] {
        let response = post_response(
            &browser,
            &server,
            "/login",
            json!({ "username": name, "password": password }),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            set_cookie_headers(&response).is_empty(),
            "no session for a failed login"
        );
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            expected,
            "{name}"
        );
    }
}

#[tokio::test]
async fn token_changes_at_login_and_old_cookies_die() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--session-store", "database"]);
    let browser = client();
    signup(&browser, &server, "foo", None).await;

    let first =
        session_cookie(&login(&browser, &server, "foo", PASSWORD).await, "id").expect("cookie");
    let first_token = cookie_value(&first);
    assert_eq!(first_token.len(), 43, "32 random bytes as base64url");
    assert!(first.contains("HttpOnly"), "{first}");
    assert!(first.contains("SameSite=Lax"), "{first}");
    assert!(first.contains("Path=/"), "{first}");
    assert!(!first.contains("Secure"), "plain http on loopback: {first}");
    assert!(
        !first.contains("Max-Age"),
        "a browser-session cookie: {first}"
    );

    // Logging in again (same browser) rotates the token; the old one is dead at once.
    let second =
        session_cookie(&login(&browser, &server, "foo", PASSWORD).await, "id").expect("cookie");
    let second_token = cookie_value(&second);
    assert_ne!(first_token, second_token);
    assert_eq!(
        home_with_cookie(&server, &format!("id={first_token}")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        home_with_cookie(&server, &format!("id={second_token}")).await,
        StatusCode::OK
    );

    // The database holds only the SHA-256 of the token.
    let db = std::fs::read(dir.path().join("latchkey.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("latchkey.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes
                .windows(43)
                .any(|window| window == second_token.as_bytes()),
            "raw token found in the database"
        );
    }

    // Logout kills the token even when a copy is replayed.
    let response = bare_client()
        .post(server.url("/logout"))
        .header("cookie", format!("id={second_token}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        home_with_cookie(&server, &format!("id={second_token}")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn https_public_url_gives_secure_host_cookies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--public-url", "https://login.example.com"]);
    let browser = bare_client();
    signup(&browser, &server, "foo", None).await;
    let response = login(&browser, &server, "foo", PASSWORD).await;
    let cookie = session_cookie(&response, "__Host-id").expect("__Host- cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
}

#[tokio::test]
async fn tampered_truncated_and_oversized_cookies_are_no_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = client();
    signup(&browser, &server, "foo", None).await;
    let token = cookie_value(
        &session_cookie(&login(&browser, &server, "foo", PASSWORD).await, "id").expect("cookie"),
    );

    let mut flipped = token.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let cases = [
        format!("id={flipped}"),
        format!("id={}", &token[..42]),
        format!("id={token}x"),
        format!("id={}", "A".repeat(43)),
        format!("id={}", "x".repeat(8000)),
        "id=".to_string(),
        "id=%00%ff".to_string(),
        format!("id={}", "é".repeat(30)),
        "garbage without equals".to_string(),
    ];
    for cookie in &cases {
        assert_eq!(
            home_with_cookie(&server, cookie).await,
            StatusCode::UNAUTHORIZED,
            "cookie {:.60}",
            cookie
        );
    }
    // A 200 KB cookie is no session either: answered 401, never a 5xx and never a
    // dropped connection (a dropped one used to pass unnoticed).
    let response = bare_client()
        .get(server.url("/home"))
        .header("cookie", format!("id={}", "x".repeat(200_000)))
        .send()
        .await
        .expect("an answer to a 200 KB cookie, not a dropped connection");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The genuine token still works after all that.
    assert_eq!(
        home_with_cookie(&server, &format!("id={token}")).await,
        StatusCode::OK
    );
}

/// Path, content type, body, expected status, text the error must mention.
type BadBody = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
    &'static str,
);

#[tokio::test]
async fn bad_bodies_get_clear_4xx_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let http = bare_client();
    let send = |path: &'static str, content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = http.post(server.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json_type = Some("application/json");
    let cases: Vec<BadBody> = vec![
        (
            "/login",
            json_type,
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
            "Please specify username and password",
        ),
        (
            "/login",
            json_type,
            br#"{"username":"foo"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "Please specify username and password",
        ),
        (
            "/login",
            json_type,
            br#"{"password":"foo"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "Please specify username and password",
        ),
        (
            "/login",
            json_type,
            br#"{"username":"","password":""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "Please specify username and password",
        ),
        (
            "/login",
            json_type,
            br#"{"username":"foo""#.to_vec(),
            StatusCode::BAD_REQUEST,
            "parse",
        ),
        (
            "/login",
            json_type,
            br#"{"username":5,"password":"x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "username",
        ),
        (
            "/login",
            json_type,
            br#"[1,2]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "deserialize",
        ),
        (
            "/login",
            None,
            br#"{"username":"a","password":"b"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            "/login",
            Some("text/plain"),
            br#"{"username":"a","password":"b"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            "/login",
            json_type,
            vec![0xff, 0xfe, 0x00],
            StatusCode::BAD_REQUEST,
            "parse",
        ),
        (
            "/login",
            json_type,
            format!(r#"{{"username":"{}","password":"x"}}"#, "a".repeat(70_000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
        (
            "/signup",
            json_type,
            br#"{"password":"long enough password"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "username",
        ),
        (
            "/signup",
            json_type,
            br#"{"username":"a b","password":"long enough password"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "username",
        ),
        (
            "/signup",
            json_type,
            br#"{"username":"ab"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "password",
        ),
        (
            "/signup",
            json_type,
            br#"{"username":"ab","password":"short"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "at least 12",
        ),
        (
            "/signup",
            json_type,
            br#"{"username":"ab","password":"long enough password","email":"nope"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "email",
        ),
        (
            "/signup",
            json_type,
            br#"{"username":"ab","password":"long enough password","is_admin":true}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "is_admin",
        ),
    ];
    for (path, content_type, body, status, needle) in cases {
        let response = send(path, content_type, body).await.expect("request");
        assert_eq!(response.status(), status, "{path} {needle}");
        let body: Value = response.json().await.expect("json error body");
        let message = body["error"].as_str().expect("error text").to_string();
        let field = body["field"].as_str().unwrap_or_default().to_string();
        assert!(
            message.contains(needle) || field.contains(needle),
            "{path}: {message:?} should mention {needle:?}"
        );
    }
    // Nothing was created by any of the refused sign-ups.
    let (ok, stdout, _) = cli(
        &["user", "list", "--database-url", &server.database_url],
        "",
    );
    assert!(ok);
    assert_eq!(stdout.lines().count(), 1, "only the header line: {stdout}");

    let response = http.get(server.url("/nowhere")).send().await.expect("404");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = http.put(server.url("/login")).send().await.expect("405");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn sessions_survive_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let address = server.address;
    let browser = client();
    signup(&browser, &server, "foo", None).await;
    let token = cookie_value(
        &session_cookie(&login(&browser, &server, "foo", PASSWORD).await, "id").expect("cookie"),
    );
    server.stop();

    let server = Server::start_at(dir.path(), address, &[]);
    let response = bare_client()
        .get(server.url("/home"))
        .header("cookie", format!("id={token}"))
        .send()
        .await
        .expect("home after restart");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "message": "Hello, foo" })
    );
}

#[tokio::test]
async fn idle_sessions_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &["--idle-timeout", "3s", "--session-store", "memory"],
    );
    let browser = client();
    signup(&browser, &server, "foo", None).await;
    assert_eq!(
        login_status(&browser, &server, "foo", PASSWORD).await,
        StatusCode::OK
    );
    // Activity inside the idle window keeps it alive past the window's length…
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        assert_eq!(home_answer(&browser, &server).await.0, StatusCode::OK);
    }
    // …and silence past it ends it.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert_eq!(
        home_answer(&browser, &server).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn absolute_timeout_ends_even_active_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--absolute-timeout", "3s"]);
    let browser = client();
    signup(&browser, &server, "foo", None).await;
    assert_eq!(
        login_status(&browser, &server, "foo", PASSWORD).await,
        StatusCode::OK
    );
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(1500) {
        assert_eq!(home_answer(&browser, &server).await.0, StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    assert_eq!(
        home_answer(&browser, &server).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn cli_manages_users_and_ends_their_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    for store in ["database", "memory"] {
        let store_dir = dir.path().join(store);
        std::fs::create_dir_all(&store_dir).expect("dir");
        let server = Server::start(&store_dir, &["--session-store", store]);
        let url = server.database_url.clone();
        let (ok, stdout, stderr) = cli(
            &[
                "user",
                "add",
                "bert",
                "--email",
                "bert@example.com",
                "--password-stdin",
                "--database-url",
                &url,
            ],
            &format!("{PASSWORD}\n"),
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("created user bert"), "{stdout}");
        let (ok, _, stderr) = cli(
            &[
                "user",
                "add",
                "BERT",
                "--password-stdin",
                "--database-url",
                &url,
            ],
            &format!("{PASSWORD}\n"),
        );
        assert!(!ok);
        assert!(
            stderr.contains("Username BERT is not available."),
            "{stderr}"
        );
        let (ok, _, stderr) = cli(
            &[
                "user",
                "add",
                "shorty",
                "--password-stdin",
                "--database-url",
                &url,
            ],
            "short\n",
        );
        assert!(!ok);
        assert!(stderr.contains("at least 12"), "{stderr}");

        let (ok, stdout, _) = cli(&["user", "list", "--database-url", &url], "");
        assert!(ok);
        assert!(
            stdout.contains("bert")
                && stdout.contains("bert@example.com")
                && stdout.contains("active"),
            "{stdout}"
        );

        let browser = client();
        assert_eq!(
            login_status(&browser, &server, "bert", PASSWORD).await,
            StatusCode::OK
        );
        assert_eq!(home_answer(&browser, &server).await.0, StatusCode::OK);

        let new_password = "a brand new password";
        let (ok, stdout, stderr) = cli(
            &[
                "user",
                "passwd",
                "bert",
                "--password-stdin",
                "--database-url",
                &url,
            ],
            &format!("{new_password}\n"),
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("password changed"), "{stdout}");
        // The memory store lives in the server process: the credential version check ends
        // the session once the server's user cache (2 s) has expired.
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert_eq!(
            home_answer(&browser, &server).await.0,
            StatusCode::UNAUTHORIZED,
            "{store}: passwd ends sessions"
        );
        assert_eq!(
            login_status(&browser, &server, "bert", PASSWORD).await,
            StatusCode::UNAUTHORIZED
        );
        let response = post_response(
            &browser,
            &server,
            "/login",
            json!({ "username": "bert", "password": new_password }),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(home_answer(&browser, &server).await.0, StatusCode::OK);

        let (ok, _, stderr) = cli(&["user", "disable", "bert", "--database-url", &url], "");
        assert!(ok, "{stderr}");
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert_eq!(
            home_answer(&browser, &server).await.0,
            StatusCode::UNAUTHORIZED,
            "{store}: disable ends sessions"
        );
        let (ok, stdout, _) = cli(&["user", "list", "--database-url", &url], "");
        assert!(ok && stdout.contains("disabled"), "{stdout}");
        let (ok, _, stderr) = cli(
            &[
                "user",
                "passwd",
                "nobody",
                "--password-stdin",
                "--database-url",
                &url,
            ],
            &format!("{PASSWORD}\n"),
        );
        assert!(!ok && stderr.contains("no user named"), "{stderr}");
    }
}

#[tokio::test]
async fn refuses_plain_http_on_public_address() {
    let (ok, _, stderr) = cli(
        &[
            "serve",
            "--bind",
            "0.0.0.0:0",
            "--database-url",
            "sqlite::memory:",
        ],
        "",
    );
    assert!(!ok);
    assert!(stderr.contains("refusing to serve plain http"), "{stderr}");
}

#[tokio::test]
async fn cli_lists_and_revokes_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let url = server.database_url.clone();
    let phone = client();
    signup(&phone, &server, "bert", None).await;
    signup(&phone, &server, "ernie", None).await;
    assert_eq!(
        login_status(&phone, &server, "bert", PASSWORD).await,
        StatusCode::OK
    );
    let laptop = client();
    assert_eq!(
        login_status(&laptop, &server, "bert", PASSWORD).await,
        StatusCode::OK
    );
    let other = client();
    assert_eq!(
        login_status(&other, &server, "ernie", PASSWORD).await,
        StatusCode::OK
    );

    let (ok, stdout, stderr) = cli(
        &["session", "list", "--user", "bert", "--database-url", &url],
        "",
    );
    assert!(ok, "{stderr}");
    let ids: Vec<String> = stdout
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().next().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{stdout}");
    let (ok, stdout, _) = cli(&["session", "list", "--database-url", &url], "");
    assert!(ok);
    assert_eq!(stdout.lines().count(), 4, "header + 3 sessions: {stdout}");

    // Revoke one of bert's sessions by id: exactly one of his browsers is logged out.
    let (ok, _, stderr) = cli(&["session", "revoke", &ids[0], "--database-url", &url], "");
    assert!(ok, "{stderr}");
    let statuses = [
        home_answer(&phone, &server).await.0,
        home_answer(&laptop, &server).await.0,
    ];
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::OK)
            .count(),
        1,
        "{statuses:?}"
    );
    let (ok, _, stderr) = cli(&["session", "revoke", &ids[0], "--database-url", &url], "");
    assert!(!ok && stderr.contains("no session"), "{stderr}");
    let (ok, _, stderr) = cli(
        &["session", "revoke", "not-an-id", "--database-url", &url],
        "",
    );
    assert!(!ok && stderr.contains("not a session id"), "{stderr}");

    // Revoke all of bert's: both logged out, ernie untouched.
    let (ok, stdout, stderr) = cli(
        &[
            "session",
            "revoke",
            "--user",
            "bert",
            "--database-url",
            &url,
        ],
        "",
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("revoked 1 session(s)"), "{stdout}");
    assert_eq!(
        home_answer(&phone, &server).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        home_answer(&laptop, &server).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(home_answer(&other, &server).await.0, StatusCode::OK);
}
