//! End-to-end in headless Chromium: sign up, log in with "Stay logged in", survive a
//! browser restart, re-enter the password for /password, change it (the other browser is
//! logged out), log out. A screenshot of every page lands in
//! `target/browser-screenshots/`. And a forgotten password: from the login page's link
//! to the form, the mail (read from a real SMTP server), its link, and a new password.
//! And a sign-in with another identity provider (a real OpenID provider): the login
//! page's button, the provider's own login and consent pages, and back, logged in.
//! And an API token: made on the tokens page, copied with its button, and used.

mod common;

use common::webdriver::{browser_or_skip, Browser, Driver};
use common::{smtp, Server};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";

fn screenshots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("browser-screenshots")
}

async fn log_in(browser: &Browser, password: &str, remember: bool) {
    browser.type_into("#username", "bob").await;
    browser.type_into("#password", password).await;
    if remember {
        browser.tick("input[name=remember]").await;
    }
    browser.click("main button[type=submit]").await;
}

/// "bob", signed up over HTTP, then logged in with his password in a new browser window
/// `window` on the login page at `base`.
async fn bob_logged_in(server: &Server, base: &str, driver: &Driver, window: &str) -> Browser {
    let signup = reqwest::Client::new()
        .post(server.url("/signup"))
        .json(&serde_json::json!({ "username": "bob", "password": PASSWORD }))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), reqwest::StatusCode::CREATED);
    let bob = Browser::open(driver, window, &screenshots()).await;
    bob.goto(&format!("{base}/login")).await;
    log_in(&bob, PASSWORD, false).await;
    bob
}

#[tokio::test]
async fn a_person_signs_up_stays_logged_in_changes_password_and_logs_out() {
    if !browser_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let base = server.url("");
    let driver = Driver::start();
    let shots = screenshots();
    let alice = Browser::open(&driver, "first-browser", &shots).await;

    // Sign up.
    alice.goto(&format!("{base}/")).await;
    alice.screenshot("01-index").await;
    alice.goto(&format!("{base}/signup")).await;
    alice.type_into("#username", "bob").await;
    alice.type_into("#email", "bob@example.com").await;
    alice.type_into("#password", PASSWORD).await;
    alice.type_into("#confirm", PASSWORD).await;
    // The show-password button and the strength hint (app.js, allowed by the CSP).
    assert_eq!(alice.property("#password", "type").await, "password");
    alice.tick("#password + button.reveal").await;
    assert_eq!(alice.property("#password", "type").await, "text");
    assert!(!alice
        .property("#password-strength", "value")
        .await
        .is_empty());
    assert!(
        alice.page_text().await.contains("good")
            || alice.page_text().await.contains("fair")
            || alice.page_text().await.contains("strong")
    );
    alice.screenshot("02-signup").await;
    alice.tick("#password + button.reveal").await;
    assert_eq!(alice.property("#password", "type").await, "password");
    alice.click("main button[type=submit]").await;
    assert!(alice.current_url().await.ends_with("/login"));
    assert!(alice
        .page_text()
        .await
        .contains("User account has been created."));
    alice.screenshot("03-login-after-signup").await;

    // Log in with "Stay logged in".
    log_in(&alice, PASSWORD, true).await;
    assert!(alice.current_url().await.ends_with("/home"));
    assert!(alice.page_text().await.contains("Hello, bob"));
    alice.screenshot("04-home").await;
    let names = alice.cookie_names().await;
    assert!(
        names.contains(&"id".to_string()) && names.contains(&"remember".to_string()),
        "{names:?}"
    );

    // A second browser logs in normally.
    let other = Browser::open(&driver, "second-browser", &shots).await;
    other.goto(&format!("{base}/login")).await;
    log_in(&other, PASSWORD, false).await;
    assert!(other.page_text().await.contains("Hello, bob"));

    // "Restart" the first browser: the session cookie is gone, remember-me brings it back.
    alice.delete_cookie("id").await;
    alice.goto(&format!("{base}/home")).await;
    let text = alice.page_text().await;
    assert!(
        text.contains("Hello, bob") && text.contains("remembered on this device"),
        "{text}"
    );
    alice.screenshot("05-home-after-restart").await;

    // The password page wants the password again.
    alice.goto(&format!("{base}/sessions")).await;
    assert!(alice.page_text().await.contains("Your sessions"));
    alice.screenshot("06-sessions").await;
    alice.goto(&format!("{base}/password")).await;
    assert!(alice
        .current_url()
        .await
        .contains("/login?next=%2Fpassword"));
    alice.screenshot("07-password-asks-login").await;
    log_in(&alice, PASSWORD, false).await;
    assert!(alice.current_url().await.ends_with("/password"));
    alice.type_into("#current", PASSWORD).await;
    alice.type_into("#new", NEW_PASSWORD).await;
    alice.type_into("#confirm", NEW_PASSWORD).await;
    alice.screenshot("08-password").await;
    alice.click("main button[type=submit]").await;
    assert!(alice.current_url().await.ends_with("/home"));
    assert!(alice
        .page_text()
        .await
        .contains("Your password has been changed."));
    alice.screenshot("09-password-changed").await;

    // The other browser's session is gone.
    other.goto(&format!("{base}/home")).await;
    assert!(other.current_url().await.contains("/login?next=%2Fhome"));
    other.screenshot("10-logged-out-elsewhere").await;

    // Log out (a POST form), back on the login page with the notice.
    alice.click("main form button[type=submit]").await;
    assert!(alice.current_url().await.ends_with("/login"));
    assert!(alice
        .page_text()
        .await
        .contains("You have been signed out."));
    alice.screenshot("11-logged-out").await;
    alice.goto(&format!("{base}/home")).await;
    assert!(alice.current_url().await.contains("/login"));

    other.close().await;
    alice.close().await;
    println!("screenshots in {}", shots.display());
}

