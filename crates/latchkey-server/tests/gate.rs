//! The gate's table over HTTP against the real binary: every way in that ends in a
//! request (a password, a mailed code, a mailed link, a reset that logs in) × an account
//! with no second factor, with TOTP, with a passkey. A one-factor proof of an account
//! with a second factor gets `202 {"methods"}` and no session, whichever way it came in;
//! the second step then completes it. (A passkey sign-in and remember-me pass the same
//! gate: the library's `tests/gate.rs` holds their rows, and the browser test signs in
//! with a real passkey.) A sign-in with another identity provider (a real OpenID
//! provider) crosses the same three kinds of account. Also the attack that found the
//! hole: the mailbox alone never gets past a second factor.

mod common;

use common::flows::{
    code_in, enable_totp, home, mails, now_secs, post, sign_up, token_in, NEW_PASSWORD, PASSWORD,
};
use common::smtp::{self, SmtpSink};
use common::{cli, client, database_url, Server};
use latchkey::factors::passkeys::{Passkey, PasskeyStore, SqlPasskeys};
use latchkey::factors::Totp;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The `count`-th mail to `to` whose subject contains `subject` (waits for it).
fn nth_mail(sink: &SmtpSink, to: &str, subject: &str, count: usize) -> String {
    mails(sink, to, subject, count).remove(count - 1)
}

/// The kinds of account the table crosses with every way in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Account {
    NoFactor,
    Totp,
    Passkey,
}

/// Signs `name` up with a verified address and gives it `kind`'s second factor; the
/// authenticator app for TOTP.
async fn account(
    server: &Server,
    dir: &std::path::Path,
    name: &str,
    kind: Account,
) -> Option<Totp> {
    let browser = sign_up(server, name, &format!("{name}@example.com")).await;
    let url = database_url(dir);
    let (ok, _, stderr) = cli(&["user", "verify", name, "--database-url", &url], "");
    assert!(ok, "{stderr}");
    match kind {
        Account::NoFactor => None,
        Account::Totp => Some(enable_totp(&browser, server, name).await),
        Account::Passkey => {
            // A credential a real registration made (Chromium's virtual authenticator),
            // stored for this user as the registration would; a credential belongs to one
            // user, so it moves here from the previous cell's.
            let file = dir.join("latchkey.db");
            rusqlite::Connection::open(&file)
                .and_then(|connection| connection.execute("DELETE FROM passkeys", []))
                .expect("move the credential");
            let pool = latchkey::store::open_sqlite(&url).await.expect("open");
            let users = latchkey::SqliteUserStore::new(pool.clone());
            let user = latchkey::UserStore::find_by_login(&users, name)
                .await
                .expect("find")
                .expect("the user");
            let passkey: Passkey =
                serde_json::from_str(include_str!("../../../tests/data/passkey.json"))
                    .expect("a passkey");
            SqlPasskeys::new(pool)
                .add(user.id, "laptop", &passkey)
                .await
                .expect("add the passkey");
            None
        }
    }
}

/// The ways in the table crosses: each proves something and asks the gate.
#[derive(Debug, Clone, Copy)]
enum WayIn {
    Password,
    MailedCode,
    MailedLink,
    ResetThatLogsIn,
}

