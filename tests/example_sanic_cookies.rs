//! Drives the sanic-cookies seed's routes against `examples/sanic_cookies.rs`: a memory
//! master with a SQLite mirror, the encrypted in-cookie interface, and Redis.

#[allow(dead_code)]
#[path = "../examples/sanic_cookies.rs"]
mod sanic_cookies;

mod common;

use latchkey::store::{open_sqlite, MemoryStore, SqliteStore};
use latchkey::SessionStore;
use reqwest::StatusCode;
use sanic_cookies::{app, open_interface, Interface};
use serde_json::{json, Value};
use std::sync::Arc;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client")
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> (StatusCode, Value) {
    let response = client.request(method, url).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The seed's login → protected → logout → protected flow.
async fn seed_flow(base: &str) {
    let client = client();
    let (status, body) = call(&client, reqwest::Method::GET, format!("{base}/")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "foo": "bar" })));
    let (status, _) = call(&client, reqwest::Method::GET, format!("{base}/protected")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let user = json!({ "user_id": 123, "email": "foo@bar.baz" });
    let (status, body) = call(&client, reqwest::Method::POST, format!("{base}/login")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "current_user": user }))
    );
    let (status, body) = call(&client, reqwest::Method::GET, format!("{base}/protected")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "current_user": user }))
    );

    let (status, body) = call(&client, reqwest::Method::POST, format!("{base}/logout")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "foo_before": "bar", "foo": null, "current_user": null })
    );
    let (status, _) = call(&client, reqwest::Method::GET, format!("{base}/protected")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn memory_master_with_a_sqlite_mirror() {
    let master = Arc::new(MemoryStore::new());
    let mirror = Arc::new(SqliteStore::new(
        open_sqlite("sqlite::memory:").await.expect("open"),
    ));
    let router = app(Interface::Store(master.clone()), vec![mirror.clone()]).expect("app");
    let base = common::serve(router).await;

    // Every write reached the mirror too: after login, both hold user 123's session.
    let client = client();
    call(&client, reqwest::Method::POST, format!("{base}/login")).await;
    let in_master = master.list_for_user("123").await.expect("list");
    let in_mirror = mirror.list_for_user("123").await.expect("list");
    assert_eq!(in_master.len(), 1);
    assert_eq!(in_mirror.len(), 1, "the mirror got the login");
    assert_eq!(in_master[0].0, in_mirror[0].0);
    assert_eq!(in_mirror[0].1.data.get("foo"), Some(&json!("bar")));
    call(&client, reqwest::Method::POST, format!("{base}/logout")).await;
    assert!(
        mirror.list_for_user("123").await.expect("list").is_empty(),
        "logout reached the mirror"
    );

    seed_flow(&base).await;
}

#[tokio::test]
async fn encrypted_in_cookie_interface() {
    let cookies =
        latchkey::store::CookieStore::new(&[b"a test key of thirty-two bytes or more!".as_slice()])
            .expect("key");
    let base = common::serve(app(Interface::Cookie(cookies), Vec::new()).expect("app")).await;
    seed_flow(&base).await;
}

#[tokio::test]
async fn redis_interface() {
    let Some(url) = common::service_url("LATCHKEY_TEST_REDIS") else {
        return;
    };
    let master = open_interface(&url).await.expect("Redis reachable");
    let base = common::serve(app(master, Vec::new()).expect("app")).await;
    seed_flow(&base).await;
}
