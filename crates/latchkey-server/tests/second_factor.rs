//! Two-step login over HTTP against the real binary, with codes computed by the test
//! from the secret, as an authenticator app would: enrolment (wrong code, right code,
//! recovery codes), a login that waits for its second factor and nothing else, the same
//! code twice, clock skew, a recovery code once (and under a race), throttling and
//! expiry of the waiting login, remember-me only after the second factor, removal, the
//! account page, and the CLI.

mod common;

use common::flows::{home, post};
use common::pages::csrf_token;
use common::{cli, client, Server};
use latchkey::factors::Totp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PASSWORD: &str = "correct horse battery staple";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
}

/// Signs `name` up, logs in, enables TOTP; the client, the app and the recovery codes.
async fn enrolled(server: &Server, name: &str) -> (reqwest::Client, Totp, Vec<String>) {
    let browser = client();
    let (status, _) = post(
        &browser,
        server,
        "/signup",
        json!({ "username": name, "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = post(
        &browser,
        server,
        "/login",
        json!({ "username": name, "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let setup = browser
        .post(server.url("/account/totp"))
        .header("content-type", "application/json")
        .send()
        .await
        .expect("setup");
    assert_eq!(setup.status(), StatusCode::OK);
    let setup: Value = setup.json().await.expect("json");
    let secret = setup["secret"].as_str().expect("secret");
    assert!(setup["otpauth_uri"]
        .as_str()
        .expect("uri")
        .starts_with("otpauth://totp/"));
    let app = Totp::from_base32(secret, "latchkey", name).expect("the app imports the secret");
    let (status, body) = post(
        &browser,
        server,
        "/account/totp/confirm",
        json!({ "code": "000000x" }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("code"))
    );
    let (status, body) = post(
        &browser,
        server,
        "/account/totp/confirm",
        json!({ "code": app.code_at(now()) }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let codes: Vec<String> = serde_json::from_value(body["recovery_codes"].clone()).expect("codes");
    assert_eq!(codes.len(), 10);
    (browser, app, codes)
}

/// A new client whose password step passed for `name` (the 202).
async fn pending(server: &Server, name: &str, remember: bool) -> reqwest::Client {
    pending_in(client(), server, name, remember).await
}

/// `browser` after its password step passed for `name`.
async fn pending_in(
    browser: reqwest::Client,
    server: &Server,
    name: &str,
    remember: bool,
) -> reqwest::Client {
    let body = json!({ "username": name, "password": PASSWORD });
    let response = if remember {
        let login = browser
            .get(server.url("/login"))
            .header("accept", "text/html")
            .send()
            .await
            .expect("page");
        let html = login.text().await.expect("html");
        let csrf = csrf_token(&html);
        let form = browser
            .post(server.url("/login"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("username", name),
                ("password", PASSWORD),
                ("remember", "on"),
            ])
            .send()
            .await
            .expect("login form");
        assert_eq!(form.status(), StatusCode::OK);
        let page = form.text().await.expect("html");
        assert!(
            page.contains("action=\"/login/second-factor"),
            "the second step page: {page}"
        );
        return browser;
    } else {
        browser
            .post(server.url("/login"))
            .json(&body)
            .send()
            .await
            .expect("login")
    };
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["message"], json!("Second factor required"));
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    browser
}

#[tokio::test]
async fn a_login_with_totp_waits_for_a_code_that_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (first, app, _) = enrolled(&server, "ada").await;
    assert_eq!(
        home(&first, &server).await,
        StatusCode::OK,
        "this session stays"
    );
    let account: Value = first
        .get(server.url("/account"))
        .send()
        .await
        .expect("account")
        .json()
        .await
        .expect("json");
    assert_eq!(account["second_factors"], json!(["totp", "recovery_code"]));
    assert_eq!(account["recovery_codes_left"], json!(10));

    let waiting = pending(&server, "ada", false).await;
    assert_eq!(
        home(&waiting, &server).await,
        StatusCode::UNAUTHORIZED,
        "a waiting login is no login"
    );
    let (status, _) = post(
        &waiting,
        &server,
        "/login/second-factor",
        json!({ "code": "123" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The next step's code (one step of skew): the confirmation used this one.
    let code = app.code_at(now() + 30);
    let (status, body) = post(
        &waiting,
        &server,
        "/login/second-factor",
        json!({ "code": code }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(home(&waiting, &server).await, StatusCode::OK);
    let sessions: Value = waiting
        .get(server.url("/sessions"))
        .send()
        .await
        .expect("sessions")
        .json()
        .await
        .expect("json");
    let current = sessions["sessions"]
        .as_array()
        .expect("list")
        .iter()
        .find(|session| session["current"] == json!(true))
        .cloned()
        .expect("current");
    assert_eq!(
        current["method"],
        json!("password+totp"),
        "both methods are recorded"
    );

    // The same code again, on another login: refused.
    let again = pending(&server, "ada", false).await;
    let (status, _) = post(
        &again,
        &server,
        "/login/second-factor",
        json!({ "code": code }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a code counts once");
    // A code two steps back is beyond the skew.
    let (status, _) = post(
        &again,
        &server,
        "/login/second-factor",
        json!({ "code": app.code_at(now() - 60) }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nothing waits in a client that did not log in.
    let (status, body) = post(
        &client(),
        &server,
        "/login/second-factor",
        json!({ "code": app.code_at(now() + 30) }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("No login is waiting"));
}

#[tokio::test]
async fn recovery_codes_work_once_even_under_a_race() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &["--login-free-failures", "100", "--login-ip-burst", "1000"],
    );
    let (_, _, codes) = enrolled(&server, "bea").await;
    let waiting = pending(&server, "bea", false).await;
    let (status, _) = post(
        &waiting,
        &server,
        "/login/second-factor",
        json!({ "code": codes[0].to_uppercase() }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let again = pending(&server, "bea", false).await;
    let (status, _) = post(
        &again,
        &server,
        "/login/second-factor",
        json!({ "code": codes[0] }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "used");

    // Twenty waiting logins send one code at once: one gets in.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(pending(&server, "bea", false).await);
    }
    let racers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (url, code) = (server.url("/login/second-factor"), codes[1].clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({ "code": code }))
                    .send()
                    .await
                    .expect("code")
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.expect("racer"));
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::OK)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses.iter().all(|status| [
        StatusCode::OK,
        StatusCode::UNAUTHORIZED,
        StatusCode::TOO_MANY_REQUESTS
    ]
    .contains(status)));
}

#[tokio::test]
async fn wrong_codes_are_throttled_and_a_waiting_login_expires() {
    // The count first, with the default 5 minutes to wait: eight POSTs on a loaded
    // machine do not outlast the waiting login.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (_, _, _) = enrolled(&server, "cid").await;
    let waiting = pending(&server, "cid", false).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            post(
                &waiting,
                &server,
                "/login/second-factor",
                json!({ "code": "000000" }),
            )
            .await
            .0,
        );
    }
    assert_eq!(
        &statuses[..5],
        &[StatusCode::UNAUTHORIZED; 5],
        "{statuses:?}"
    );
    assert!(
        statuses[6..]
            .iter()
            .all(|status| *status == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--second-factor-timeout", "2s"]);
    let (_, app, _) = enrolled(&server, "dan").await;
    let waiting = pending(&server, "dan", false).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = post(
        &waiting,
        &server,
        "/login/second-factor",
        json!({ "code": app.code_at(now() + 30) }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired: {body}");
    assert_eq!(home(&waiting, &server).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn remember_me_is_given_only_after_the_second_factor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (_, app, _) = enrolled(&server, "eve").await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .build()
        .expect("client");
    let waiting = pending_in(browser, &server, "eve", true).await;
    let url = reqwest::Url::parse(&server.url("/")).expect("url");
    let cookies = |jar: &reqwest::cookie::Jar| {
        use reqwest::cookie::CookieStore;
        jar.cookies(&url)
            .map(|value| value.to_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert!(
        !cookies(&jar).contains("remember="),
        "no remember-me before the second factor"
    );
    assert_eq!(home(&waiting, &server).await, StatusCode::UNAUTHORIZED);
    let login = waiting
        .get(server.url("/login"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("page");
    let html = login.text().await.expect("html");
    let csrf = csrf_token(&html);
    let done = waiting
        .post(server.url("/login/second-factor"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("code", app.code_at(now() + 30).as_str()),
        ])
        .send()
        .await
        .expect("second step");
    assert!(done.url().path().ends_with("/home"), "{}", done.url());
    assert!(
        cookies(&jar).contains("remember="),
        "remember-me after it: {}",
        cookies(&jar)
    );
}

#[tokio::test]
async fn totp_is_removed_with_a_code_and_the_cli_shows_and_resets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (browser, app, codes) = enrolled(&server, "fay").await;
    let (ok, stdout, stderr) = cli(
        &["user", "mfa", "fay", "--database-url", &server.database_url],
        "",
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "fay: totp on, 10 recovery code(s) left, 0 passkey(s)"
    );
    let remove = |code: String| {
        let browser = browser.clone();
        let url = server.url("/account/totp");
        async move {
            browser
                .delete(url)
                .json(&json!({ "code": code }))
                .send()
                .await
                .expect("delete")
                .status()
        }
    };
    assert_eq!(remove("999999".into()).await, StatusCode::FORBIDDEN);
    assert_eq!(remove(app.code_at(now() + 30)).await, StatusCode::OK);
    let (status, _) = post(
        &client(),
        &server,
        "/login",
        json!({ "username": "fay", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a password alone again");
    assert!(!codes.is_empty());

    let (second, _, _) = enrolled(&server, "gus").await;
    drop(second);
    let (ok, stdout, stderr) = cli(
        &[
            "user",
            "mfa-reset",
            "gus",
            "--database-url",
            &server.database_url,
        ],
        "",
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("gus: second factors removed"), "{stdout}");
    let (status, _) = post(
        &client(),
        &server,
        "/login",
        json!({ "username": "gus", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn enabling_totp_ends_the_other_sessions_and_the_pages_show_a_qr_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let other = client();
    let (status, _) = post(
        &other,
        &server,
        "/signup",
        json!({ "username": "hal", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = post(
        &other,
        &server,
        "/login",
        json!({ "username": "hal", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let browser = client();
    let (status, _) = post(
        &browser,
        &server,
        "/login",
        json!({ "username": "hal", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let account = browser
        .get(server.url("/account"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("page");
    let html = account.text().await.expect("html");
    assert!(html.contains("Set up an authenticator app"), "{html}");
    let csrf = csrf_token(&html);
    let setup = browser
        .post(server.url("/account/totp"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("setup form");
    assert_eq!(setup.status(), StatusCode::OK);
    let page = setup.text().await.expect("html");
    assert!(page.contains("<svg"), "a QR code drawn on the server");
    let start = page.find("id=\"totp-secret\">").expect("secret") + 17;
    let secret: String = page[start..].chars().take_while(|c| *c != '<').collect();
    let app = Totp::from_base32(&secret, "latchkey", "hal").expect("secret");
    let confirmed = browser
        .post(server.url("/account/totp/confirm"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("code", app.code_at(now()).as_str()),
        ])
        .send()
        .await
        .expect("confirm form");
    assert_eq!(confirmed.status(), StatusCode::OK);
    let page = confirmed.text().await.expect("html");
    assert_eq!(
        page.matches("<li><code>").count(),
        10,
        "ten recovery codes shown"
    );
    assert_eq!(
        home(&browser, &server).await,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        home(&other, &server).await,
        StatusCode::UNAUTHORIZED,
        "the other session ended"
    );
}