/// Goes in `way` as `name` with a fresh browser; the answer's status, its body, and the
/// browser.
async fn go_in(
    server: &Server,
    sink: &SmtpSink,
    name: &str,
    way: WayIn,
) -> (StatusCode, Value, reqwest::Client) {
    let email = format!("{name}@example.com");
    let browser = client();
    let (status, body) = match way {
        WayIn::Password => {
            post(
                &browser,
                server,
                "/login",
                json!({ "username": name, "password": PASSWORD }),
            )
            .await
        }
        WayIn::MailedCode | WayIn::MailedLink => {
            let (status, _) =
                post(&browser, server, "/login/email", json!({ "email": email })).await;
            assert_eq!(status, StatusCode::ACCEPTED);
            let mail = nth_mail(sink, &email, "sign-in code", 1);
            match way {
                WayIn::MailedCode => {
                    post(
                        &browser,
                        server,
                        "/login/email/verify",
                        json!({ "email": email, "code": code_in(&mail) }),
                    )
                    .await
                }
                _ => {
                    post(
                        &browser,
                        server,
                        "/login/email/confirm",
                        json!({ "token": token_in(&mail) }),
                    )
                    .await
                }
            }
        }
        WayIn::ResetThatLogsIn => {
            let (status, _) = post(
                &browser,
                server,
                "/password/forgot",
                json!({ "email": email }),
            )
            .await;
            assert_eq!(status, StatusCode::ACCEPTED);
            let mail = nth_mail(sink, &email, "Reset your latchkey password", 1);
            post(
                &browser,
                server,
                "/password/reset",
                json!({ "token": token_in(&mail), "password": NEW_PASSWORD }),
            )
            .await
        }
    };
    (status, body, browser)
}

