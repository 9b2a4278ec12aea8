//! `latchkey::oidc` against a hostile provider: a small HTTP server of this test that
//! publishes a real discovery document and answers the token request with an ID token
//! the test crafted (HS256 under the client secret, which OpenID Connect allows a
//! provider to use). The honest token signs the user in; each forged one (another
//! audience, expired, another nonce, another issuer, tampered with after signing,
//! `alg: none`, signed with another key) is refused and logs nobody in. So is a
//! callback without `iss` from a provider that says it sends one. A multi-tenant issuer
//! (Microsoft's `common`, whose discovery document names `…/{tenantid}/v2.0`) takes a
//! token only when its `iss` is that template filled with the token's own `tid`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use latchkey::oidc::{Callback, OidcError, OidcProvider, ProviderSettings};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const CLIENT_ID: &str = "latchkey-client";
const CLIENT_SECRET: &str = "a client secret the provider shares with latchkey";
const SERVER_SECRET: &[u8] = b"the server's secret key for this test, 32+ bytes";

/// What the token endpoint answers next.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Forgery {
    Honest,
    OtherAudience,
    Expired,
    OtherNonce,
    OtherIssuer,
    Tampered,
    AlgNone,
    OtherKey,
}

#[derive(Default)]
struct Provider {
    issuer: String,
    nonce: String,
    forgery: Option<Forgery>,
    /// For the multi-tenant provider: the token's `iss` and `tid`.
    tenant: Option<(String, Option<String>)>,
}

type Shared = Arc<Mutex<Provider>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(input: &str, key: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(input.as_bytes());
    b64(&mac.finalize().into_bytes())
}

/// The ID token for `forgery`.
fn id_token(provider: &Provider, forgery: Forgery) -> String {
    let mut claims = json!({
        "iss": provider.issuer,
        "sub": "user-42",
        "aud": CLIENT_ID,
        "exp": now() + 300,
        "iat": now(),
        "nonce": provider.nonce,
        "email": "user42@example.com",
        "email_verified": true,
    });
    match forgery {
        Forgery::OtherAudience => claims["aud"] = json!("someone-else"),
        Forgery::Expired => {
            claims["exp"] = json!(now() - 600);
            claims["iat"] = json!(now() - 900);
        }
        Forgery::OtherNonce => claims["nonce"] = json!("a nonce of another flow"),
        Forgery::OtherIssuer => claims["iss"] = json!("https://evil.example"),
        _ => {}
    }
    if let Some((iss, tid)) = &provider.tenant {
        claims["iss"] = json!(iss);
        if let Some(tid) = tid {
            claims["tid"] = json!(tid);
        }
    }
    let alg = if forgery == Forgery::AlgNone {
        "none"
    } else {
        "HS256"
    };
    let header = b64(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes());
    let payload = b64(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let signature = match forgery {
        Forgery::AlgNone => String::new(),
        Forgery::OtherKey => sign(&input, b"not the client secret"),
        _ => sign(&input, CLIENT_SECRET.as_bytes()),
    };
    if forgery == Forgery::Tampered {
        // Signed honestly, then the subject swapped: the signature no longer matches.
        claims["sub"] = json!("admin");
        let payload = b64(claims.to_string().as_bytes());
        return format!("{header}.{payload}.{signature}");
    }
    format!("{input}.{signature}")
}

/// A discovery document naming `issuer`, with its endpoints under `base` and ID tokens
/// signed with `algs`.
fn discovery_document(issuer: &str, base: &str, algs: &[&str]) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/auth"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    })
}

async fn discovery(State(shared): State<Shared>) -> Json<Value> {
    let issuer = shared.lock().expect("lock").issuer.clone();
    let mut document = discovery_document(&issuer, &issuer, &["HS256", "RS256"]);
    document["code_challenge_methods_supported"] = json!(["S256"]);
    document["authorization_response_iss_parameter_supported"] = json!(true);
    Json(document)
}

async fn jwks() -> Json<Value> {
    Json(json!({ "keys": [] }))
}

