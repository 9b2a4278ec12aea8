//! The attack on the mail flows, second factors and passkeys (issue 24), replayed over
//! HTTP against the real binary and a real SMTP server, as the outsider who found each
//! hole tried it. Each test failed before its fix. (The gate's own replays — the mailbox
//! never passes a second factor, no right password clears the count of wrong codes, a
//! waiting second step dies with a reset — are in `gate.rs`.)

mod common;

use common::flows::{
    code_in, home, logged_in, mail, mails, mails_now, post, sign_up, token_in, PASSWORD,
};
use common::smtp::{self, SmtpSink};
use common::{client, count_of, last_byte_burst, raw_json_post, Server};
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// A server on a fresh SQLite database that mails to `sink`, plus `extra` arguments.
fn server(dir: &Path, sink: &SmtpSink, extra: &[&str]) -> Server {
    let url = sink.url();
    let mut args = vec!["--smtp-url", url.as_str()];
    args.extend_from_slice(extra);
    Server::start(dir, &args)
}

/// Signs in by a mailed code at `email` with a fresh browser: the status and the browser.
async fn sign_in_by_code(
    server: &Server,
    sink: &SmtpSink,
    email: &str,
    nth: usize,
) -> (StatusCode, reqwest::Client) {
    let browser = client();
    let (status, _) = post(&browser, server, "/login/email", json!({ "email": email })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let code = code_in(&mails(sink, email, "Your sign-in code", nth)[nth - 1]);
    let (status, _) = post(
        &browser,
        server,
        "/login/email/verify",
        json!({ "email": email, "code": code }),
    )
    .await;
    (status, browser)
}

#[tokio::test]
async fn a_squatter_is_shut_out_when_the_mailbox_owner_signs_in() {
    if !smtp::available() {
        return;
    }
    for flags in [&[][..], &["--require-verified-email"][..]] {
        let sink = SmtpSink::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let server = server(dir.path(), &sink, flags);
        // The attacker signs up first with the victim's address (never verified), and
        // keeps the session sign-up gave them.
        let squatter = sign_up(&server, "squatter", "victim@example.com").await;
        // The victim, refused at sign-up ("already registered"), signs in by mail.
        let (status, _) = post(
            &client(),
            &server,
            "/signup",
            json!({ "username": "victim", "email": "victim@example.com", "password": PASSWORD }),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{flags:?}");
        let (status, victim) = sign_in_by_code(&server, &sink, "victim@example.com", 1).await;
        assert_eq!(status, StatusCode::OK, "{flags:?}");
        assert_eq!(home(&victim, &server).await, StatusCode::OK);
        // The account is the victim's alone: the squatter's session and password are dead.
        assert_eq!(
            home(&squatter, &server).await,
            StatusCode::UNAUTHORIZED,
            "{flags:?}: the squatter's session"
        );
        let (status, body) = post(
            &client(),
            &server,
            "/login",
            json!({ "username": "squatter", "password": PASSWORD }),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{flags:?}: the squatter's password: {body}"
        );
    }
}

#[tokio::test]
async fn email_change_requests_are_throttled_per_account() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "mona", "mona@example.com").await;
    // A fresh password login, as an address change needs.
    let mona = logged_in(&server, "mona", PASSWORD).await;
    let mut statuses = Vec::new();
    for n in 0..8 {
        let (status, _) = post(
            &mona,
            &server,
            "/account/email",
            json!({ "email": format!("outside{n}@elsewhere.example") }),
        )
        .await;
        statuses.push(status.as_u16());
    }
    // Five an hour per account (as per address), then 429; every one to a new address.
    assert_eq!(count_of(&statuses, 202), 5, "{statuses:?}");
    assert_eq!(count_of(&statuses, 429), 3, "{statuses:?}");
    mails(&sink, "elsewhere.example", "Confirm your new email", 5);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        mails_now(&sink, "elsewhere.example", "Confirm your new email").len(),
        5,
        "no mail for a refused request"
    );
}