#[tokio::test]
async fn every_way_in_passes_the_gate_for_every_kind_of_account() {
    if !smtp::available() {
        return;
    }
    let ways = [
        WayIn::Password,
        WayIn::MailedCode,
        WayIn::MailedLink,
        WayIn::ResetThatLogsIn,
    ];
    let kinds = [Account::NoFactor, Account::Totp, Account::Passkey];
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let address = common::free_address();
    let base = format!("http://localhost:{}", address.port());
    let smtp_url = sink.url();
    let server = Server::start_at(
        dir.path(),
        address,
        &[
            "--smtp-url",
            &smtp_url,
            "--reset-logs-in",
            "--public-url",
            &base,
        ],
    );
    let mut table = Vec::new();
    for (w, way) in ways.iter().enumerate() {
        for (k, kind) in kinds.iter().enumerate() {
            // One account per cell: no cell sees another's mail or throttle.
            let name = format!("cell{w}{k}");
            let app = account(&server, dir.path(), &name, *kind).await;
            let (status, body, browser) = go_in(&server, &sink, &name, *way).await;
            let logged_in = home(&browser, &server).await;
            match kind {
                Account::NoFactor => {
                    assert_eq!(status, StatusCode::OK, "{way:?} × {kind:?}: {body}");
                    assert_eq!(logged_in, StatusCode::OK, "{way:?} × {kind:?}");
                }
                Account::Totp | Account::Passkey => {
                    assert_eq!(status, StatusCode::ACCEPTED, "{way:?} × {kind:?}: {body}");
                    let wanted = if *kind == Account::Totp {
                        "totp"
                    } else {
                        "passkey"
                    };
                    assert!(
                        body["methods"]
                            .as_array()
                            .expect("methods")
                            .contains(&json!(wanted)),
                        "{way:?} × {kind:?}: {body}"
                    );
                    assert_eq!(
                        logged_in,
                        StatusCode::UNAUTHORIZED,
                        "{way:?} × {kind:?}: nobody is logged in yet"
                    );
                }
            }
            // The second step completes what the gate held, and only that.
            if let Some(app) = app {
                let (status, body) = post(
                    &browser,
                    &server,
                    "/login/second-factor",
                    json!({ "code": app.code_at(now_secs() + 30) }),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{way:?} × {kind:?}: {body}");
                assert_eq!(home(&browser, &server).await, StatusCode::OK);
                let factors: Value = browser
                    .get(server.url("/sessions"))
                    .send()
                    .await
                    .expect("sessions")
                    .json()
                    .await
                    .expect("json");
                let current = factors["sessions"]
                    .as_array()
                    .expect("sessions")
                    .iter()
                    .find(|session| session["current"] == json!(true))
                    .expect("this session");
                let method = current["method"].as_str().unwrap_or_default().to_string();
                assert!(
                    method.ends_with("+totp"),
                    "{way:?}: every method is recorded: {method}"
                );
                table.push((format!("{way:?}"), format!("{kind:?}"), method));
            } else {
                table.push((format!("{way:?}"), format!("{kind:?}"), status.to_string()));
            }
        }
    }
    assert_eq!(table.len(), ways.len() * kinds.len());
    eprintln!("the gate's table: {table:#?}");
}

#[tokio::test]
async fn the_mailbox_alone_never_gets_past_a_second_factor() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp_url = sink.url();
    let server = Server::start(dir.path(), &["--smtp-url", &smtp_url]);
    account(&server, dir.path(), "victim", Account::Totp).await;
    // The attacker holds the mailbox, not the authenticator.
    let (status, body, attacker) = go_in(&server, &sink, "victim", WayIn::MailedCode).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(home(&attacker, &server).await, StatusCode::UNAUTHORIZED);
    for wrong in ["000000", "123456", "999999"] {
        let (status, _) = post(
            &attacker,
            &server,
            "/login/second-factor",
            json!({ "code": wrong }),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(home(&attacker, &server).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn no_right_password_clears_the_count_of_wrong_second_factor_codes() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp_url = sink.url();
    let server = Server::start(dir.path(), &["--smtp-url", &smtp_url]);
    let app = account(&server, dir.path(), "holly", Account::Totp)
        .await
        .expect("an authenticator");
    // The attacker has the password, not the authenticator: log in (202), guess codes,
    // log in again, guess again. Five free failures per account, then lockouts, and the
    // password's successes never reset them.
    let attacker = client();
    let mut wrong = 0;
    let mut throttled = 0;
    for _round in 0..3 {
        let (status, body) = post(
            &attacker,
            &server,
            "/login",
            json!({ "username": "holly", "password": PASSWORD }),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "the password still passes: {body}"
        );
        for guess in ["000000", "111111", "222222", "333333"] {
            let (status, _) = post(
                &attacker,
                &server,
                "/login/second-factor",
                json!({ "code": guess }),
            )
            .await;
            match status {
                StatusCode::UNAUTHORIZED => wrong += 1,
                StatusCode::TOO_MANY_REQUESTS => throttled += 1,
                other => panic!("a guess answered {other}"),
            }
        }
    }
    // The five free failures and the sixth, which starts the lockout (as for passwords);
    // with the password's successes clearing the count, all twelve were checked.
    assert_eq!(
        wrong, 6,
        "the free failures and the one that starts the lockout"
    );
    assert_eq!(throttled, 6);
    // The owner's right code is refused too while the lockout lasts.
    let owner = client();
    let (status, _) = post(
        &owner,
        &server,
        "/login",
        json!({ "username": "holly", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post(
        &owner,
        &server,
        "/login/second-factor",
        json!({ "code": app.code_at(now_secs() + 30) }),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_waiting_second_step_dies_with_a_password_reset() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp_url = sink.url();
    let server = Server::start(dir.path(), &["--smtp-url", &smtp_url]);
    let app = account(&server, dir.path(), "ines", Account::Totp)
        .await
        .expect("an authenticator");
    // The attacker has the password: the login waits for the second step.
    let (status, body, attacker) = go_in(&server, &sink, "ines", WayIn::Password).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The owner resets the password meanwhile (a reset that does not log in).
    let (status, _) = post(
        &client(),
        &server,
        "/password/forgot",
        json!({ "email": "ines@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mail = nth_mail(&sink, "ines@example.com", "Reset your latchkey password", 1);
    let (status, body) = post(
        &client(),
        &server,
        "/password/reset",
        json!({ "token": token_in(&mail), "password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The attacker's waiting login ends with it, even with a right code.
    let (status, body) = post(
        &attacker,
        &server,
        "/login/second-factor",
        json!({ "code": app.code_at(now_secs() + 30) }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(home(&attacker, &server).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn passkey_names_refuse_invisible_and_text_direction_characters() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Passkeys need a host name in the public URL.
    let address = common::free_address();
    let public = format!("http://localhost:{}", address.port());
    let server = Server::start_at(dir.path(), address, &["--public-url", &public]);
    account(&server, dir.path(), "pia", Account::NoFactor).await;
    let browser = client();
    let (status, _) = post(
        &browser,
        &server,
        "/login",
        json!({ "username": "pia", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A passkey stored as a registration would (the ceremony is the browser test's).
    let url = database_url(dir.path());
    let pool = latchkey::store::open_sqlite(&url).await.expect("open");
    let users = latchkey::SqliteUserStore::new(pool.clone());
    let user = latchkey::UserStore::find_by_login(&users, "pia")
        .await
        .expect("find")
        .expect("the user");
    let passkey: Passkey =
        serde_json::from_str(include_str!("../../../tests/data/passkey.json")).expect("a passkey");
    let id = SqlPasskeys::new(pool)
        .add(user.id, "laptop", &passkey)
        .await
        .expect("add the passkey");
    let rename = |name: &str| {
        browser
            .patch(server.url(&format!("/account/passkeys/{id}")))
            .json(&json!({ "name": name }))
            .send()
    };
    // "laptop" that reads "potpal" backwards, hidden marks, a zero-width joiner.
    for name in [
        "\u{202E}potpal",
        "lap\u{200B}top",
        "phone\u{2066}x\u{2069}",
        "a\u{200D}b",
    ] {
        let response = rename(name).await.expect("rename");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name:?}");
    }
    let listed: Value = browser
        .get(server.url("/account/passkeys"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["passkeys"][0]["name"], json!("laptop"), "{listed}");
    let response = rename("work phone").await.expect("rename");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_provider_sign_in_passes_the_gate_for_every_kind_of_account() {
    if !common::oidc::available() {
        return;
    }
    let provider = common::oidc::Provider::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let address = common::free_address();
    // A host name, so passkeys are on and count as a second factor.
    let base = format!("http://localhost:{}", address.port());
    let (id, secret) = provider
        .register_client(&format!("{base}/login/oidc/corp/callback"))
        .await;
    let issuer = format!("corp={}", provider.issuer);
    let server = Server::start_at_with_env(
        dir.path(),
        address,
        &["--public-url", &base, "--oidc-provider", &issuer],
        &[
            ("LATCHKEY_OIDC_CORP_CLIENT_ID", &id),
            ("LATCHKEY_OIDC_CORP_CLIENT_SECRET", &secret),
        ],
    );
    let mut table = Vec::new();
    for (k, kind) in [Account::NoFactor, Account::Totp, Account::Passkey]
        .into_iter()
        .enumerate()
    {
        let name = format!("provider{k}");
        let app = account(&server, dir.path(), &name, kind).await;
        // The provider vouches for the account's verified address: linked, then the gate.
        provider
            .set_account(&name, Some(&format!("{name}@example.com")), true, &name)
            .await;
        let browser = common::oidc::browser();
        let start = browser
            .get(server.url("/login/oidc/corp"))
            .send()
            .await
            .expect("start");
        let authorize = start.headers()["location"]
            .to_str()
            .expect("text")
            .to_string();
        // The browser talks to the server by its address: the callback too.
        let callback = provider
            .log_in(&authorize, &name)
            .await
            .replace(&base, &server.url(""));
        let answer = browser.get(&callback).send().await.expect("callback");
        let status = answer.status();
        let page = answer.text().await.unwrap_or_default();
        let logged_in = home(&browser, &server).await;
        match kind {
            Account::NoFactor => {
                assert_eq!(status, StatusCode::SEE_OTHER, "{kind:?}: {page}");
                assert_eq!(logged_in, StatusCode::OK, "{kind:?}");
            }
            Account::Totp | Account::Passkey => {
                // The second step's page, and nobody logged in yet.
                assert_eq!(status, StatusCode::OK, "{kind:?}");
                assert!(page.contains("second-factor"), "{kind:?}: {page}");
                assert_eq!(logged_in, StatusCode::UNAUTHORIZED, "{kind:?}");
            }
        }
        if let Some(app) = app {
            let (status, body) = post(
                &browser,
                &server,
                "/login/second-factor",
                json!({ "code": app.code_at(now_secs() + 30) }),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{kind:?}: {body}");
            assert_eq!(home(&browser, &server).await, StatusCode::OK);
        }
        table.push((format!("{kind:?}"), status.to_string()));
    }
    eprintln!("the gate's provider row: {table:#?}");
}
