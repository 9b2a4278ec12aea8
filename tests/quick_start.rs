//! The README's library quick start is `examples/quick_start.rs`, word for word, and it
//! works as pasted: a whole login over plain http on localhost.

#[allow(dead_code)]
#[path = "../examples/quick_start.rs"]
mod quick_start;

mod common;

use common::browser;
use reqwest::StatusCode;
use serde_json::json;

#[test]
fn the_readme_shows_the_example_word_for_word() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/quick_start.rs");
    let section = readme
        .split("## Library quick start")
        .nth(1)
        .expect("the README has a quick start");
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a rust block");
    // The example's own header (how to run it) is not in the README.
    let code = example
        .split_once("\n\nuse ")
        .map(|(_, rest)| format!("use {rest}"))
        .expect("the example's code");
    assert_eq!(
        block, code,
        "README.md's quick start and examples/quick_start.rs differ"
    );
}

#[tokio::test]
async fn the_quick_start_logs_in_says_hello_and_logs_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let base = common::serve(quick_start::app(&url).await.expect("app")).await;
    let client = browser();

    let anonymous = client
        .get(format!("{base}/home"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("home");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .post(format!("{base}/login"))
        .json(&json!({ "username": "foo", "password": "not the password" }))
        .send()
        .await
        .expect("login");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let login = client
        .post(format!("{base}/login"))
        .json(&json!({ "username": "foo", "password": "correct horse battery staple" }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .expect("a session cookie")
        .to_string();
    assert!(
        !cookie.contains("Secure"),
        "a cookie plain http brings back: {cookie}"
    );
    let home = client
        .get(format!("{base}/home"))
        .send()
        .await
        .expect("home");
    assert_eq!(home.status(), StatusCode::OK);
    assert_eq!(home.text().await.expect("text"), "Hello, foo");
    let logout = client
        .post(format!("{base}/logout"))
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let home = client
        .get(format!("{base}/home"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("home");
    assert_eq!(home.status(), StatusCode::UNAUTHORIZED);
    // The same database again: the user is not created twice.
    let _again = quick_start::app(&url).await.expect("the app again");
}
