//! Personal access tokens and bearer sessions (issue 27), over HTTP against the real
//! binary: made in a browser, used by a script with `Authorization: Bearer`, limited by
//! their scopes, never able to change credentials, revoked at once in every process,
//! guessed ones throttled per address, ended by the credential table; sessions without
//! a cookie (`?session=token`), their second step and their logout.

mod common;

use common::flows::{enable_totp, now_secs, post, PASSWORD};
use common::{bare_client, cli, client, set_cookie_headers, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Signs `name` up and logs in (a fresh cookie login): the browser.
async fn browser_of(server: &Server, name: &str) -> reqwest::Client {
    let browser = client();
    let credentials = json!({ "username": name, "password": PASSWORD });
    let (status, body) = post(&browser, server, "/signup", credentials.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = post(&browser, server, "/login", credentials).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    browser
}

/// Makes a token from `browser` with `scopes`: the `201` answer.
async fn make_token(browser: &reqwest::Client, server: &Server, scopes: &[&str]) -> Value {
    let (status, body) = post(
        browser,
        server,
        "/account/tokens",
        json!({ "name": "ci", "scopes": scopes }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// `method path` with `Authorization: Bearer token` (and `body` as JSON): the whole
/// answer.
async fn with_bearer(
    server: &Server,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = bare_client()
        .request(method, server.url(path))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json");
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// The status and JSON body of `GET /home` with `token`.
async fn home_with(server: &Server, token: &str) -> (StatusCode, Value) {
    let response = with_bearer(server, token, Method::GET, "/home", None).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_token_made_in_a_browser_lets_a_script_in_without_a_cookie() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = browser_of(&server, "foo").await;
    let made = make_token(&browser, &server, &["read"]).await;
    let token = made["token"].as_str().expect("token");
    assert!(token.starts_with("lk_") && token.len() == 52, "{token}");
    assert_eq!(made["name"], "ci");
    assert_eq!(made["scopes"], json!(["read"]));
    assert!(made["expires_at"].is_string(), "tokens expire by default");

    let response = with_bearer(&server, token, Method::GET, "/home", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        set_cookie_headers(&response).is_empty(),
        "a bearer request gets no cookie"
    );
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "message": "Hello, foo" })
    );

    // The list shows its first characters and its last use, never the token.
    let listed = browser
        .get(server.url("/account/tokens"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("list");
    assert_eq!(listed.status(), StatusCode::OK);
    let text = listed.text().await.expect("text");
    assert!(!text.contains(token), "the list never shows a token");
    let listed: Value = serde_json::from_str(&text).expect("json");
    let row = &listed["tokens"][0];
    assert_eq!(row["id"], made["id"]);
    assert_eq!(row["prefix"].as_str(), Some(&token[..11]));
    assert!(row["last_used_at"].is_string(), "{row}");

    // A mistyped token is refused by its checksum; an unknown one by the lookup.
    let mut typo = token.to_string();
    typo.replace_range(20..21, if &token[20..21] == "a" { "b" } else { "a" });
    assert_eq!(home_with(&server, &typo).await.0, StatusCode::UNAUTHORIZED);
    let other = latchkey::access_token::AccessToken::generate();
    assert_eq!(
        home_with(&server, other.expose()).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn scopes_limit_what_a_token_may_do_and_no_token_changes_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = browser_of(&server, "scoped").await;
    let read = make_token(&browser, &server, &["read"]).await;
    let read = read["token"].as_str().expect("token");
    let write = make_token(&browser, &server, &["write"]).await;
    let write_id = write["id"].as_str().expect("id").to_string();
    let write = write["token"].as_str().expect("token");

    // POST /home is not a safe method: `read` may not, `write` may.
    let refused = with_bearer(&server, read, Method::POST, "/home", None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let allowed = with_bearer(&server, write, Method::POST, "/home", None).await;
    assert_eq!(allowed.status(), StatusCode::OK);

    // Nothing that changes how one gets in, whatever the scope: 403.
    let attempts = [
        (
            Method::POST,
            "/password".to_string(),
            Some(json!({ "current": PASSWORD, "new": "another long passphrase 7" })),
        ),
        (
            Method::POST,
            "/account/tokens".to_string(),
            Some(json!({ "name": "more", "scopes": ["write"] })),
        ),
        (Method::DELETE, format!("/account/tokens/{write_id}"), None),
        (Method::POST, "/account/totp".to_string(), None),
        (
            Method::POST,
            "/account/email".to_string(),
            Some(json!({ "email": "new@example.com" })),
        ),
        (Method::POST, "/sessions/revoke-others".to_string(), None),
    ];
    for (method, path, body) in attempts {
        let answer = with_bearer(&server, write, method.clone(), &path, body).await;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }
    // The token still works: nothing was changed or revoked.
    assert_eq!(home_with(&server, write).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_cookie_and_a_bearer_token_together_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let cookie = common::signup_and_login(&server, "both", PASSWORD).await;
    let browser = client();
    let (status, _) = post(
        &browser,
        &server,
        "/login",
        json!({ "username": "both", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = make_token(&browser, &server, &["read"]).await;
    let token = token["token"].as_str().expect("token");
    let response = bare_client()
        .get(server.url("/home"))
        .header("cookie", &cookie)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("home");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn revoking_a_token_refuses_it_at_once_in_every_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Server::start(dir.path(), &[]);
    let database = first.database_url.clone();
    let second = Server::start_on(&database, &[]);
    let browser = browser_of(&first, "revoker").await;
    let made = make_token(&browser, &first, &["read"]).await;
    let token = made["token"].as_str().expect("token");
    assert_eq!(home_with(&first, token).await.0, StatusCode::OK);
    assert_eq!(home_with(&second, token).await.0, StatusCode::OK);

    let id = made["id"].as_str().expect("id");
    let revoked = browser
        .delete(first.url(&format!("/account/tokens/{id}")))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(home_with(&second, token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(home_with(&first, token).await.0, StatusCode::UNAUTHORIZED);
    // Gone from the list; revoking it again finds nothing.
    let again = browser
        .delete(first.url(&format!("/account/tokens/{id}")))
        .send()
        .await
        .expect("revoke");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_command_line_makes_lists_and_revokes_tokens_and_expired_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let database = server.database_url.clone();
    browser_of(&server, "admin-made").await;
    let (ok, token, stderr) = cli(
        &[
            "token",
            "create",
            "admin-made",
            "--name",
            "deploy",
            "--scope",
            "read",
            "--expires-in",
            "30d",
            "--database-url",
            &database,
        ],
        "",
    );
    assert!(ok, "{stderr}");
    let token = token.trim();
    assert_eq!(home_with(&server, token).await.0, StatusCode::OK);

    let (ok, listed, stderr) = cli(
        &[
            "token",
            "list",
            "--user",
            "admin-made",
            "--database-url",
            &database,
        ],
        "",
    );
    assert!(ok, "{stderr}");
    assert!(
        listed.contains("deploy") && listed.contains(&token[..11]),
        "{listed}"
    );
    assert!(!listed.contains(token), "the list never shows a token");
    let id = listed
        .lines()
        .find(|line| line.contains("deploy"))
        .and_then(|line| line.split_whitespace().next())
        .expect("the token's row");

    let (ok, said, stderr) = cli(&["token", "revoke", id, "--database-url", &database], "");
    assert!(ok, "{said}{stderr}");
    assert_eq!(home_with(&server, token).await.0, StatusCode::UNAUTHORIZED);
    let (ok, _, _) = cli(&["token", "revoke", id, "--database-url", &database], "");
    assert!(!ok, "a revoked token is not revoked twice");

    // A token that lives one second is refused once it has expired.
    let (ok, short, stderr) = cli(
        &[
            "token",
            "create",
            "admin-made",
            "--name",
            "short",
            "--expires-in",
            "1s",
            "--database-url",
            &database,
        ],
        "",
    );
    assert!(ok, "{stderr}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        home_with(&server, short.trim()).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Made by nobody: unknown users and unknown scopes are refused, nothing is stored.
    let (ok, _, stderr) = cli(
        &[
            "token",
            "create",
            "admin-made",
            "--name",
            "bad",
            "--scope",
            "admin",
            "--database-url",
            &database,
        ],
        "",
    );
    assert!(!ok && stderr.contains("scope"), "{stderr}");
}

#[tokio::test]
async fn guessed_tokens_are_throttled_per_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--refused-tokens-per-ip-hourly", "5"]);
    let browser = browser_of(&server, "guessed").await;
    let made = make_token(&browser, &server, &["read"]).await;
    let token = made["token"].as_str().expect("token").to_string();

    // A good token used beyond its scope is no guess: ten of them count for nothing.
    for _ in 0..10 {
        let answer = with_bearer(&server, &token, Method::POST, "/home", None).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    }

    // A burst of guesses in parallel: each refused and counted; the one that uses up
    // the allowance is answered 429.
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let url = server.url("/home");
        guesses.spawn(async move {
            let guess = latchkey::access_token::AccessToken::generate();
            bare_client()
                .get(url)
                .header("authorization", format!("Bearer {}", guess.expose()))
                .send()
                .await
                .expect("home")
                .status()
        });
    }
    let statuses = guesses.join_all().await;
    let refused = |wanted| statuses.iter().filter(|status| **status == wanted).count();
    assert_eq!(
        (
            refused(StatusCode::UNAUTHORIZED),
            refused(StatusCode::TOO_MANY_REQUESTS)
        ),
        (4, 1),
        "{statuses:?}"
    );
    // Past the allowance, every bearer request from this address waits, even one with
    // a real token, and even a malformed one (no lookup is made for it).
    for bearer in [token.as_str(), "lk_not-even-a-token"] {
        let answer = with_bearer(&server, bearer, Method::GET, "/home", None).await;
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(answer.headers().contains_key("retry-after"));
    }
    // The browser's cookie is not a bearer request: it is served.
    assert_eq!(
        browser
            .get(server.url("/home"))
            .send()
            .await
            .expect("home")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_admin_ends_tokens_and_the_users_own_change_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let database = server.database_url.clone();
    let browser = browser_of(&server, "owner").await;
    let made = make_token(&browser, &server, &["read"]).await;
    let token = made["token"].as_str().expect("token");

    // The user's own password change (a fresh cookie login) keeps the token.
    let (status, body) = post(
        &browser,
        &server,
        "/password",
        json!({ "current": PASSWORD, "new": "another long passphrase 7" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(home_with(&server, token).await.0, StatusCode::OK);

    // The admin's `passwd` ends every token.
    let (ok, said, stderr) = cli(
        &[
            "user",
            "passwd",
            "owner",
            "--password-stdin",
            "--database-url",
            &database,
        ],
        "a third long passphrase 9\n",
    );
    assert!(ok, "{stderr}");
    assert!(said.contains("1 access token(s) revoked"), "{said}");
    assert_eq!(home_with(&server, token).await.0, StatusCode::UNAUTHORIZED);

    // So does `disable`, for a token made after the password was set.
    let browser = client();
    let (status, _) = post(
        &browser,
        &server,
        "/login",
        json!({ "username": "owner", "password": "a third long passphrase 9" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let made = make_token(&browser, &server, &["read"]).await;
    let token = made["token"].as_str().expect("token");
    assert_eq!(home_with(&server, token).await.0, StatusCode::OK);
    let (ok, _, stderr) = cli(
        &["user", "disable", "owner", "--database-url", &database],
        "",
    );
    assert!(ok, "{stderr}");
    assert_eq!(home_with(&server, token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bearer_session_is_a_session_without_a_cookie() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = browser_of(&server, "app").await;

    let login = bare_client()
        .post(server.url("/login?session=token"))
        .json(&json!({ "username": "app", "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    assert!(set_cookie_headers(&login).is_empty(), "no cookie is set");
    let body: Value = login.json().await.expect("json");
    assert_eq!(body["message"], "Logged in");
    let session = body["session_token"].as_str().expect("session_token");
    assert_eq!(
        home_with(&server, session).await,
        (StatusCode::OK, json!({ "message": "Hello, app" }))
    );

    // Listed among the user's sessions (seen from the browser), with its method.
    let (status, listed) =
        common::flows::call(&browser, &server, Method::GET, "/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // No ambient credential: a cross-site header does not stop it, as it stops cookies.
    let logout = bare_client()
        .post(server.url("/logout"))
        .header("authorization", format!("Bearer {session}"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(
        logout.json::<Value>().await.expect("json"),
        json!({ "message": "Logged out" })
    );
    assert_eq!(
        home_with(&server, session).await.0,
        StatusCode::UNAUTHORIZED
    );

    // An unknown way to hand out the session is refused.
    let odd = bare_client()
        .post(server.url("/login?session=carrier-pigeon"))
        .json(&json!({ "username": "app", "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(odd.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_bearer_sessions_second_step_answers_its_new_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = browser_of(&server, "twostep").await;
    let app = enable_totp(&browser, &server, "twostep").await;

    let first = bare_client()
        .post(server.url("/login?session=token"))
        .json(&json!({ "username": "twostep", "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(set_cookie_headers(&first).is_empty());
    let body: Value = first.json().await.expect("json");
    let pending = body["session_token"]
        .as_str()
        .expect("pending session_token");
    assert_eq!(
        home_with(&server, pending).await.0,
        StatusCode::UNAUTHORIZED
    );

    let second = with_bearer(
        &server,
        pending,
        Method::POST,
        "/login/second-factor",
        // The next step's code: the current one confirmed the app.
        Some(json!({ "code": app.code_at(now_secs() + 30) })),
    )
    .await;
    assert_eq!(second.status(), StatusCode::OK);
    let body: Value = second.json().await.expect("json");
    let session = body["session_token"].as_str().expect("new session_token");
    assert_ne!(session, pending, "the completed login has a new token");
    assert_eq!(home_with(&server, session).await.0, StatusCode::OK);
    assert_eq!(
        home_with(&server, pending).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_page_makes_a_token_shown_once_and_revokes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = browser_of(&server, "pages").await;
    let html = common::pages::page(&browser, &server, "/account/tokens").await;
    let csrf = common::pages::csrf_token(&html);
    let made = browser
        .post(server.url("/account/tokens"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "laptop"),
            ("access", "read"),
            ("expires_in_days", "30"),
        ])
        .send()
        .await
        .expect("make");
    assert_eq!(made.status(), StatusCode::CREATED);
    assert_eq!(
        made.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let html = made.text().await.expect("html");
    let start = html.find("value=\"lk_").expect("the token is shown") + 7;
    let token = &html[start..start + 52];
    assert_eq!(home_with(&server, token).await.0, StatusCode::OK);

    // Shown once: the list shows its first characters only.
    let again = common::pages::page(&browser, &server, "/account/tokens").await;
    assert!(!again.contains(token) && again.contains(&token[..11]));
    let id_start = again.find("/account/tokens/").expect("a revoke form") + 16;
    let id: String = again[id_start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    let csrf = common::pages::csrf_token(&again);
    let revoked = browser
        .post(server.url(&format!("/account/tokens/{id}/revoke")))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success() || revoked.status().is_redirection());
    assert_eq!(home_with(&server, token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_mailed_code_signs_in_to_a_bearer_session() {
    if !common::smtp::available() {
        return;
    }
    let sink = common::smtp::SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sink.url();
    let server = Server::start(dir.path(), &["--smtp-url", url.as_str()]);
    common::flows::sign_up(&server, "mailed", "mailed@example.com").await;
    let app = bare_client();
    let (status, _) = post(
        &app,
        &server,
        "/login/email",
        json!({ "email": "mailed@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mail = common::flows::mail(&sink, "mailed@example.com", "Your sign-in code");
    let code = common::flows::code_in(&mail);
    let answer = app
        .post(server.url("/login/email/verify?session=token"))
        .json(&json!({ "email": "mailed@example.com", "code": code }))
        .send()
        .await
        .expect("verify");
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(set_cookie_headers(&answer).is_empty(), "no cookie is set");
    let body: Value = answer.json().await.expect("json");
    let session = body["session_token"].as_str().expect("session_token");
    assert_eq!(
        home_with(&server, session).await,
        (StatusCode::OK, json!({ "message": "Hello, mailed" }))
    );
}
