//! Drives seed 003's flow (sign-up, login, user home, logout) against
//! `examples/flask_no_extension.rs`, on a real SQLite file.

mod common;
#[allow(dead_code)]
#[path = "../examples/flask_no_extension.rs"]
mod flask_no_extension;

use common::{browser, location, page, submit};
use reqwest::StatusCode;

#[tokio::test]
async fn signup_login_user_home_logout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let base = common::serve(flask_no_extension::app(&url).await.expect("app")).await;
    let bob = browser();
    let credentials = [("username", "bob"), ("password", "correct horse battery")];

    let response = submit(
        &bob,
        &format!("{base}/signup/"),
        &format!("{base}/signup/"),
        &credentials,
    )
    .await;
    assert_eq!(location(&response), "/login/");
    assert!(page(&bob, &format!("{base}/login/"))
        .await
        .contains("User account has been created."));

    // The same name again: flashed and back to the form.
    let response = submit(
        &bob,
        &format!("{base}/signup/"),
        &format!("{base}/signup/"),
        &credentials,
    )
    .await;
    assert_eq!(location(&response), "/signup/");
    assert!(page(&bob, &format!("{base}/signup/"))
        .await
        .contains("Username bob is not available."));

    // Wrong password: 401 and the message; right one: to the user's home.
    let response = submit(
        &bob,
        &format!("{base}/login/"),
        &format!("{base}/login/"),
        &[("username", "bob"), ("password", "nope")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("Invalid username or password."));
    let response = submit(
        &bob,
        &format!("{base}/login/"),
        &format!("{base}/login/"),
        &credentials,
    )
    .await;
    assert_eq!(location(&response), "/user/bob/");
    assert!(page(&bob, &format!("{base}/user/bob/"))
        .await
        .contains("<h2>Hello Bob</h2>"));

    // Anyone else, or another user's page: 401.
    let stranger = browser();
    let response = stranger
        .get(format!("{base}/user/bob/"))
        .send()
        .await
        .expect("home");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = bob
        .get(format!("{base}/user/alice/"))
        .send()
        .await
        .expect("home");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Logout: back to the login page, the home page is 401 again.
    let response = submit(
        &bob,
        &format!("{base}/user/bob/"),
        &format!("{base}/logout/"),
        &[],
    )
    .await;
    assert_eq!(location(&response), "/login/");
    assert!(page(&bob, &format!("{base}/login/"))
        .await
        .contains("successfully logged out."));
    let response = bob
        .get(format!("{base}/user/bob/"))
        .send()
        .await
        .expect("home");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The password is stored salted and hashed, never as typed.
    let stored: String = {
        let pool = latchkey::store::open_sqlite(&url).await.expect("open");
        sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'bob'")
            .fetch_one(&pool)
            .await
            .expect("hash")
    };
    assert!(stored.starts_with("$argon2id$") && !stored.contains("correct horse"));
}
