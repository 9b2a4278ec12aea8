//! End-to-end in headless Chromium: sign up, log in with "Stay logged in", survive a
//! browser restart, re-enter the password for /password, change it (the other browser is
//! logged out), log out. A screenshot of every page lands in
//! `target/browser-screenshots/`.

mod common;

use common::webdriver::{browser_available, Browser, Driver};
use common::Server;

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

#[tokio::test]
async fn a_person_signs_up_stays_logged_in_changes_password_and_logs_out() {
    if !browser_available() {
        assert!(
            std::env::var("LATCHKEY_REQUIRE_SERVICES").is_err(),
            "chromium and chromedriver are required (LATCHKEY_REQUIRE_SERVICES is set)"
        );
        println!("skipped: /usr/bin/chromium or /usr/bin/chromedriver missing (apt-get install chromium chromium-driver)");
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
