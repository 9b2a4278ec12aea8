//! Drives the pycnic seed's flow against `examples/pycnic_full_auth.rs` over HTTP.

#[allow(dead_code)]
#[path = "../examples/pycnic_full_auth.rs"]
mod pycnic_full_auth;

use serde_json::{json, Value};

#[tokio::test]
async fn seed_flow_login_home_logout_home() {
    let app = pycnic_full_auth::app().await.expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let url = |path: &str| format!("http://{address}{path}");

    let response = client
        .post(url("/login"))
        .json(&json!({ "username": "foo" }))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "error": "Please specify username and password" })
    );
    let response = client
        .post(url("/login"))
        .json(&json!({ "username": "foo", "password": "bar" }))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 401);

    // 1. POST /login with { "username":"foo", "password":"foo" }.
    let response = client
        .post(url("/login"))
        .json(&json!({ "username": "foo", "password": "foo" }))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_some());
    // 2. GET or POST /home: "Hello, foo".
    for request in [client.get(url("/home")), client.post(url("/home"))] {
        let response = request.send().await.expect("home");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({ "message": "Hello, foo" })
        );
    }
    // 3. POST /logout.
    let response = client.post(url("/logout")).send().await.expect("logout");
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "message": "logged out" })
    );
    // 4. GET or POST /home: 401.
    for request in [client.get(url("/home")), client.post(url("/home"))] {
        let response = request.send().await.expect("home");
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({ "error": "I can't let you do that" })
        );
    }
    let response = client.post(url("/logout")).send().await.expect("logout");
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "message": "Not logged in" })
    );
}
