//! The OpenID provider fixture itself (`common/oidc.rs`, `.ci/oidc-provider`) over real
//! HTTP, no latchkey server involved: its discovery document, dynamic registration, the
//! dev login driven by `log_in` for a hand-made code request with PKCE, the callback's
//! `code`, `state` and `iss`, the code exchanged for an ID token that carries the claims
//! the test set, and the request counts.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::oidc::{self, Provider};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

const REDIRECT_URI: &str = "http://127.0.0.1:1/callback";

/// The query parameters of `url`.
fn query_of(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .expect("URL")
        .query_pairs()
        .into_owned()
        .collect()
}

/// The payload of a compact JWS, unverified.
fn jwt_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT of three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
        .expect("JSON payload")
}

#[tokio::test]
async fn the_provider_signs_a_registered_client_in_with_pkce_and_iss() {
    if !oidc::available() {
        return;
    }
    let provider = Provider::start();
    let http = reqwest::Client::new();

    let discovery: Value = http
        .get(provider.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("discovery JSON");
    assert_eq!(discovery["issuer"], provider.issuer.as_str());
    assert!(
        discovery["code_challenge_methods_supported"]
            .as_array()
            .expect("code_challenge_methods_supported")
            .contains(&Value::from("S256")),
        "{discovery}"
    );
    assert_eq!(
        discovery["authorization_response_iss_parameter_supported"],
        true
    );
    let authorization_endpoint = discovery["authorization_endpoint"]
        .as_str()
        .expect("authorization_endpoint");
    let token_endpoint = discovery["token_endpoint"]
        .as_str()
        .expect("token_endpoint");

    let (client_id, client_secret) = provider.register_client(REDIRECT_URI).await;
    provider
        .set_account("alice-sub", Some("alice@example.com"), true, "alice")
        .await;

    let verifier = "the-code-verifier-of-this-test-0123456789-abcdefghijklmnop";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = "state-5f1c";
    let nonce = "nonce-9e2a";
    let authorize_url = reqwest::Url::parse_with_params(
        authorization_endpoint,
        [
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid email"),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("authorization URL");

    let callback = provider.log_in(authorize_url.as_str(), "alice-sub").await;
    assert!(
        callback.starts_with(&format!("{REDIRECT_URI}?")),
        "{callback}"
    );
    let answer = query_of(&callback);
    assert_eq!(answer.get("state").map(String::as_str), Some(state));
    assert_eq!(answer.get("iss"), Some(&provider.issuer));
    let code = answer.get("code").expect("a code on the callback");

    provider.reset_requests().await;
    let token = http
        .post(token_endpoint)
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(token.status(), StatusCode::OK);
    let token: Value = token.json().await.expect("token JSON");
    let claims = jwt_payload(token["id_token"].as_str().expect("an id_token"));
    assert_eq!(claims["iss"], provider.issuer.as_str());
    assert_eq!(claims["aud"], client_id.as_str());
    assert_eq!(claims["sub"], "alice-sub");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["nonce"], nonce);

    let requests = provider.requests().await;
    assert_eq!(requests["token"], 1, "{requests}");
    assert_eq!(requests["auth"], 0, "{requests}");
}

#[tokio::test]
async fn a_second_sign_in_reuses_the_provider_session_and_pkce_is_required() {
    if !oidc::available() {
        return;
    }
    let provider = Provider::start();
    let (client_id, _) = provider.register_client(REDIRECT_URI).await;
    let authorize = |challenge: Option<&str>| {
        let mut url = reqwest::Url::parse_with_params(
            &provider.url("/auth"),
            [
                ("response_type", "code"),
                ("client_id", client_id.as_str()),
                ("redirect_uri", REDIRECT_URI),
                ("scope", "openid email profile"),
                ("state", "s"),
            ],
        )
        .expect("authorization URL");
        if let Some(challenge) = challenge {
            url.query_pairs_mut()
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
        }
        url.to_string()
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(
        b"another-verifier-of-forty-three-characters-or-more",
    ));

    // A subject never set signs in all the same.
    let browser = oidc::browser();
    let first = provider
        .log_in_with(&browser, &authorize(Some(&challenge)), "nobody")
        .await;
    assert!(query_of(&first).contains_key("code"), "{first}");

    // The same browser again: no login form, no consent form, straight to the callback.
    provider.reset_requests().await;
    let second = provider
        .log_in_with(&browser, &authorize(Some(&challenge)), "nobody")
        .await;
    assert!(query_of(&second).contains_key("code"), "{second}");
    let requests = provider.requests().await;
    assert_eq!(requests["auth"], 1, "{requests}");
    assert_eq!(requests["other"], 0, "{requests}");

    // Without PKCE the provider refuses, to the redirect URI.
    let refused = provider.log_in(&authorize(None), "nobody").await;
    let refused = query_of(&refused);
    assert_eq!(
        refused.get("error").map(String::as_str),
        Some("invalid_request"),
        "{refused:?}"
    );
}
