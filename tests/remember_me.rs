//! Remember-me over HTTP on SQLite: a browser that lost its session cookie is logged in
//! again (not fresh), tokens rotate, a replayed old token is theft, parallel requests
//! are not, logout and password changes end remembered devices.

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::Router;
use latchkey::axum::{RequireFresh, RequireLogin};
use latchkey::remember::SqliteRememberStore;
use latchkey::store::{open_sqlite, SqliteStore};
use latchkey::{
    AuthError, AuthLayer, AuthSession, Authenticator, HashParams, NewUser, PasswordBackend,
    PasswordHasher, SessionConfig, SessionLayer, SqliteUserStore, User, UserStore,
};
use reqwest::StatusCode;
use serde::Deserialize;
use sqlx::SqlitePool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const HASH: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA";
const GRACE: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct LoginQuery {
    remember: Option<u32>,
}

async fn login(
    State(users): State<Arc<SqliteUserStore>>,
    auth: AuthSession<User>,
    Query(query): Query<LoginQuery>,
) -> Result<&'static str, AuthError> {
    let user = users.find_by_login("grover").await?.expect("grover");
    match query.remember {
        Some(days) => auth.login_remembered(&user, days).await?,
        None => auth.login(&user).await?,
    };
    Ok("ok")
}

async fn logout(auth: AuthSession<User>) -> Result<&'static str, AuthError> {
    auth.logout().await?;
    Ok("bye")
}

async fn change_password(
    State(users): State<Arc<SqliteUserStore>>,
    auth: AuthSession<User>,
    RequireLogin(user): RequireLogin<User>,
) -> Result<&'static str, AuthError> {
    let updated = users.set_password_hash(user.id, HASH).await?;
    auth.password_changed(&updated).await?;
    Ok("changed")
}

async fn serve() -> (SocketAddr, SqlitePool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("remember.db").display());
    std::mem::forget(dir);
    let pool = open_sqlite(&url).await.expect("open");
    let users = Arc::new(SqliteUserStore::new(pool.clone()));
    users
        .create(NewUser::new("grover", None, HASH.into()).expect("user"))
        .await
        .expect("create");
    let authenticator = Authenticator::new(PasswordBackend::new(
        SqliteUserStore::new(pool.clone()),
        PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
    ))
    .with_remember_store(SqliteRememberStore::new(pool.clone()))
    .with_remember_grace(GRACE);
    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/password", post(change_password))
        .route(
            "/home",
            get(|RequireLogin(user): RequireLogin<User>| async move { user.username }),
        )
        .route(
            "/fresh",
            get(|RequireFresh(user): RequireFresh<User>| async move { user.username }),
        )
        .with_state(users)
        .layer(AuthLayer::new(authenticator))
        .layer(SessionLayer::new(
            SqliteStore::new(pool.clone()),
            SessionConfig::insecure_for_local_development(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, pool)
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().expect("ascii").to_string())
        .collect()
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    set_cookies(response)
        .into_iter()
        .find(|header| header.starts_with(&format!("{name}=")))
}

fn value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().expect("pair");
    pair.split_once('=').expect("=").1.to_string()
}

/// Logs in with "Stay logged in"; returns the remember cookie value.
async fn remembered_login(address: SocketAddr, days: u32) -> (String, String) {
    let response = reqwest::Client::new()
        .post(format!("http://{address}/login?remember={days}"))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    let header = cookie(&response, "remember").expect("remember cookie");
    (value(&header), header)
}

