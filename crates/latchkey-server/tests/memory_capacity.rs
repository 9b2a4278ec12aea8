//! `--memory-store-capacity` sizes the memory session store (issue 15, item 5): at
//! capacity 3, three logged-in sessions fill it and a fourth login is refused with 503
//! (logged-in sessions are never evicted); a logout makes room again. Without the flag
//! the start log says the capacity chosen from the available memory and why.

mod common;

use common::flows::{home_with_cookie, login};
use common::{bare_client, signup_and_login, Server};
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn the_flag_sets_how_many_sessions_the_memory_store_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(
        dir.path(),
        &["--session-store", "memory", "--memory-store-capacity", "3"],
        &log,
    );
    let mut cookies = Vec::new();
    for name in ["cap1", "cap2", "cap3"] {
        cookies.push(signup_and_login(&server, name, PASSWORD).await);
    }
    let (status, body) = {
        let response = login(&bare_client(), &server, "cap1", PASSWORD).await;
        (response.status(), response.text().await.expect("body"))
    };
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a fourth session: {body}"
    );
    // The three sessions are intact.
    for cookie in &cookies {
        assert_eq!(home_with_cookie(&server, cookie).await, StatusCode::OK);
    }
    // A logout makes room.
    let logout = bare_client()
        .post(server.url("/logout"))
        .header("cookie", &cookies[0])
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(
        login(&bare_client(), &server, "cap1", PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );

    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.lines()
            .any(|line| line.contains("memory session store")
                && line.contains("capacity=3")
                && line.contains("--memory-store-capacity")),
        "the start log names the capacity and why:\n{text}"
    );
}

#[tokio::test]
async fn the_default_capacity_is_logged_with_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(dir.path(), &["--session-store", "memory"], &log);
    signup_and_login(&server, "default", PASSWORD).await;
    let text = std::fs::read_to_string(&log).expect("log");
    let line = text
        .lines()
        .find(|line| line.contains("memory session store"))
        .unwrap_or_else(|| panic!("no capacity line in:\n{text}"));
    assert!(line.contains("capacity="), "{line}");
    assert!(line.contains("bytes per session"), "{line}");
}