#[tokio::test]
async fn a_person_who_forgot_their_password_sets_a_new_one_from_the_mailed_link() {
    if !browser_or_skip() {
        return;
    }
    if !smtp::available() {
        return;
    }
    let sink = smtp::SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--smtp-url", &sink.url()]);
    let base = server.url("");
    let signup = reqwest::Client::new()
        .post(server.url("/signup"))
        .json(&serde_json::json!({ "username": "bob", "email": "bob@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), reqwest::StatusCode::CREATED);
    let driver = Driver::start();
    let shots = screenshots();
    let bob = Browser::open(&driver, "forgot-browser", &shots).await;

    bob.goto(&format!("{base}/login")).await;
    bob.click("#forgot").await;
    assert!(bob.current_url().await.ends_with("/password/forgot"));
    bob.type_into("#email", "bob@example.com").await;
    bob.click("main button[type=submit]").await;
    assert!(bob.page_text().await.contains("a mail is on its way"));
    bob.screenshot("11-forgot-sent").await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let link = loop {
        let found = sink.messages().into_iter().find_map(|raw| {
            let raw = raw
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=");
            if !raw.contains("Subject: Reset your latchkey password") {
                return None;
            }
            let start = raw.find("http://")?;
            Some(raw[start..].split_whitespace().next()?.to_string())
        });
        match found {
            Some(link) => break link,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            None => panic!("no reset mail: {:?}", sink.messages()),
        }
    };
    assert!(link.contains("/password/reset?token="), "{link}");
    bob.goto(&link).await;
    bob.screenshot("12-reset-form").await;
    bob.type_into("#password", NEW_PASSWORD).await;
    bob.type_into("#confirm", NEW_PASSWORD).await;
    bob.click("main button[type=submit]").await;
    assert!(bob.current_url().await.ends_with("/login"));
    assert!(bob
        .page_text()
        .await
        .contains("Your password has been reset"));
    bob.screenshot("13-reset-done").await;
    log_in(&bob, NEW_PASSWORD, false).await;
    assert!(bob.current_url().await.ends_with("/home"));
    assert!(bob.page_text().await.contains("Hello, bob"));

    // The link is spent: opening it again shows the dead-link message, no form.
    bob.goto(&link).await;
    assert!(bob.page_text().await.contains("was already used"));
    bob.close().await;
}

/// The page text once it shows `text`, waiting up to 60 s (a passkey ceremony and the
/// page it loads, on a loaded machine); past that the test fails with the page it saw.
async fn wait_for_text(browser: &Browser, text: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let page = browser.page_text().await;
        if page.contains(text) {
            return page;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{text:?} did not appear within 60 s; the page shows: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_person_adds_a_passkey_signs_in_with_it_alone_and_as_a_second_factor() {
    if !browser_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let address = common::free_address();
    // WebAuthn wants a host name: the relying party is localhost.
    let base = format!("http://localhost:{}", address.port());
    let server = Server::start_at(dir.path(), address, &["--public-url", &base]);
    let driver = Driver::start();
    let bob = bob_logged_in(&server, &base, &driver, "passkey-browser").await;
    assert!(bob.current_url().await.ends_with("/home"));
    bob.goto(&format!("{base}/account")).await;
    let authenticator = bob.add_virtual_authenticator().await;
    // A name with markup in it: shown as typed, so escaped (were it markup, the page
    // text would read "My passkey laptop").
    bob.type_into("#passkey-name", " <b>laptop</b>").await;
    bob.click("#add-passkey").await;
    wait_for_text(&bob, "My passkey <b>laptop</b> (added").await;
    bob.screenshot("21-passkey-added").await;
    let credentials = bob.authenticator_credentials(&authenticator).await;
    assert_eq!(credentials.len(), 1);
    assert_eq!(
        credentials[0]["isResidentCredential"],
        serde_json::json!(true),
        "a discoverable passkey"
    );

    // Log out, then sign in with the passkey alone: no name typed.
    bob.click("nav form button[type=submit]").await;
    assert!(bob.current_url().await.ends_with("/login"));
    bob.click("#passkey-login").await;
    wait_for_text(&bob, "Hello, bob").await;
    bob.screenshot("22-passkey-sign-in").await;

    // Log out, log in with the password: the passkey is the second factor.
    bob.goto(&format!("{base}/home")).await;
    bob.click("nav form button[type=submit]").await;
    log_in(&bob, PASSWORD, false).await;
    let page = wait_for_text(&bob, "Two-step login").await;
    assert!(page.contains("Use a passkey"), "{page}");
    bob.screenshot("23-second-step").await;
    bob.click("#passkey-second-factor").await;
    wait_for_text(&bob, "Hello, bob").await;
    bob.close().await;

    // Both sign-ins were recorded on the stored credential (its last use; the counter
    // webauthn-rs keeps).
    let database = dir.path().join("latchkey.db");
    let connection = rusqlite::Connection::open(&database).expect("open the database");
    let (credential, last_used): (String, Option<i64>) = connection
        .query_row("SELECT credential, last_used_at FROM passkeys", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .expect("one passkey");
    assert!(last_used.is_some());
    let credential: serde_json::Value = serde_json::from_str(&credential).expect("json");
    let counter = credential["cred"]["counter"]
        .as_u64()
        .expect("a sign counter");
    assert!(
        counter >= 2,
        "the counter moved with each sign-in: {credential}"
    );
}

#[tokio::test]
async fn a_person_signs_in_with_another_identity_provider() {
    if !browser_or_skip() || !common::oidc::available() {
        return;
    }
    let provider = common::oidc::Provider::start();
    provider
        .set_account("ola-sub", Some("ola@example.com"), true, "ola")
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let address = common::free_address();
    let base = format!("http://{address}");
    let (id, secret) = provider
        .register_client(&format!("{base}/login/oidc/corp/callback"))
        .await;
    let issuer = format!("corp={}", provider.issuer);
    let server = common::Server::start_at_with_env(
        dir.path(),
        address,
        &["--public-url", &base, "--oidc-provider", &issuer],
        &[
            ("LATCHKEY_OIDC_CORP_CLIENT_ID", &id),
            ("LATCHKEY_OIDC_CORP_CLIENT_SECRET", &secret),
            ("LATCHKEY_OIDC_CORP_LABEL", "Corp SSO"),
        ],
    );
    let driver = Driver::start();
    let shots = screenshots();
    let ola = Browser::open(&driver, "provider-browser", &shots).await;
    ola.goto(&format!("{}/login", server.url(""))).await;
    assert!(ola.page_text().await.contains("Sign in with Corp SSO"));
    ola.click("#sign-in-with-corp").await;
    // The provider's own pages: its login form, then its consent.
    assert!(ola.current_url().await.starts_with(&provider.issuer));
    ola.screenshot("40-provider-login").await;
    ola.type_into("input[name=login]", "ola-sub").await;
    ola.type_into("input[name=password]", "anything").await;
    ola.click("button[type=submit]").await;
    ola.screenshot("41-provider-consent").await;
    ola.click("button[type=submit]").await;
    // Back, logged in: the home page greets the account the provider made.
    let landed = ola.current_url().await;
    assert!(landed.ends_with("/home"), "{landed}");
    ola.screenshot("42-home-by-provider").await;
    assert!(
        ola.page_text().await.contains("ola"),
        "{}",
        ola.page_text().await
    );
    ola.goto(&format!("{}/account", server.url(""))).await;
    let account = ola.page_text().await;
    assert!(account.contains("Corp SSO: connected"), "{account}");
    ola.close().await;
}

/// A person makes an API token on the tokens page, copies it with the page's button
/// (the clipboard then holds it, read back as a paste would), and the copied token works
/// as a bearer token; the list shows it, and nowhere is it shown again.
#[tokio::test]
async fn a_person_makes_an_api_token_copies_it_and_it_works() {
    if !browser_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let base = server.url("");
    let driver = Driver::start();
    let bob = bob_logged_in(&server, &base, &driver, "token-browser").await;
    bob.goto(&format!("{base}/account/tokens")).await;
    bob.type_into("#token-name", "laptop script").await;
    bob.click("#token-create").await;
    bob.screenshot("50-token-made").await;
    let token = bob.property("#new-token-value", "value").await;
    assert!(token.starts_with("lk_"), "{token}");

    bob.grant_permission("clipboard-read").await;
    bob.grant_permission("clipboard-write").await;
    bob.tick("button[data-copy]").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while bob.property("button[data-copy]", "textContent").await != "Copied" {
        assert!(
            std::time::Instant::now() < deadline,
            "the button never said Copied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pasted = bob
        .run_async(
            "const done = arguments[arguments.length - 1];\
             navigator.clipboard.readText().then(done, (error) => done('refused: ' + error));",
        )
        .await;
    assert_eq!(
        pasted.as_str(),
        Some(token.as_str()),
        "the clipboard holds the token"
    );

    // What was copied works as a bearer token, and is never shown again.
    let home = reqwest::Client::new()
        .get(server.url("/home"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("home");
    assert_eq!(home.status(), reqwest::StatusCode::OK);
    let greeting: serde_json::Value = home.json().await.expect("json");
    assert_eq!(greeting["message"], "Hello, bob");
    bob.goto(&format!("{base}/account/tokens")).await;
    let listed = bob.page_text().await;
    assert!(listed.contains("laptop script"), "{listed}");
    assert!(!listed.contains(&token), "the token is shown once only");
    bob.close().await;
}