/// A request from a browser that has only the remember cookie (restarted).
async fn with_remember(address: SocketAddr, path: &str, remember: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{address}{path}"))
        .header("cookie", format!("remember={remember}"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("request")
}

async fn token_rows(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM remember_tokens")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_restarted_browser_is_logged_in_again_but_not_fresh() {
    let (address, pool) = serve().await;
    let (remember, header) = remembered_login(address, 30).await;
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(header.contains(attribute), "{attribute}: {header}");
    }
    assert_eq!(token_rows(&pool).await, 1);
    let stored: Vec<u8> = sqlx::query_scalar("SELECT validator_hash FROM remember_tokens")
        .fetch_one(&pool)
        .await
        .expect("hash");
    assert_eq!(stored.len(), 32);
    assert!(!remember.contains(&String::from_utf8_lossy(&stored).to_string()));

    let response = with_remember(address, "/home", &remember).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = cookie(&response, "id").expect("a new session");
    let rotated = value(&cookie(&response, "remember").expect("rotated remember cookie"));
    assert_ne!(rotated, remember, "the validator rotates on use");
    assert_eq!(
        rotated.split('.').next(),
        remember.split('.').next(),
        "same series"
    );
    assert_eq!(response.text().await.expect("body"), "grover");

    // The restored session works on its own, but is not fresh.
    let client = reqwest::Client::new();
    let home = client
        .get(format!("http://{address}/home"))
        .header("cookie", format!("id={}", value(&session)))
        .send()
        .await
        .expect("home");
    assert_eq!(home.status(), StatusCode::OK);
    let fresh = client
        .get(format!("http://{address}/fresh"))
        .header("cookie", format!("id={}", value(&session)))
        .header("accept", "application/json")
        .send()
        .await
        .expect("fresh");
    assert_eq!(fresh.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        fresh.text().await.expect("body"),
        r#"{"error":"fresh login required"}"#
    );
}

#[tokio::test]
async fn remember_days_set_the_cookie_lifetime_capped_at_30() {
    let (address, _) = serve().await;
    let (_, header) = remembered_login(address, 7).await;
    assert!(header.contains("Max-Age=604800"), "{header}");
    let (_, header) = remembered_login(address, 365).await;
    assert!(header.contains("Max-Age=2592000"), "{header}");
}

#[tokio::test]
async fn parallel_requests_with_one_cookie_are_not_theft() {
    let (address, pool) = serve().await;
    let (remember, _) = remembered_login(address, 30).await;
    let requests = (0..8).map(|_| with_remember(address, "/home", &remember));
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(token_rows(&pool).await, 1, "no theft was declared");
}

#[tokio::test]
async fn a_replayed_old_validator_is_theft_and_revokes_everything() {
    let (address, pool) = serve().await;
    // Another device of the same user, logged in normally.
    let other = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    other
        .post(format!("http://{address}/login"))
        .send()
        .await
        .expect("login");
    assert_eq!(
        other
            .get(format!("http://{address}/home"))
            .send()
            .await
            .expect("home")
            .status(),
        StatusCode::OK
    );

    let (stolen, _) = remembered_login(address, 30).await;
    // The owner uses the cookie: it rotates.
    let response = with_remember(address, "/home", &stolen).await;
    assert_eq!(response.status(), StatusCode::OK);
    let current = value(&cookie(&response, "remember").expect("rotated"));
    tokio::time::sleep(GRACE + Duration::from_millis(200)).await;

    // The thief replays the old value after the grace window.
    let response = with_remember(address, "/home", &stolen).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie(&response, "remember")
        .expect("cleared")
        .contains("Max-Age=0"));
    assert_eq!(
        token_rows(&pool).await,
        0,
        "every remember token of the user is gone"
    );
    assert_eq!(
        with_remember(address, "/home", &current).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        other
            .get(format!("http://{address}/home"))
            .send()
            .await
            .expect("home")
            .status(),
        StatusCode::UNAUTHORIZED,
        "every session of the user is revoked"
    );
}

#[tokio::test]
async fn logout_forgets_the_device_and_password_change_forgets_all() {
    let (address, pool) = serve().await;
    let (first, _) = remembered_login(address, 30).await;
    let (second, _) = remembered_login(address, 30).await;
    assert_eq!(token_rows(&pool).await, 2);

    // Logging out with the first device's cookies deletes that device's token.
    let response = reqwest::Client::new()
        .post(format!("http://{address}/logout"))
        .header("cookie", format!("remember={first}"))
        .send()
        .await
        .expect("logout");
    assert!(cookie(&response, "remember")
        .expect("cleared")
        .contains("Max-Age=0"));
    assert_eq!(token_rows(&pool).await, 1);
    assert_eq!(
        with_remember(address, "/home", &first).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A password change (made from a fresh session) ends the other remembered device.
    let me = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    me.post(format!("http://{address}/login"))
        .send()
        .await
        .expect("login");
    let response = me
        .post(format!("http://{address}/password"))
        .send()
        .await
        .expect("password");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(token_rows(&pool).await, 0);
    assert_eq!(
        with_remember(address, "/home", &second).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me.get(format!("http://{address}/home"))
            .send()
            .await
            .expect("home")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_or_unknown_remember_cookies_are_ignored_and_cleared() {
    let (address, _) = serve().await;
    let (remember, _) = remembered_login(address, 30).await;
    let (series, validator) = remember.split_once('.').expect("dot");
    let mut flipped = validator.to_string().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let unknown_series = format!("AAAAAAAAAAAAAAAAAAAAAA.{validator}");
    for bad in [
        "garbage".to_string(),
        format!("{series}."),
        format!("{series}.{}", &validator[..10]),
        unknown_series,
        "x".repeat(5000),
    ] {
        let response = with_remember(address, "/home", &bad).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{bad:.40}");
        assert!(cookie(&response, "remember")
            .expect("cleared")
            .contains("Max-Age=0"));
    }
    // A wrong validator for a known series (never valid) counts as theft: the user's
    // tokens are revoked, so even the genuine cookie stops working.
    let wrong = format!("{series}.{}", String::from_utf8(flipped).expect("ascii"));
    assert_eq!(
        with_remember(address, "/home", &wrong).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        with_remember(address, "/home", &remember).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
