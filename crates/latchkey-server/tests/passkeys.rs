//! The passkey endpoints over HTTP, short of a browser (the ceremonies themselves run in
//! Chromium in `browser.rs`): off without a host name in the public URL; begin answers the
//! options a browser takes (a discoverable, user-verified credential for this relying
//! party), keeps the ceremony in the server-side session and nothing in a cookie; finish
//! without begin, or with an answer that does not check out, is refused and logs nobody
//! in; the account lists no passkeys yet.

mod common;

use common::flows::{call, home};
use common::{client, free_address, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Every passkey endpoint is a `POST`.
const POST: Method = Method::POST;

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn passkeys_are_off_without_a_host_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The default public URL of a loopback address is http://localhost:PORT: passkeys on.
    let server = Server::start(dir.path(), &[]);
    let (status, body) = call(&client(), &server, POST, "/login/passkey/begin", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An IP address is no host name: off, and said so.
    let address = free_address();
    let public = format!("http://{address}");
    let server = Server::start_at(dir.path(), address, &["--public-url", &public]);
    let (status, body) = call(&client(), &server, POST, "/login/passkey/begin", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("Passkeys are off"));
}

#[tokio::test]
async fn ceremonies_start_in_the_session_and_a_bad_answer_logs_nobody_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = free_address();
    let public = format!("http://localhost:{}", address.port());
    let server = Server::start_at(dir.path(), address, &["--public-url", &public]);
    let browser = client();

    // A sign-in without a name: no list of credentials, user verification required.
    let (status, body) = call(&browser, &server, POST, "/login/passkey/begin", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let options = &body["publicKey"];
    assert_eq!(options["rpId"], json!("localhost"));
    assert_eq!(options["userVerification"], json!("required"));
    assert!(options["allowCredentials"]
        .as_array()
        .is_none_or(Vec::is_empty));
    assert!(options["challenge"]
        .as_str()
        .is_some_and(|challenge| challenge.len() >= 43));
    assert!(
        body.get("mediation").is_none(),
        "a button flow, not autofill"
    );

    // An answer that does not check out: refused, and nobody is logged in.
    let forged = json!({ "credential": {
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": { "authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": null },
        "extensions": {}
    }});
    let (status, _) = call(
        &browser,
        &server,
        POST,
        "/login/passkey/finish",
        Some(forged.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(home(&browser, &server).await, StatusCode::UNAUTHORIZED);
    // The ceremony was used up by that answer: a replay has nothing to finish.
    let (status, body) = call(
        &browser,
        &server,
        POST,
        "/login/passkey/finish",
        Some(forged.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &browser,
        &server,
        POST,
        "/login/passkey/finish",
        Some(json!({ "credential": 7 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "malformed");
    // No waiting login: no second-factor ceremony.
    let (status, _) = call(
        &browser,
        &server,
        POST,
        "/login/second-factor/passkey/begin",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Registration needs a fresh login, and asks for a discoverable credential.
    let (status, _) = call(&browser, &server, POST, "/account/passkeys/begin", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &browser,
        &server,
        POST,
        "/signup",
        Some(json!({ "username": "ivy", "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(
        &browser,
        &server,
        POST,
        "/login",
        Some(json!({ "username": "ivy", "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&browser, &server, POST, "/account/passkeys/begin", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let selection = &body["publicKey"]["authenticatorSelection"];
    assert_eq!(selection["residentKey"], json!("required"));
    assert_eq!(selection["userVerification"], json!("required"));
    assert_eq!(body["publicKey"]["rp"]["id"], json!("localhost"));
    let finish = json!({ "name": "x", "credential": {
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": { "attestationObject": "AAAA", "clientDataJSON": "AAAA" },
        "extensions": {}
    }});
    let (status, _) = call(
        &browser,
        &server,
        POST,
        "/account/passkeys/finish",
        Some(finish),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a forged registration");
    let list: Value = browser
        .get(server.url("/account/passkeys"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list, json!({ "passkeys": [] }));
    let (status, _) = call(&browser, &server, POST, "/account/passkeys/12/x", None).await;
    assert!(status.is_client_error());
    let renamed = browser
        .patch(server.url("/account/passkeys/12"))
        .json(&json!({ "name": "y" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(
        renamed.status(),
        StatusCode::NOT_FOUND,
        "not a passkey of ivy"
    );
}
