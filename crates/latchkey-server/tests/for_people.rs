//! Times and durations as people read them: "24 hours" in mails, not "1440 minutes";
//! "6 December 2026, 04:31 UTC" on pages, not a raw RFC 3339 stamp.

mod common;

use common::flows::{logged_in, mail, post, sign_up, PASSWORD};
use common::pages::page;
use common::smtp::{self, SmtpSink};
use common::{client, Server};
use reqwest::StatusCode;
use serde_json::json;

/// Whether `text` holds an RFC 3339 stamp (`2026-12-06T04:31:00Z`).
fn has_raw_stamp(text: &str) -> bool {
    text.as_bytes().windows(20).any(|window| {
        window[4] == b'-'
            && window[7] == b'-'
            && window[10] == b'T'
            && window[19] == b'Z'
            && window[..4].iter().all(u8::is_ascii_digit)
    })
}

#[tokio::test]
async fn mails_and_pages_say_times_as_people_do() {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sink.url();
    let server = Server::start(
        dir.path(),
        &["--smtp-url", &url, "--verify-token-ttl", "24h"],
    );
    sign_up(&server, "tess", "tess@example.com").await;
    let verify = mail(&sink, "tess@example.com", "Verify your email");
    assert!(verify.contains("for 24 hours"), "{verify}");
    let (status, _) = post(
        &client(),
        &server,
        "/login/email",
        json!({ "email": "tess@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let sign_in = mail(&sink, "tess@example.com", "Your sign-in code");
    assert!(sign_in.contains("for 15 minutes"), "{sign_in}");
    assert!(!sign_in.contains("minutes minutes"));

    let browser = logged_in(&server, "tess", PASSWORD).await;
    for path in ["/account", "/sessions"] {
        let html = page(&browser, &server, path).await;
        assert!(html.contains(" UTC"), "{path}: {html}");
        assert!(!has_raw_stamp(&html), "{path} shows a raw stamp: {html}");
    }
    // The JSON API keeps RFC 3339.
    let account: serde_json::Value = browser
        .get(server.url("/account"))
        .send()
        .await
        .expect("account")
        .json()
        .await
        .expect("json");
    let created = account["created_at"].as_str().expect("created_at");
    assert!(has_raw_stamp(created), "{created}");
}
