//! Anonymous visitors cost no server state: page views store no session, logged-out
//! forms carry a CSRF token bound to the browser's own cookie (signed double-submit),
//! and a session is stored only once something is written to it. Over HTTP against the
//! real binary on a real SQLite file.

mod common;

use common::flows::home;
use common::pages::{csrf_token, page};
use common::Server;
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

/// Rows in the server's `sessions` table, read from its SQLite file.
fn stored_sessions(dir: &std::path::Path) -> i64 {
    let connection = rusqlite::Connection::open(dir.join("latchkey.db")).expect("open database");
    connection
        .query_row("SELECT COUNT(*) FROM sessions", [], |row| row.get(0))
        .expect("count sessions")
}

/// A browser with its own cookie jar that asks for HTML and follows no redirect.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                reqwest::header::ACCEPT,
                "text/html".parse().expect("header"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .expect("client")
}

async fn post_form(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(server.url(path))
        .form(form)
        .send()
        .await
        .expect("post")
}

#[tokio::test]
async fn a_flood_of_anonymous_page_views_stores_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[]);
    let client = common::bare_client();
    let mut requests = Vec::new();
    for round in 0..150 {
        for path in ["/login", "/signup", "/", "/login?next=%2Fhome"] {
            let client = client.clone();
            let url = server.url(path);
            requests.push(tokio::spawn(async move {
                let response = client
                    .get(url)
                    .header("accept", "text/html")
                    .header("user-agent", format!("flood {round}"))
                    .send()
                    .await
                    .expect("get");
                let cookies = common::set_cookie_headers(&response);
                (response.status(), cookies)
            }));
        }
    }
    for request in requests {
        let (status, cookies) = request.await.expect("task");
        assert_eq!(status, StatusCode::OK);
        // Each page gives the browser its CSRF cookie, and no session cookie.
        assert!(
            cookies.iter().any(|cookie| cookie.starts_with("csrf=")),
            "{cookies:?}"
        );
        assert!(
            !cookies.iter().any(|cookie| cookie.starts_with("id=")),
            "{cookies:?}"
        );
    }
    assert_eq!(
        stored_sessions(dir.path()),
        0,
        "600 page views stored sessions"
    );
}

#[tokio::test]
async fn logged_out_forms_work_without_a_stored_session_and_only_for_their_browser() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[]);
    let (alice, mallory) = (browser(), browser());

    // Sign up through the form: the token is bound to Alice's browser cookie.
    let token = csrf_token(&page(&alice, &server, "/signup").await);
    let mallory_token = csrf_token(&page(&mallory, &server, "/signup").await);
    assert_ne!(token, mallory_token);
    assert_eq!(stored_sessions(dir.path()), 0);
    let form = |token: &str| {
        [
            ("csrf_token", token.to_string()),
            ("username", "alice".to_string()),
            ("password", PASSWORD.to_string()),
            ("confirm", PASSWORD.to_string()),
        ]
    };
    let as_pairs =
        |form: &[(&'static str, String); 4]| -> Vec<(&'static str, String)> { form.to_vec() };
    // Alice's token in Mallory's browser, and in a request with no cookie: refused, no user.
    let refused = mallory
        .post(server.url("/signup"))
        .form(&as_pairs(&form(&token)))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = common::bare_client()
        .post(server.url("/signup"))
        .form(&as_pairs(&form(&token)))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // The cookie value itself is not the token (a plain double-submit would take it).
    let bare = common::bare_client();
    let fresh = bare
        .get(server.url("/signup"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("get");
    let cookie = common::cookie_value(&common::session_cookie(&fresh, "csrf").expect("cookie"));
    let refused = bare
        .post(server.url("/signup"))
        .header("cookie", format!("csrf={cookie}"))
        .form(&as_pairs(&form(&cookie)))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(stored_sessions(dir.path()), 0);

    // Alice's own token in her browser: created, and the flash message is the first
    // thing stored.
    let created = alice
        .post(server.url("/signup"))
        .form(&as_pairs(&form(&token)))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        stored_sessions(dir.path()),
        1,
        "the flash message's session"
    );

    // Log in with the browser-bound token from the login page.
    let login_token = csrf_token(&page(&alice, &server, "/login").await);
    let logged_in = post_form(
        &alice,
        &server,
        "/login",
        &[
            ("csrf_token", login_token.as_str()),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(logged_in.status(), StatusCode::SEE_OTHER);
    assert!(page(&alice, &server, "/home").await.contains("alice"));

    // Logged in, a token bound only to the browser no longer counts: a logout form
    // forged from it is refused, and Alice stays logged in.
    let forged = post_form(
        &alice,
        &server,
        "/logout",
        &[("csrf_token", login_token.as_str())],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(page(&alice, &server, "/home").await.contains("alice"));
    // The token of her session's own page works.
    let session_token = csrf_token(&page(&alice, &server, "/home").await);
    assert_ne!(session_token, login_token);
    let logged_out = post_form(
        &alice,
        &server,
        "/logout",
        &[("csrf_token", session_token.as_str())],
    )
    .await;
    assert_eq!(logged_out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        home(&alice, &server).await,
        StatusCode::SEE_OTHER,
        "logged out"
    );
}

#[tokio::test]
async fn new_sessions_are_capped_per_client_address() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        dir.path(),
        &[
            "--new-sessions-per-ip-hourly",
            "3",
            "--trusted-proxy",
            "127.0.0.1",
        ],
    );
    let credentials = serde_json::json!({ "username": "carol", "password": PASSWORD });
    let signup = common::bare_client()
        .post(server.url("/signup"))
        .json(&credentials)
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), StatusCode::CREATED);
    let log_in = |from: &'static str| {
        let url = server.url("/login");
        let credentials = credentials.clone();
        async move {
            common::bare_client()
                .post(url)
                .header("x-forwarded-for", from)
                .json(&credentials)
                .send()
                .await
                .expect("login")
        }
    };
    for _ in 0..3 {
        assert_eq!(log_in("203.0.113.5").await.status(), StatusCode::OK);
    }
    // The fourth new session from that address: refused, nothing stored.
    let refused = log_in("203.0.113.5").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(common::session_cookie(&refused, "id").is_none());
    assert_eq!(stored_sessions(dir.path()), 3);
    // A visitor without a session from there cannot get one through a notice either.
    let visitor = browser();
    let token = csrf_token(
        &visitor
            .get(server.url("/login"))
            .header("x-forwarded-for", "203.0.113.5")
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("body"),
    );
    let notice = visitor
        .post(server.url("/logout"))
        .header("x-forwarded-for", "203.0.113.5")
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .expect("logout form");
    assert_eq!(notice.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(stored_sessions(dir.path()), 3);
    // Another address is counted on its own; the existing sessions work.
    assert_eq!(log_in("203.0.113.6").await.status(), StatusCode::OK);
    assert_eq!(stored_sessions(dir.path()), 4);
}
