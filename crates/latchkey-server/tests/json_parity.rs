//! Everything the pages do has a JSON twin, over HTTP against the real binary: the
//! account, the sessions list, revoking one or all other sessions, and the password
//! change, each refused when not logged in, not fresh where it must be, or sent from
//! another site.

mod common;

use common::flows::call;
use common::Server;
use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "another long passphrase";

/// A JSON client with its own cookie jar.
fn client() -> reqwest::Client {
    common::client()
}

async fn log_in(client: &reqwest::Client, server: &Server, password: &str) -> StatusCode {
    let body = json!({ "username": "alice", "password": password });
    call(client, server, reqwest::Method::POST, "/login", Some(body))
        .await
        .0
}

#[tokio::test]
async fn account_sessions_and_password_have_json_endpoints() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[]);
    let (laptop, phone) = (client(), client());
    let (status, _) = call(
        &laptop,
        &server,
        reqwest::Method::POST,
        "/signup",
        Some(json!({ "username": "alice", "password": PASSWORD, "email": "alice@example.com" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // Nothing without a login.
    for (method, path) in [
        (reqwest::Method::GET, "/account"),
        (reqwest::Method::GET, "/sessions"),
        (reqwest::Method::POST, "/sessions/revoke-others"),
        (
            reqwest::Method::DELETE,
            &*format!("/sessions/{}", "a".repeat(64)),
        ),
    ] {
        let (status, body) = call(&laptop, &server, method.clone(), path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(body["error"].is_string(), "{body}");
    }
    let change = json!({ "current": PASSWORD, "new": NEW_PASSWORD });
    let (status, _) = call(
        &laptop,
        &server,
        reqwest::Method::POST,
        "/password",
        Some(change.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!(log_in(&laptop, &server, PASSWORD).await, StatusCode::OK);
    assert_eq!(log_in(&phone, &server, PASSWORD).await, StatusCode::OK);

    // The account.
    let (status, account) = call(&laptop, &server, reqwest::Method::GET, "/account", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["username"], "alice");
    assert_eq!(account["email"], "alice@example.com");
    assert_eq!(account["email_verified"], false);
    assert!(account["created_at"]
        .as_str()
        .is_some_and(|at| at.ends_with('Z')));

    // Two sessions, the laptop's marked current.
    let (status, listed) = call(&laptop, &server, reqwest::Method::GET, "/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = listed["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{listed}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(sessions.iter().all(|s| s["method"] == "password"));
    let phone_id = sessions
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .expect("the phone's session")
        .to_string();

    // Revoking: not from another site, not an id of nobody's, then the phone's.
    let cross_site = laptop
        .delete(server.url(&format!("/sessions/{phone_id}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("delete");
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let (status, _) = call(
        &laptop,
        &server,
        reqwest::Method::DELETE,
        &format!("/sessions/{}", "0".repeat(64)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &laptop,
        &server,
        reqwest::Method::DELETE,
        "/sessions/nonsense",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&phone, &server, reqwest::Method::GET, "/home", None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, _) = call(
        &laptop,
        &server,
        reqwest::Method::DELETE,
        &format!("/sessions/{phone_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        call(&phone, &server, reqwest::Method::GET, "/home", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "the revoked session is over"
    );

    // Revoke all others.
    assert_eq!(log_in(&phone, &server, PASSWORD).await, StatusCode::OK);
    let (status, revoked) = call(
        &laptop,
        &server,
        reqwest::Method::POST,
        "/sessions/revoke-others",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revoked["revoked"], 1);
    assert_eq!(
        call(&phone, &server, reqwest::Method::GET, "/home", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // The password: a wrong current one, a weak new one, then the change.
    let (status, body) = call(
        &laptop,
        &server,
        reqwest::Method::POST,
        "/password",
        Some(json!({ "current": "not my password", "new": NEW_PASSWORD })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["field"], "current");
    let (status, body) = call(
        &laptop,
        &server,
        reqwest::Method::POST,
        "/password",
        Some(json!({ "current": PASSWORD, "new": "short" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "new");
    assert_eq!(log_in(&phone, &server, PASSWORD).await, StatusCode::OK);
    let (status, _) = call(
        &laptop,
        &server,
        reqwest::Method::POST,
        "/password",
        Some(change),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // This session goes on; every other one ended; only the new password logs in.
    assert_eq!(
        call(&laptop, &server, reqwest::Method::GET, "/home", None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&phone, &server, reqwest::Method::GET, "/home", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        log_in(&phone, &server, PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(log_in(&phone, &server, NEW_PASSWORD).await, StatusCode::OK);
}
