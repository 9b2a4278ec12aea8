//! The mail flows over HTTP against the real binary and a real SMTP server (aiosmtpd):
//! password reset, email verification, sign-in by code or link, email change and the
//! security notices, each read from the mail that arrived. Also the attacks on them: the
//! same answer for unknown addresses, a link used twice, twenty requests racing for one
//! link, an older link after a newer one, a link opened by a scanner, the raw token in
//! the database files, wrong codes, and mail asked for too often.

mod common;

use common::flows::{
    code_in, home, logged_in, mail, mails, post, sign_up, token_in, MAIL_WAIT as WAIT,
    NEW_PASSWORD, PASSWORD,
};
use common::pages::{csrf_token, form_action};
use common::{cli, client, free_address, service_url, smtp, unique, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use smtp::SmtpSink;
use std::path::Path;
use std::time::{Duration, Instant};

/// A server on a fresh SQLite database that mails to `sink`, plus `extra` arguments.
fn server(dir: &Path, sink: &SmtpSink, extra: &[&str]) -> Server {
    let url = sink.url();
    let mut args = vec!["--smtp-url", url.as_str()];
    args.extend_from_slice(extra);
    Server::start(dir, &args)
}

async fn account(client: &reqwest::Client, server: &Server) -> Value {
    client
        .get(server.url("/account"))
        .send()
        .await
        .expect("account")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_forgotten_password_is_reset_from_the_mailed_link_once() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "rosa", "rosa@example.com").await;
    let elsewhere = logged_in(&server, "rosa", PASSWORD).await;

    // Known and unknown addresses get the same answer.
    let anyone = client();
    let known = post(
        &anyone,
        &server,
        "/password/forgot",
        json!({ "email": "Rosa@Example.com" }),
    )
    .await;
    let unknown = post(
        &anyone,
        &server,
        "/password/forgot",
        json!({ "email": "nobody@example.com" }),
    )
    .await;
    assert_eq!(known.0, StatusCode::ACCEPTED);
    assert_eq!(known, unknown);
    let (status, body) = post(&anyone, &server, "/password/forgot", json!({})).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("email"))
    );

    let reset_mail = mail(&sink, "rosa@example.com", "Reset your latchkey password");
    assert!(
        reset_mail.contains("multipart/alternative"),
        "text and HTML parts"
    );
    let token = token_in(&reset_mail);
    assert_eq!(token.len(), 43, "{reset_mail}");

    // The raw token is in no database file: only its SHA-256 is stored.
    for file in std::fs::read_dir(dir.path()).expect("dir") {
        let path = file.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            !bytes
                .windows(token.len())
                .any(|window| window == token.as_bytes()),
            "the raw token is in {}",
            path.display()
        );
    }

    // Opening the link (twice, as a mail scanner would) only shows the form.
    for _ in 0..2 {
        let page = anyone
            .get(server.url(&format!("/password/reset?token={token}")))
            .header("accept", "text/html")
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.expect("html");
        assert!(html.contains("Set new password"), "{html}");
        assert!(html.contains(&token));
    }

    // A password the policy refuses leaves the link usable.
    let (status, body) = post(
        &anyone,
        &server,
        "/password/reset",
        json!({ "token": token, "password": "password123" }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("password")),
        "{body}"
    );

    let (status, body) = post(
        &anyone,
        &server,
        "/password/reset",
        json!({ "token": token, "password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        home(&anyone, &server).await,
        StatusCode::UNAUTHORIZED,
        "a reset does not log in by default"
    );

    // Used once; every session of the user ended; the old password is dead.
    let (status, body) = post(
        &anyone,
        &server,
        "/password/reset",
        json!({ "token": token, "password": "another fine password 7" }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("token"))
    );
    assert_eq!(home(&elsewhere, &server).await, StatusCode::UNAUTHORIZED);
    let (status, _) = post(
        &client(),
        &server,
        "/login",
        json!({ "username": "rosa", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    logged_in(&server, "rosa", NEW_PASSWORD).await;

    let notice = mail(&sink, "rosa@example.com", "Your password was reset");
    assert!(notice.contains("cannot be turned off"));
    let page = anyone
        .get(server.url(&format!("/password/reset?token={token}")))
        .header("accept", "text/html")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("invalid, was already used, or has expired"),
        "{page}"
    );
    assert!(
        mails(&sink, "nobody@example.com", "", 0).is_empty(),
        "no mail to an unknown address"
    );
}

#[tokio::test]
async fn an_older_link_dies_when_a_newer_one_is_sent_and_a_link_works_for_one_of_twenty() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "sven", "sven@example.com").await;
    let anyone = client();
    post(
        &anyone,
        &server,
        "/password/forgot",
        json!({ "email": "sven@example.com" }),
    )
    .await;
    let first = token_in(&mail(&sink, "sven@example.com", "Reset your"));
    post(
        &anyone,
        &server,
        "/password/forgot",
        json!({ "email": "sven@example.com" }),
    )
    .await;
    let both = mails(&sink, "sven@example.com", "Reset your", 2);
    let second = both
        .iter()
        .map(|mail| token_in(mail))
        .find(|token| *token != first)
        .expect("a second token");
    let (status, _) = post(
        &anyone,
        &server,
        "/password/reset",
        json!({ "token": first, "password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the older link is dead");

    // Twenty requests racing for the live link: exactly one sets its password.
    let racers = (0..20).map(|index| {
        let (server_url, token) = (server.url("/password/reset"), second.clone());
        tokio::spawn(async move {
            client()
                .post(server_url)
                .json(&json!({ "token": token, "password": format!("racing password number {index}") }))
                .send()
                .await
                .expect("reset")
                .status()
        })
    });
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.expect("racer"));
    }
    let won: Vec<usize> = statuses
        .iter()
        .enumerate()
        .filter(|(_, status)| **status == StatusCode::OK)
        .map(|(index, _)| index)
        .collect();
    assert_eq!(won.len(), 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|status| *status == StatusCode::OK || *status == StatusCode::BAD_REQUEST));
    logged_in(
        &server,
        "sven",
        &format!("racing password number {}", won[0]),
    )
    .await;
}