#[tokio::test]
async fn forty_simultaneous_guesses_compare_at_most_ten_and_burn_the_code() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let url = sink.url();
    // The per-address cap on codes would refuse most of the burst before any check:
    // lifted, so that only the code's own ten tries stand in the way.
    let server = Server::start_logging(
        dir.path(),
        &["--smtp-url", &url, "--codes-per-address-hourly", "1000"],
        &log,
    );
    sign_up(&server, "cody", "cody@example.com").await;
    let (status, _) = post(
        &client(),
        &server,
        "/login/email",
        json!({ "email": "cody@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let code = code_in(&mail(&sink, "cody@example.com", "Your sign-in code"));
    let guesses: Vec<Vec<u8>> = (0..40u32)
        .map(|n| format!("{:06}", (n * 7919 + 1) % 1_000_000))
        .filter(|guess| *guess != code)
        .take(39)
        .map(|guess| {
            let body = json!({ "email": "cody@example.com", "code": guess }).to_string();
            raw_json_post("/login/email/verify", &body, &[])
        })
        .collect();
    let statuses = last_byte_burst(server.address, &guesses).await;
    assert_eq!(count_of(&statuses, 401), guesses.len(), "{statuses:?}");
    // Each comparison is audited: ten, whatever the race.
    let compared = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .filter(|line| line.contains("sign_in_code_wrong"))
        .count();
    assert_eq!(compared, 10, "guesses compared against the one code");
    // The code is burnt: the right one no longer signs in.
    let (status, _) = post(
        &client(),
        &server,
        "/login/email/verify",
        json!({ "email": "cody@example.com", "code": code }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_email_change_kills_reset_links_to_the_old_address_and_other_sessions() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "mona", "mona@example.com").await;
    let mona = logged_in(&server, "mona", PASSWORD).await;
    let laptop = logged_in(&server, "mona", PASSWORD).await;
    // A reset link goes to the old address…
    let (status, _) = post(
        &client(),
        &server,
        "/password/forgot",
        json!({ "email": "mona@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let reset = token_in(&mail(&sink, "mona@example.com", "Reset your"));
    // …then the account moves to a new one.
    let (status, body) = post(
        &mona,
        &server,
        "/account/email",
        json!({ "email": "mona.new@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let confirm = token_in(&mail(&sink, "mona.new@example.com", "Confirm your new"));
    let (status, body) = post(
        &mona,
        &server,
        "/account/email/confirm",
        json!({ "token": confirm }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The old mailbox's link is dead, and so is every other session; hers goes on.
    let (status, body) = post(
        &client(),
        &server,
        "/password/reset",
        json!({ "token": reset, "password": "an attacker's password 9" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(home(&laptop, &server).await, StatusCode::UNAUTHORIZED);
    assert_eq!(home(&mona, &server).await, StatusCode::OK);
    logged_in(&server, "mona", PASSWORD).await;
}

#[tokio::test]
async fn addresses_with_a_display_name_or_an_undeliverable_shape_are_refused() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(&server, "mona", "mona@example.com").await;
    let mona = logged_in(&server, "mona", PASSWORD).await;
    let too_long = format!("{}@example.com", "a".repeat(250));
    let refused = [
        "victim<attacker@evil.example>",
        "victim <attacker@evil.example>",
        "\"victim\" <attacker@evil.example>",
        "victim@example.com, attacker@evil.example",
        "root@127.0.0.1",
        too_long.as_str(),
    ];
    for address in refused {
        let (status, body) = post(
            &client(),
            &server,
            "/signup",
            json!({ "username": "someone", "email": address, "password": PASSWORD }),
        )
        .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("email")),
            "sign-up with {address}: {body}"
        );
        for path in ["/login/email", "/password/forgot", "/email/verify/resend"] {
            let (status, body) = post(&client(), &server, path, json!({ "email": address })).await;
            assert_eq!(
                (status, body["field"].as_str()),
                (StatusCode::BAD_REQUEST, Some("email")),
                "{path} with {address}: {body}"
            );
        }
        let (status, body) = post(
            &mona,
            &server,
            "/account/email",
            json!({ "email": address }),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "/account/email with {address}: {body}"
        );
    }
    // A well-formed request still mails: the sink is listening, and nothing else came.
    let (status, _) = post(
        &client(),
        &server,
        "/password/forgot",
        json!({ "email": "mona@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    mail(&sink, "mona@example.com", "Reset your");
    assert!(
        mails_now(&sink, "evil.example", "").is_empty(),
        "a mail went to the attacker"
    );
}

#[tokio::test]
async fn a_chosen_name_never_reaches_a_mail_and_the_code_stays_out_of_the_subject() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    sign_up(
        &server,
        "Visit-https://evil.example/claim",
        "rita@example.com",
    )
    .await;
    let (status, _) = sign_in_by_code(&server, &sink, "rita@example.com", 1).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(
        &client(),
        &server,
        "/password/forgot",
        json!({ "email": "rita@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    mail(&sink, "rita@example.com", "Reset your");
    for message in mails_now(&sink, "rita@example.com", "") {
        assert!(!message.contains("evil.example"), "{message}");
    }
}

#[tokio::test]
async fn right_passwords_racing_at_one_account_are_all_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(dir.path(), &[], &log);
    sign_up(&server, "busy", "busy@example.com").await;
    // 24 logins with the right password on 24 connections at once (under the per-IP
    // burst of 30): the account admits six checks at a time, the rest wait their turn.
    let body = json!({ "username": "busy", "password": PASSWORD }).to_string();
    let logins: Vec<Vec<u8>> = (0..24)
        .map(|_| raw_json_post("/login", &body, &[]))
        .collect();
    let statuses = last_byte_burst(server.address, &logins).await;
    assert_eq!(count_of(&statuses, 200), 24, "{statuses:?}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains("login_throttled"),
        "a right password was throttled"
    );
}

#[tokio::test]
async fn a_graceful_stop_keeps_the_mail_it_answered_for() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), &sink, &[]);
    let people = ["ada", "bea", "cai", "dov"];
    for name in people {
        sign_up(&server, name, &format!("{name}@example.com")).await;
    }
    // The 202s go out, and the server is told to stop at once.
    for name in people {
        let (status, _) = post(
            &client(),
            &server,
            "/password/forgot",
            json!({ "email": format!("{name}@example.com") }),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    server.stop();
    // Whatever was not sent before the stop was in the outbox: it goes out after a start.
    let _again = self::server(dir.path(), &sink, &[]);
    for name in people {
        mail(&sink, &format!("{name}@example.com"), "Reset your");
    }
}

#[tokio::test]
async fn ipv6_clients_are_counted_by_their_48_as_well() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &[
            "--trusted-proxy",
            "127.0.0.1",
            "--mail-requests-per-ip-hourly",
            "2",
        ],
    );
    // One /48, a new /64 and a new address each time: two per /64, sixteen per /48.
    let mut statuses = Vec::new();
    for n in 0..20 {
        let response = client()
            .post(server.url("/password/forgot"))
            .header("X-Forwarded-For", format!("2001:db8:5:{n:x}::1"))
            .json(&json!({ "email": format!("new{n}@example.com") }))
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(count_of(&statuses, 202), 16, "{statuses:?}");
    assert_eq!(count_of(&statuses, 429), 4, "{statuses:?}");
    // Another /48 is not held back.
    let response = client()
        .post(server.url("/password/forgot"))
        .header("X-Forwarded-For", "2001:db8:6::1")
        .json(&json!({ "email": "other@example.com" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_smtp_password_on_the_command_line_is_warned_about_and_never_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(
        dir.path(),
        &["--smtp-url", "smtp://mailer:Sup3r-secret-pw@127.0.0.1:2525"],
        &log,
    );
    drop(server);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("stands in --smtp-url on the command line"),
        "{text}"
    );
    assert!(!text.contains("Sup3r-secret-pw"), "{text}");
}