async fn token(State(shared): State<Shared>) -> Json<Value> {
    let provider = shared.lock().expect("lock");
    let forgery = provider.forgery.unwrap_or(Forgery::Honest);
    Json(json!({
        "access_token": "an access token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token(&provider, forgery),
    }))
}

/// The hostile provider on a free port, and the relying party discovered at it.
async fn start() -> (Shared, OidcProvider) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("address"));
    let shared: Shared = Arc::new(Mutex::new(Provider {
        issuer: issuer.clone(),
        ..Provider::default()
    }));
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = OidcProvider::discover(
        ProviderSettings {
            name: "hostile".into(),
            issuer: issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            redirect_url: "http://127.0.0.1:1/login/oidc/hostile/callback".into(),
        },
        SERVER_SECRET,
    )
    .await
    .expect("discovery");
    (shared, client)
}

/// A parameter of `url`'s query.
fn param(url: &str, name: &str) -> String {
    reqwest::Url::parse(url)
        .expect("URL")
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// Begins a sign-in and finishes it with the token `forgery` makes.
async fn sign_in(
    shared: &Shared,
    client: &OidcProvider,
    forgery: Forgery,
) -> Result<latchkey::oidc::VerifiedIdentity, OidcError> {
    let issuer = shared.lock().expect("lock").issuer.clone();
    sign_in_with(shared, client, forgery, Some(issuer)).await
}

/// Begins a sign-in and finishes it with the token `forgery` makes, the callback
/// carrying `iss`.
async fn sign_in_with(
    shared: &Shared,
    client: &OidcProvider,
    forgery: Forgery,
    iss: Option<String>,
) -> Result<latchkey::oidc::VerifiedIdentity, OidcError> {
    let begun = client.begin(None, None).expect("begin");
    {
        let mut provider = shared.lock().expect("lock");
        provider.nonce = param(&begun.authorize_url, "nonce");
        provider.forgery = Some(forgery);
    }
    assert_eq!(param(&begun.authorize_url, "code_challenge_method"), "S256");
    let callback = Callback {
        code: Some("a code".into()),
        state: Some(param(&begun.authorize_url, "state")),
        iss,
        error: None,
    };
    client.finish(Some(&begun.flow), &callback).await
}

#[tokio::test]
async fn honest_tokens_sign_in_and_forged_ones_do_not() {
    let (shared, client) = start().await;
    let identity = sign_in(&shared, &client, Forgery::Honest)
        .await
        .expect("the honest token");
    assert_eq!(identity.subject, "user-42");
    assert_eq!(identity.email.as_deref(), Some("user42@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.issuer, shared.lock().expect("lock").issuer);

    for forgery in [
        Forgery::OtherAudience,
        Forgery::Expired,
        Forgery::OtherNonce,
        Forgery::OtherIssuer,
        Forgery::Tampered,
        Forgery::AlgNone,
        Forgery::OtherKey,
    ] {
        let answer = sign_in(&shared, &client, forgery).await;
        assert!(
            matches!(answer, Err(OidcError::Invalid(_))),
            "{forgery:?}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn a_callback_without_the_iss_the_provider_promised_is_refused() {
    let (shared, client) = start().await;
    let begun = client.begin(None, None).expect("begin");
    shared.lock().expect("lock").nonce = param(&begun.authorize_url, "nonce");
    let callback = Callback {
        code: Some("a code".into()),
        state: Some(param(&begun.authorize_url, "state")),
        iss: None,
        error: None,
    };
    let answer = client.finish(Some(&begun.flow), &callback).await;
    assert!(
        matches!(answer, Err(OidcError::Mismatch("iss missing"))),
        "{answer:?}"
    );
    // Another issuer's `iss` is refused too; a flow cookie sealed under another key
    // does not open.
    let callback = Callback {
        iss: Some("https://evil.example".into()),
        ..callback
    };
    assert!(matches!(
        client.finish(Some(&begun.flow), &callback).await,
        Err(OidcError::Mismatch("iss"))
    ));
    let tampered = format!("{}A", begun.flow);
    assert!(matches!(
        client.finish(Some(&tampered), &callback).await,
        Err(OidcError::NoFlow)
    ));
}

/// The discovery document of a multi-tenant issuer: its `issuer` is the template.
async fn multi_tenant_discovery(State(shared): State<Shared>) -> Json<Value> {
    let base = shared.lock().expect("lock").issuer.clone();
    let issuer = format!("{base}/{{tenantid}}/v2.0");
    let mut document = discovery_document(&issuer, &base, &["HS256", "RS256"]);
    document["subject_types_supported"] = json!(["pairwise"]);
    Json(document)
}

#[tokio::test]
async fn a_multi_tenant_issuer_takes_each_token_only_from_its_own_tenant() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let shared: Shared = Arc::new(Mutex::new(Provider {
        issuer: base.clone(),
        ..Provider::default()
    }));
    let app = Router::new()
        .route(
            "/common/v2.0/.well-known/openid-configuration",
            get(multi_tenant_discovery),
        )
        .route(
            "/organizations/v2.0/.well-known/openid-configuration",
            get(|| async {
                Json(json!({
                    "issuer": "https://evil.example/{tenantid}/v2.0",
                    "authorization_endpoint": "https://evil.example/auth",
                    "jwks_uri": "https://evil.example/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }))
            }),
        )
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    // A multi-tenant document whose template is another site's: refused at discovery.
    let elsewhere = OidcProvider::discover(
        ProviderSettings {
            name: "other".into(),
            issuer: format!("{base}/organizations/v2.0"),
            client_id: CLIENT_ID.into(),
            client_secret: None,
            redirect_url: "http://127.0.0.1:1/callback".into(),
        },
        SERVER_SECRET,
    )
    .await;
    assert!(
        matches!(elsewhere, Err(OidcError::Misconfigured(_))),
        "{elsewhere:?}"
    );
    let client = OidcProvider::discover(
        ProviderSettings {
            name: "microsoft".into(),
            issuer: format!("{base}/common/v2.0"),
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            redirect_url: "http://127.0.0.1:1/login/oidc/microsoft/callback".into(),
        },
        SERVER_SECRET,
    )
    .await
    .expect("a multi-tenant discovery document is taken");

    let tenant = |iss: String, tid: Option<&str>| Some((iss, tid.map(str::to_string)));
    // The token of tenant T1, from T1: signed in, and recorded under T1's issuer.
    shared.lock().expect("lock").tenant = tenant(format!("{base}/t1/v2.0"), Some("t1"));
    let identity = sign_in_with(&shared, &client, Forgery::Honest, None)
        .await
        .expect("T1's own token");
    assert_eq!(identity.issuer, format!("{base}/t1/v2.0"));
    // Another tenant's issuer on T1's token, no tenant at all, or the template itself.
    for (iss, tid) in [
        (format!("{base}/t2/v2.0"), Some("t1")),
        (format!("{base}/t1/v2.0"), None),
        (format!("{base}/{{tenantid}}/v2.0"), Some("{tenantid}")),
        ("https://evil.example/t1/v2.0".to_string(), Some("t1")),
    ] {
        shared.lock().expect("lock").tenant = tenant(iss.clone(), tid);
        let answer = sign_in_with(&shared, &client, Forgery::Honest, None).await;
        assert!(
            matches!(answer, Err(OidcError::Invalid(_))),
            "{iss} {tid:?}: {answer:?}"
        );
    }
}

/// The RS256 provider's state: its signing keys by id, which of them its key set
/// publishes, and how often the key set was fetched.
struct Rotating {
    issuer: String,
    nonce: String,
    keys: Vec<(String, rsa::RsaPrivateKey)>,
    published: Vec<String>,
    signer: String,
    key_fetches: usize,
}

type RotatingShared = Arc<Mutex<Rotating>>;

async fn rotating_discovery(State(shared): State<RotatingShared>) -> Json<Value> {
    let issuer = shared.lock().expect("lock").issuer.clone();
    Json(discovery_document(&issuer, &issuer, &["RS256"]))
}

async fn rotating_jwks(State(shared): State<RotatingShared>) -> Json<Value> {
    use rsa::traits::PublicKeyParts;
    let mut provider = shared.lock().expect("lock");
    provider.key_fetches += 1;
    let keys: Vec<Value> = provider
        .keys
        .iter()
        .filter(|(kid, _)| provider.published.contains(kid))
        .map(|(kid, key)| {
            json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": b64(&key.n().to_bytes_be()),
                "e": b64(&key.e().to_bytes_be()),
            })
        })
        .collect();
    Json(json!({ "keys": keys }))
}

async fn rotating_token(State(shared): State<RotatingShared>) -> Json<Value> {
    use rsa::signature::{SignatureEncoding, Signer};
    let provider = shared.lock().expect("lock");
    let header = b64(json!({ "alg": "RS256", "kid": provider.signer })
        .to_string()
        .as_bytes());
    let claims = json!({
        "iss": provider.issuer, "sub": "user-7", "aud": CLIENT_ID,
        "exp": now() + 300, "iat": now(), "nonce": provider.nonce,
    });
    let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let key = &provider
        .keys
        .iter()
        .find(|(kid, _)| *kid == provider.signer)
        .expect("the signer's key")
        .1;
    let signing = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let signature = b64(&signing.sign(input.as_bytes()).to_bytes());
    Json(json!({
        "access_token": "an access token",
        "token_type": "Bearer",
        "id_token": format!("{input}.{signature}"),
    }))
}

#[tokio::test]
async fn keys_rotated_at_the_provider_are_fetched_again_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("address"));
    let mut rng = rsa::rand_core::OsRng;
    let keys = ["old", "new", "unknown"].map(|kid| {
        (
            kid.to_string(),
            rsa::RsaPrivateKey::new(&mut rng, 1024).expect("key"),
        )
    });
    let shared: RotatingShared = Arc::new(Mutex::new(Rotating {
        issuer: issuer.clone(),
        nonce: String::new(),
        keys: keys.into(),
        published: vec!["old".into()],
        signer: "old".into(),
        key_fetches: 0,
    }));
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(rotating_discovery))
        .route("/jwks", get(rotating_jwks))
        .route("/token", post(rotating_token))
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = OidcProvider::discover(
        ProviderSettings {
            name: "rotating".into(),
            issuer,
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            redirect_url: "http://127.0.0.1:1/callback".into(),
        },
        SERVER_SECRET,
    )
    .await
    .expect("discovery");
    let sign_in = || async {
        let begun = client.begin(None, None).expect("begin");
        shared.lock().expect("lock").nonce = param(&begun.authorize_url, "nonce");
        let callback = Callback {
            code: Some("a code".into()),
            state: Some(param(&begun.authorize_url, "state")),
            iss: None,
            error: None,
        };
        client.finish(Some(&begun.flow), &callback).await
    };
    let fetches = || shared.lock().expect("lock").key_fetches;
    assert_eq!(fetches(), 1, "discovery fetched the keys");
    sign_in().await.expect("signed with a known key");
    assert_eq!(fetches(), 1, "a known key costs no fetch");

    // The provider rotates: a token signed with the new key makes one fetch, then passes.
    {
        let mut provider = shared.lock().expect("lock");
        provider.published = vec!["new".into()];
        provider.signer = "new".into();
    }
    sign_in().await.expect("signed with the rotated key");
    assert_eq!(fetches(), 2);
    sign_in().await.expect("again");
    assert_eq!(fetches(), 2, "the new key is kept");

    // A key the provider does not publish: one fetch, then refused.
    shared.lock().expect("lock").signer = "unknown".into();
    let answer = sign_in().await;
    assert!(matches!(answer, Err(OidcError::Invalid(_))), "{answer:?}");
    assert_eq!(fetches(), 3);
}
