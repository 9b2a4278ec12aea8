//! Drives seed 002's flow (email login, Stay logged in, next, user_data, flash, logout)
//! against `examples/flask_login_tutorial.rs`.

mod common;
#[allow(dead_code)]
#[path = "../examples/flask_login_tutorial.rs"]
mod flask_login_tutorial;

use common::{browser, location, page, submit};
use reqwest::StatusCode;

const GROVER: [(&str, &str); 2] = [
    ("email", "grover@example.com"),
    ("password", "imbluedabadeedabadaa"),
];

#[tokio::test]
async fn grover_signs_in_by_email_and_out_again() {
    let base = common::serve(flask_login_tutorial::app().await.expect("app")).await;
    let client = browser();
    assert!(page(&client, &format!("{base}/"))
        .await
        .contains("Hello, stranger!"));

    // Wrong password: the form again with the flashed message.
    let response = submit(
        &client,
        &format!("{base}/auth/login"),
        &format!("{base}/auth/login"),
        &[("email", "grover@example.com"), ("password", "wrong")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("Invalid username or password"));

    // A safe next is followed, an absolute one is not.
    let mut fields = GROVER.to_vec();
    fields.push(("remember_me", "y"));
    let response = submit(
        &client,
        &format!("{base}/auth/login?next=/"),
        &format!("{base}/auth/login?next=%2F%3Ftab%3D1"),
        &fields,
    )
    .await;
    assert_eq!(location(&response), "/?tab=1");
    assert!(
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|value| value.to_str().unwrap_or_default().starts_with("remember=")),
        "Stay logged in sets the remember-me cookie"
    );
    let home = page(&client, &format!("{base}/")).await;
    assert!(
        home.contains("Hello, grover!") && home.contains("Role: admin · 12 issues · 2 messages"),
        "{home}"
    );

    let other = browser();
    let response = submit(
        &other,
        &format!("{base}/auth/login"),
        &format!("{base}/auth/login?next=http%3A%2F%2Fevil.example%2F"),
        &GROVER,
    )
    .await;
    assert_eq!(location(&response), "/");

    // Sign out: flashed on the index, which greets a stranger again.
    let response = submit(
        &client,
        &format!("{base}/"),
        &format!("{base}/auth/logout"),
        &[],
    )
    .await;
    assert_eq!(location(&response), "/");
    let index = page(&client, &format!("{base}/")).await;
    assert!(
        index.contains("You have been signed out.") && index.contains("Hello, stranger!"),
        "{index}"
    );
}