#[tokio::test]
async fn the_reset_pages_take_a_browser_from_the_login_page_to_a_new_password() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &["--reset-logs-in"]);
    sign_up(&server, "page", "page@example.com").await;
    let browser = client();
    let html = |response: reqwest::Response| async move { response.text().await.expect("html") };
    let login = html(
        browser
            .get(server.url("/login"))
            .header("accept", "text/html")
            .send()
            .await
            .expect("login"),
    )
    .await;
    assert!(
        login.contains("href=\"/password/forgot\""),
        "the login page links to the form"
    );
    let forgot = html(
        browser
            .get(server.url("/password/forgot"))
            .header("accept", "text/html")
            .send()
            .await
            .expect("forgot"),
    )
    .await;
    let csrf = csrf_token(&forgot);
    let sent = browser
        .post(server.url("/password/forgot"))
        .form(&[("csrf_token", csrf.as_str()), ("email", "page@example.com")])
        .send()
        .await
        .expect("forgot form");
    assert_eq!(sent.status(), StatusCode::OK);
    assert!(html(sent).await.contains("a mail is on its way"));
    let token = token_in(&mail(&sink, "page@example.com", "Reset your"));
    let form = html(
        browser
            .get(server.url(&format!("/password/reset?token={token}")))
            .send()
            .await
            .expect("reset page"),
    )
    .await;
    let csrf = csrf_token(&form);
    let mismatch = browser
        .post(server.url("/password/reset"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("token", &token),
            ("password", NEW_PASSWORD),
            ("confirm", "something else"),
        ])
        .send()
        .await
        .expect("reset form");
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    let done = browser
        .post(server.url("/password/reset"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("token", &token),
            ("password", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ])
        .send()
        .await
        .expect("reset form");
    assert!(
        done.url().path().ends_with("/home"),
        "--reset-logs-in: {}",
        done.url()
    );
    assert_eq!(done.status(), StatusCode::OK);
    // Logged in by the link, so not fresh: the password page asks for the password.
    let password = browser
        .get(server.url("/password"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("password page");
    assert!(
        password.url().path().ends_with("/login"),
        "{}",
        password.url()
    );
}

#[tokio::test]
async fn an_address_is_verified_from_its_link_and_logins_can_wait_for_it() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &["--require-verified-email"]);
    let (status, body) = post(
        &client(),
        &server,
        "/signup",
        json!({ "username": "nomail", "password": PASSWORD }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("email"))
    );
    sign_up(&server, "vera", "vera@example.com").await;
    let first = token_in(&mail(
        &sink,
        "vera@example.com",
        "Verify your email address",
    ));

    let (status, body) = post(
        &client(),
        &server,
        "/login",
        json!({ "username": "vera", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("/email/verify/resend"));
    // A wrong password still gets the usual answer.
    let (status, _) = post(
        &client(),
        &server,
        "/login",
        json!({ "username": "vera", "password": "wrong wrong wrong" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Ask again: the first link dies, the new one works (its page only shows a button).
    let (status, _) = post(
        &client(),
        &server,
        "/email/verify/resend",
        json!({ "email": "vera@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let links = mails(&sink, "vera@example.com", "Verify your email address", 2);
    let second = links
        .iter()
        .map(|mail| token_in(mail))
        .find(|token| *token != first)
        .expect("new link");
    let page = client()
        .get(server.url(&format!("/email/verify?token={second}")))
        .send()
        .await
        .expect("page");
    assert!(page
        .text()
        .await
        .expect("html")
        .contains(">Verify</button>"));
    let (status, _) = post(
        &client(),
        &server,
        "/email/verify",
        json!({ "token": first }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = post(
        &client(),
        &server,
        "/email/verify",
        json!({ "token": second }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = post(
        &client(),
        &server,
        "/email/verify",
        json!({ "token": second }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "used once");

    let vera = logged_in(&server, "vera", PASSWORD).await;
    assert_eq!(account(&vera, &server).await["email_verified"], json!(true));

    // The CLI verifies by hand.
    sign_up(&server, "walt", "walt@example.com").await;
    let (ok, stdout, stderr) = cli(
        &[
            "user",
            "verify",
            "walt",
            "--database-url",
            &server.database_url,
        ],
        "",
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("verified walt <walt@example.com>"),
        "{stdout}"
    );
    let walt = logged_in(&server, "walt", PASSWORD).await;
    assert_eq!(account(&walt, &server).await["email_verified"], json!(true));
}

#[tokio::test]
async fn a_mailed_code_or_link_signs_in_once_and_not_freshly() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "cody", "cody@example.com").await;
    let browser = client();
    let (status, _) = post(
        &browser,
        &server,
        "/login/email",
        json!({ "email": "cody@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let sign_in = mail(&sink, "cody@example.com", "Your sign-in code");
    let code = code_in(&sign_in);
    assert_eq!(code.len(), 6, "{sign_in}");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, _) = post(
        &browser,
        &server,
        "/login/email/verify",
        json!({ "email": "cody@example.com", "code": wrong }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = post(
        &browser,
        &server,
        "/login/email/verify",
        json!({ "email": "Cody@example.com", "code": code }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(home(&browser, &server).await, StatusCode::OK);
    assert_eq!(
        account(&browser, &server).await["email_verified"],
        json!(true),
        "the mailbox was proven"
    );
    let (status, _) = post(
        &browser,
        &server,
        "/password",
        json!({ "current": PASSWORD, "new": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a mailed code is not a fresh login"
    );
    let (status, _) = post(
        &client(),
        &server,
        "/login/email/verify",
        json!({ "email": "cody@example.com", "code": code }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a code works once");

    // The link in a second mail: its page only shows a button; the POST signs in.
    post(
        &client(),
        &server,
        "/login/email",
        json!({ "email": "cody@example.com" }),
    )
    .await;
    let second = mails(&sink, "cody@example.com", "Your sign-in code", 2);
    let token = second
        .iter()
        .map(|mail| token_in(mail))
        .find(|token| !sign_in.contains(token.as_str()))
        .expect("new link");
    let other = client();
    let page = other
        .get(server.url(&format!("/login/email/confirm?token={token}")))
        .send()
        .await
        .expect("page");
    assert!(page
        .text()
        .await
        .expect("html")
        .contains(">Sign in</button>"));
    assert_eq!(
        home(&other, &server).await,
        StatusCode::UNAUTHORIZED,
        "opening the link logs nobody in"
    );
    let (status, _) = post(
        &other,
        &server,
        "/login/email/confirm",
        json!({ "token": token }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(home(&other, &server).await, StatusCode::OK);
    let sessions: Value = other
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
        .cloned();
    assert_eq!(current.expect("current")["method"], json!("email_link"));
}

#[tokio::test]
async fn ten_wrong_codes_burn_the_token_and_codes_and_mail_requests_are_throttled() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "gina", "gina@example.com").await;
    post(
        &client(),
        &server,
        "/login/email",
        json!({ "email": "gina@example.com" }),
    )
    .await;
    let code = code_in(&mail(&sink, "gina@example.com", "Your sign-in code"));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..10 {
        let (status, _) = post(
            &client(),
            &server,
            "/login/email/verify",
            json!({ "email": "gina@example.com", "code": wrong }),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = post(
        &client(),
        &server,
        "/login/email/verify",
        json!({ "email": "gina@example.com", "code": code }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "burnt after ten wrong codes"
    );

    // Codes per address: 20 an hour, then 429 before any check.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            post(
                &client(),
                &server,
                "/login/email/verify",
                json!({ "email": "gina@example.com", "code": wrong }),
            )
            .await
            .0,
        );
    }
    // 11 codes so far: the 21st to 23rd are refused.
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        3,
        "{statuses:?}"
    );

    // Mail requests per address: 5 an hour (one used above), known address or not.
    for email in ["gina@example.com", "ghost@example.com"] {
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(
                post(
                    &client(),
                    &server,
                    "/password/forgot",
                    json!({ "email": email }),
                )
                .await
                .0,
            );
        }
        let throttled = statuses
            .iter()
            .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
            .count();
        let expected = if email.starts_with("gina") { 2 } else { 1 };
        assert_eq!(throttled, expected, "{email}: {statuses:?}");
    }
    assert_eq!(mails(&sink, "gina@example.com", "Reset your", 4).len(), 4);
}

#[tokio::test]
async fn an_email_change_is_confirmed_by_the_new_address_and_told_to_the_old() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "mona", "mona@example.com").await;
    sign_up(&server, "otto", "otto@example.com").await;
    let mona = logged_in(&server, "mona", PASSWORD).await;
    let (status, _) = post(
        &client(),
        &server,
        "/account/email",
        json!({ "email": "new@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "needs a login");
    let (status, body) = post(
        &mona,
        &server,
        "/account/email",
        json!({ "email": "not an address" }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("email"))
    );
    let (status, body) = post(
        &mona,
        &server,
        "/account/email",
        json!({ "email": "mona.new@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let token = token_in(&mail(
        &sink,
        "mona.new@example.com",
        "Confirm your new email address",
    ));
    assert_eq!(
        account(&mona, &server).await["email"],
        json!("mona@example.com"),
        "nothing changes before the link"
    );
    // Confirmed from her own session, which carries on (the others end).
    let (status, body) = post(
        &mona,
        &server,
        "/account/email/confirm",
        json!({ "token": token }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let now = account(&mona, &server).await;
    assert_eq!(
        (now["email"].clone(), now["email_verified"].clone()),
        (json!("mona.new@example.com"), json!(true))
    );
    let notice = mail(&sink, "mona@example.com", "Your email address was changed");
    assert!(notice.contains("mona.new@example.com"));
    logged_in(&server, "mona.new@example.com", PASSWORD).await;

    // An address another account took meanwhile: 409, nothing changes.
    let (status, _) = post(
        &mona,
        &server,
        "/account/email",
        json!({ "email": "otto@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let token = token_in(&mail(
        &sink,
        "otto@example.com",
        "Confirm your new email address",
    ));
    let (status, _) = post(
        &client(),
        &server,
        "/account/email/confirm",
        json!({ "token": token }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn notices_tell_of_password_changes_remembered_devices_and_lockouts() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "nora", "nora@example.com").await;
    let nora = logged_in(&server, "nora", PASSWORD).await;
    let (status, _) = post(
        &nora,
        &server,
        "/password",
        json!({ "current": PASSWORD, "new": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    mail(&sink, "nora@example.com", "Your password was changed");

    let remembered = client();
    let login = remembered
        .get(server.url("/login"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("page");
    let csrf = csrf_token(&login.text().await.expect("html"));
    let done = remembered
        .post(server.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "nora"),
            ("password", NEW_PASSWORD),
            ("remember", "on"),
        ])
        .send()
        .await
        .expect("login form");
    assert!(done.url().path().ends_with("/home"), "{}", done.url());
    assert!(mail(&sink, "nora@example.com", "A new device signed in").contains("127.0.0.1"));

    for _ in 0..8 {
        post(
            &client(),
            &server,
            "/login",
            json!({ "username": "nora", "password": "not the password" }),
        )
        .await;
    }
    let lockouts = mails(
        &sink,
        "nora@example.com",
        "Failed logins on your account",
        1,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        mails(
            &sink,
            "nora@example.com",
            "Failed logins on your account",
            1
        )
        .len(),
        lockouts.len(),
        "one notice per lockout, not one per refused attempt"
    );
}

/// An SMTP peer that accepts connections and never says a word (no greeting), holding
/// every socket until dropped: a mail sent to it neither arrives nor fails until the
/// sender's own timeout (30 s), so whatever waits for the mail hangs.
struct SilentSmtpPeer {
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentSmtpPeer {
    fn listen(port: u16) -> SilentSmtpPeer {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((socket, _)) => {
                            held.push(socket);
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        SilentSmtpPeer {
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentSmtpPeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tokio::test]
async fn a_reset_asked_for_while_smtp_is_down_arrives_after_a_restart() {
    if !smtp::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = smtp::free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let address = free_address();
    // SMTP that takes the connection and then hangs: the answer must not wait for it.
    let silent = SilentSmtpPeer::listen(port);
    let server = Server::start_at(dir.path(), address, &["--smtp-url", &url]);
    sign_up(&server, "dora", "dora@example.com").await;
    let started = Instant::now();
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(20),
        post(
            &client(),
            &server,
            "/password/forgot",
            json!({ "email": "dora@example.com" }),
        ),
    )
    .await
    .expect("the answer waited for an SMTP server that never answers");
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the answer does not wait for SMTP: {:?}",
        started.elapsed()
    );
    // The reset mail is queued (behind the sign-up's verification mail), and the worker
    // is in a send to the silent peer that will not end: the answer came anyway.
    let database = rusqlite::Connection::open(dir.path().join("latchkey.db")).expect("open");
    let outbox = |query: &str| -> i64 {
        database
            .query_row(query, [], |row| row.get(0))
            .expect("the outbox")
    };
    let deadline = Instant::now() + WAIT;
    while outbox("SELECT COUNT(*) FROM mail_outbox") < 2
        || outbox("SELECT COUNT(*) FROM mail_outbox WHERE lease_until IS NOT NULL") == 0
        || silent.accepted() == 0
    {
        assert!(
            Instant::now() < deadline,
            "the reset mail was never queued, or no send to the silent peer began"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The peer hangs up: every mail is tried, fails and is kept for later (none left
    // leased by a send the stop would cut short).
    drop(silent);
    let deadline = Instant::now() + WAIT;
    while outbox(
        "SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL \
         AND (last_error IS NULL OR lease_until IS NOT NULL)",
    ) > 0
    {
        assert!(
            Instant::now() < deadline,
            "the mails were not all tried against the closed peer"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    let sink = SmtpSink::start_on(port);
    let server = Server::start_at(dir.path(), address, &["--smtp-url", &url]);
    let token = token_in(&mail(&sink, "dora@example.com", "Reset your"));
    let (status, _) = post(
        &client(),
        &server,
        "/password/reset",
        json!({ "token": token, "password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// ASVS 5.3.3 in mail: the HTML part of a mail escapes the text a user chose that it
/// shows (no mail shows the username any more; the address is shown in the verification
/// and email-change mails); the text part carries it as typed (plain text is no markup).
#[tokio::test]
async fn a_chosen_address_is_escaped_in_html_mail() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &["--require-verified-email"]);
    let address = "o'brien&co@example.com";
    sign_up(&server, "obrien", address).await;
    let mail = mail(&sink, address, "Verify your email address");
    let html = part(&mail, "text/html");
    assert!(
        html.contains("o&#x27;brien&amp;co@example.com") && !html.contains(address),
        "the HTML part shows the address escaped: {html}"
    );
    assert!(
        part(&mail, "text/plain").contains(address),
        "the text part shows the address as typed"
    );
}

/// The body of the MIME part of `content_type` in a (quoted-printable unfolded) mail.
fn part<'a>(mail: &'a str, content_type: &str) -> &'a str {
    let start = mail
        .find(&format!("Content-Type: {content_type}"))
        .unwrap_or_else(|| panic!("a {content_type} part: {mail}"));
    let body = &mail[start..];
    let body = &body[body
        .find("\n\n")
        .or_else(|| body.find("\r\n\r\n"))
        .expect("headers end")..];
    body.split("\n--").next().unwrap_or(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_send_each_requested_mail_once() {
    let Some(database) = service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let url = sink.url();
    let args = ["--smtp-url", url.as_str()];
    // Processes sharing a database share the secret key: it opens each other's sealed
    // mail and checks each other's codes.
    const SHARED_KEY: &str = "one secret key that both servers share: 32+ bytes";
    let servers = [
        Server::start_on_with_keys(&database, &args, SHARED_KEY),
        Server::start_on_with_keys(&database, &args, SHARED_KEY),
    ];
    let names: Vec<String> = (0..6).map(|index| unique(&format!("pg{index}x"))).collect();
    for name in &names {
        sign_up(&servers[0], name, &format!("{name}@example.com")).await;
    }
    for (index, name) in names.iter().enumerate() {
        let server = &servers[index % 2];
        let (status, _) = post(
            &client(),
            server,
            "/password/forgot",
            json!({ "email": format!("{name}@example.com") }),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    for name in &names {
        mail(&sink, &format!("{name}@example.com"), "Reset your");
    }
    // Both workers poll the one outbox; give them time to (wrongly) send again.
    std::thread::sleep(Duration::from_secs(2));
    for name in &names {
        let sent = mails(&sink, &format!("{name}@example.com"), "Reset your", 1);
        assert_eq!(sent.len(), 1, "{name} got {} reset mails", sent.len());
    }
}

#[tokio::test]
async fn a_password_change_kills_reset_links_from_the_account_and_from_the_cli() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "paul", "paul@example.com").await;
    post(
        &client(),
        &server,
        "/password/forgot",
        json!({ "email": "paul@example.com" }),
    )
    .await;
    let token = token_in(&mail(&sink, "paul@example.com", "Reset your"));
    let paul = logged_in(&server, "paul", PASSWORD).await;
    let (status, _) = post(
        &paul,
        &server,
        "/password",
        json!({ "current": PASSWORD, "new": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = post(
        &client(),
        &server,
        "/password/reset",
        json!({ "token": token, "password": "an attacker's password 9" }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("token"))
    );

    // The same through `latchkey user passwd`.
    post(
        &client(),
        &server,
        "/password/forgot",
        json!({ "email": "paul@example.com" }),
    )
    .await;
    let links = mails(&sink, "paul@example.com", "Reset your", 2);
    let second = links
        .iter()
        .map(|mail| token_in(mail))
        .find(|other| *other != token)
        .expect("new link");
    let (ok, stdout, stderr) = cli(
        &[
            "user",
            "passwd",
            "paul",
            "--password-stdin",
            "--database-url",
            &server.database_url,
        ],
        "yet another fine passphrase\n",
    );
    assert!(ok, "{stderr}");
    // The new reset link and the sign-up's verification link: the admin's password
    // ends every mailed link (the credential table's row).
    assert!(stdout.contains("2 mailed link(s) revoked"), "{stdout}");
    let (status, _) = post(
        &client(),
        &server,
        "/password/reset",
        json!({ "token": second, "password": "an attacker's password 9" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_login_page_signs_in_with_a_mailed_code_and_mail_templates_can_be_replaced() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("mail")).expect("mkdir");
    std::fs::write(
        templates.join("mail/sign_in.txt"),
        "Subject: Acme sign-in code\nHi {{ email }}, type the code {{ code }}\nor open {{ link }}\n",
    )
    .expect("write template");
    let templates_arg = templates.display().to_string();
    let server = server(dir.path(), &sink, &["--templates", &templates_arg]);
    sign_up(&server, "page", "page@example.com").await;
    let browser = client();
    let login = browser
        .get(server.url("/login"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("login page");
    let html = login.text().await.expect("html");
    assert!(
        html.contains("action=\"/login/email\""),
        "the login page offers a sign-in code"
    );
    let csrf = csrf_token(&html);
    let asked = browser
        .post(server.url("/login/email"))
        .form(&[("csrf_token", csrf.as_str()), ("email", "page@example.com")])
        .send()
        .await
        .expect("ask for a code");
    assert_eq!(asked.status(), StatusCode::OK);
    let form = asked.text().await.expect("html");
    assert!(form.contains("action=\"/login/email/verify\""), "{form}");
    let sign_in = mail(&sink, "page@example.com", "Acme sign-in code");
    assert!(
        sign_in.contains("Hi page@example.com, type the code"),
        "the replaced text part: {sign_in}"
    );
    assert!(
        sign_in.contains("text/html"),
        "the embedded HTML part is still there"
    );
    let code = code_in(&sign_in);
    let csrf = csrf_token(&form);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = browser
        .post(server.url("/login/email/verify"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "page@example.com"),
            ("code", wrong),
        ])
        .send()
        .await
        .expect("wrong code");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let csrf = csrf_token(&refused.text().await.expect("html"));
    let done = browser
        .post(server.url("/login/email/verify"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "page@example.com"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .expect("code");
    assert!(done.url().path().ends_with("/home"), "{}", done.url());
    let page = browser
        .get(server.url("/account"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("account");
    let page = page.text().await.expect("html");
    assert!(page.contains("page@example.com (verified)"), "{page}");
}

#[tokio::test]
async fn a_code_asked_for_on_a_login_page_for_an_app_goes_back_to_the_app() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = common::guarding_one_app(dir.path());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let server = server(dir.path(), &sink, &extra);
    sign_up(&server, "rhea", "rhea@example.com").await;
    let app = "http://wiki.apps.localhost/page?x=1";
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let rd: String = url::form_urlencoded::byte_serialize(app.as_bytes()).collect();
    let login = browser
        .get(server.url(&format!("/login?rd={rd}")))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("html");
    let asked = browser
        .post(server.url(&form_action(&login, "/login/email")))
        .form(&[
            ("csrf_token", csrf_token(&login).as_str()),
            ("email", "rhea@example.com"),
        ])
        .send()
        .await
        .expect("ask for a code");
    assert_eq!(asked.status(), StatusCode::OK);
    // The code form may lead to the app (browsers hold a form's redirect to the page's
    // form-action), and leads there.
    let policy = asked
        .headers()
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        policy.contains("form-action 'self' http://wiki.apps.localhost;"),
        "{policy}"
    );
    let form = asked.text().await.expect("html");
    let code = code_in(&mail(&sink, "rhea@example.com", "Your sign-in code"));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = browser
        .post(server.url(&form_action(&form, "/login/email/verify")))
        .form(&[
            ("csrf_token", csrf_token(&form).as_str()),
            ("email", "rhea@example.com"),
            ("code", wrong),
        ])
        .send()
        .await
        .expect("wrong code");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let form = refused.text().await.expect("html");
    let done = browser
        .post(server.url(&form_action(&form, "/login/email/verify")))
        .form(&[
            ("csrf_token", csrf_token(&form).as_str()),
            ("email", "rhea@example.com"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .expect("code");
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let location = done
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok());
    assert_eq!(location, Some(app), "back to the app");
}

#[tokio::test]
async fn mail_requests_and_codes_are_capped_per_client_address() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let caps = [
        "--mail-requests-per-ip-hourly",
        "3",
        "--codes-per-ip-hourly",
        "4",
    ];
    let server = server(dir.path(), &sink, &caps);
    let mut statuses = Vec::new();
    for index in 0..5 {
        let email = format!("someone{index}@example.com");
        statuses.push(
            post(
                &client(),
                &server,
                "/login/email",
                json!({ "email": email }),
            )
            .await
            .0,
        );
    }
    let throttled = StatusCode::TOO_MANY_REQUESTS;
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == throttled)
            .count(),
        2,
        "{statuses:?}"
    );
    let mut statuses = Vec::new();
    for index in 0..6 {
        let body = json!({ "email": format!("someone{index}@example.com"), "code": "123456" });
        statuses.push(
            post(&client(), &server, "/login/email/verify", body)
                .await
                .0,
        );
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == throttled)
            .count(),
        2,
        "{statuses:?}"
    );
}
