//! The encrypted cookie store over HTTP: the session lives in the cookie, tampering and
//! retired keys are refused, keys roll over, oversized sessions are a clear error, and a
//! copied cookie is refused after logout and after a password change.

use axum::routing::{get, post};
use axum::Router;
use latchkey::store::{open_sqlite, CookieStore, MemoryStore, MAX_COOKIE_VALUE_BYTES};
use latchkey::{
    AuthLayer, AuthSession, Authenticator, HashParams, NewUser, PasswordBackend, PasswordHasher,
    Session, SessionConfig, SessionLayer, SessionStore, SqliteUserStore, User, UserStore,
};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use std::sync::Arc;

mod common;

const OLD_KEY: &[u8] = b"an old secret key of at least thirty-two bytes";
const NEW_KEY: &[u8] = b"a new secret key, also longer than thirty-two bytes";

struct App {
    url: String,
    users: SqliteUserStore,
    user: User,
}

/// An app whose sessions live in cookies sealed with `keys`, revocations in memory.
async fn app(keys: &[&[u8]], revocations: Arc<dyn SessionStore>) -> App {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = SqliteUserStore::new(pool);
    let user = users
        .create(NewUser::new("ada", None, "$argon2id$unused".into()).expect("user"))
        .await
        .expect("create");
    let cookies = CookieStore::new(keys)
        .expect("keys")
        .with_revocations(latchkey::store::StoreRevocations::new(revocations));
    let login_user = user.clone();
    let changed_user = users.clone();
    let router = Router::new()
        .route(
            "/login",
            post(move |auth: AuthSession<User>| {
                let user = login_user.clone();
                async move { auth.login(&user).await.map(|_| "ok") }
            }),
        )
        .route(
            "/home",
            get(|auth: AuthSession<User>| async move {
                match auth.current_user().await {
                    Ok(Some(user)) => (StatusCode::OK, user.username),
                    _ => (StatusCode::UNAUTHORIZED, String::new()),
                }
            }),
        )
        .route(
            "/count",
            post(|session: Session| async move {
                let count = session
                    .update("count", |value| {
                        serde_json::json!(value.and_then(|v| v.as_i64()).unwrap_or(0) + 1)
                    })
                    .await?;
                Ok::<_, latchkey::SessionError>(count.to_string())
            }),
        )
        .route(
            "/big",
            post(|session: Session| async move {
                session
                    .insert("blob", "x".repeat(MAX_COOKIE_VALUE_BYTES))
                    .await?;
                Ok::<_, latchkey::SessionError>("stored")
            }),
        )
        .route(
            "/password",
            post(move |auth: AuthSession<User>| {
                let users = changed_user.clone();
                async move {
                    let Ok(Some(user)) = auth.current_user().await else {
                        return StatusCode::UNAUTHORIZED;
                    };
                    let Ok(user) = users.set_password_hash(user.id, "$argon2id$new").await else {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    };
                    match auth.password_changed(&user).await {
                        Ok(()) => StatusCode::OK,
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    }
                }
            }),
        )
        .route(
            "/revoke-others",
            post(|auth: AuthSession<User>| async move {
                auth.revoke_other_sessions().await.map(|_| "done")
            }),
        )
        .route(
            "/logout",
            post(|auth: AuthSession<User>| async move { auth.logout().await.map(|_| "bye") }),
        )
        .layer(AuthLayer::new(
            Authenticator::new(PasswordBackend::new(
                users.clone(),
                PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
            ))
            .with_user_cache(std::time::Duration::ZERO),
        ))
        .layer(SessionLayer::with_storage(
            cookies,
            SessionConfig::insecure_for_local_development(),
        ));
    App {
        url: common::serve(router).await,
        users,
        user,
    }
}

/// Sends a request with `cookie` (if any); returns status, body and the new session
/// cookie value (`Some("")` when the response removes it).
async fn send(
    method: reqwest::Method,
    url: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, format!("id={cookie}"));
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    let set = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.strip_prefix("id="))
        .map(|rest| rest.split(';').next().unwrap_or("").to_string());
    (status, response.text().await.expect("body"), set)
}

async fn log_in(app: &App) -> String {
    let (status, _, cookie) =
        send(reqwest::Method::POST, &format!("{}/login", app.url), None).await;
    assert_eq!(status, StatusCode::OK);
    cookie.expect("a session cookie")
}

#[tokio::test]
async fn the_session_travels_in_the_cookie_and_tampering_is_refused() {
    let app = app(&[OLD_KEY], Arc::new(MemoryStore::new())).await;
    let cookie = log_in(&app).await;
    assert!(
        cookie.len() > 100,
        "a sealed record, not a bare token: {cookie}"
    );
    assert!(!cookie.contains("ada"), "the cookie is encrypted");
    let home = format!("{}/home", app.url);
    let (status, body, set) = send(reqwest::Method::GET, &home, Some(&cookie)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ada"));
    assert_eq!(
        set, None,
        "a read-only request inside the touch interval sends no cookie"
    );

    // Writes come back as a new cookie, and the next request sees them.
    let count = format!("{}/count", app.url);
    let (_, first, cookie) = send(reqwest::Method::POST, &count, Some(&cookie)).await;
    let cookie = cookie.expect("updated cookie");
    let (_, second, _) = send(reqwest::Method::POST, &count, Some(&cookie)).await;
    assert_eq!((first.as_str(), second.as_str()), ("1", "2"));

    // Any flipped character, a truncation or garbage is no session at all.
    let mut tampered = cookie.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for bad in [tampered.as_str(), &cookie[..cookie.len() - 4], "garbage"] {
        let (status, _, _) = send(reqwest::Method::GET, &home, Some(bad)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "cookie {bad:?} was accepted"
        );
    }
}

#[tokio::test]
async fn keys_roll_over_and_retired_keys_stop_opening() {
    let revocations: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let old = app(&[OLD_KEY], revocations.clone()).await;
    let cookie = log_in(&old).await;

    // The new key seals, the old one still opens: the old cookie works and a write
    // re-seals it with the new key.
    let both = app(&[NEW_KEY, OLD_KEY], revocations.clone()).await;
    let (status, _, _) = send(
        reqwest::Method::GET,
        &format!("{}/home", both.url),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, resealed) = send(
        reqwest::Method::POST,
        &format!("{}/count", both.url),
        Some(&cookie),
    )
    .await;
    let resealed = resealed.expect("re-sealed cookie");

    // Once the old key is removed, only the re-sealed cookie opens.
    let new = app(&[NEW_KEY], revocations).await;
    let home = format!("{}/home", new.url);
    let (status, _, _) = send(reqwest::Method::GET, &home, Some(&cookie)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a retired key still opens cookies"
    );
    let (status, _, _) = send(reqwest::Method::GET, &home, Some(&resealed)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_session_too_big_for_a_cookie_is_a_clear_error() {
    let app = app(&[OLD_KEY], Arc::new(MemoryStore::new())).await;
    let cookie = log_in(&app).await;
    let (status, body, set) = send(
        reqwest::Method::POST,
        &format!("{}/big", app.url),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("too large"), "{body}");
    assert_eq!(set, None, "nothing half-saved reaches the browser");
    let (status, _, _) = send(
        reqwest::Method::GET,
        &format!("{}/home", app.url),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the session is as it was");
}

#[tokio::test]
async fn a_copied_cookie_is_refused_after_logout() {
    let revocations = Arc::new(MemoryStore::new());
    let app = app(&[OLD_KEY], revocations.clone()).await;
    let cookie = log_in(&app).await;
    let (token, record) = CookieStore::new(&[OLD_KEY])
        .expect("key")
        .open(&cookie)
        .expect("our own cookie opens");
    let (status, _, set) = send(
        reqwest::Method::POST,
        &format!("{}/logout", app.url),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(set.as_deref(), Some(""), "logout removes the cookie");
    assert_eq!(revocations.len(), 1, "one revocation record");
    let revoked = revocations
        .load(&token.id())
        .await
        .expect("load")
        .expect("revoked");
    assert_eq!(
        revoked.idle_expires_at, record.absolute_expires_at,
        "kept as long as any refreshed copy could live"
    );
    let (status, _, _) = send(
        reqwest::Method::GET,
        &format!("{}/home", app.url),
        Some(&cookie),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the copied cookie still logs in"
    );
}

#[tokio::test]
async fn a_password_change_ends_copies_of_the_cookie() {
    let app = app(&[OLD_KEY], Arc::new(MemoryStore::new())).await;
    let elsewhere = log_in(&app).await;
    let here = log_in(&app).await;
    let (status, _, kept) = send(
        reqwest::Method::POST,
        &format!("{}/password", app.url),
        Some(&here),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let kept = kept.expect("this browser gets a new cookie");
    let home = format!("{}/home", app.url);
    let (status, _, _) = send(reqwest::Method::GET, &home, Some(&kept)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the browser that changed it stays logged in"
    );
    for stale in [&elsewhere, &here] {
        let (status, _, _) = send(reqwest::Method::GET, &home, Some(stale)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a cookie from before the change works"
        );
    }
    let user = app
        .users
        .find_by_id(app.user.id)
        .await
        .expect("find")
        .expect("user");
    assert_eq!(user.credential_version, 2);
}

#[tokio::test]
async fn revoking_other_sessions_ends_the_other_browsers_cookies() {
    let app = app(&[OLD_KEY], Arc::new(MemoryStore::new())).await;
    let other = log_in(&app).await;
    let this = log_in(&app).await;
    let (status, _, _) = send(
        reqwest::Method::POST,
        &format!("{}/revoke-others", app.url),
        Some(&this),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let home = format!("{}/home", app.url);
    let (status, _, _) = send(reqwest::Method::GET, &home, Some(&this)).await;
    assert_eq!(status, StatusCode::OK, "this browser stays");
    let (status, _, _) = send(reqwest::Method::GET, &home, Some(&other)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the other browser's cookie still works"
    );
    // A new login afterwards is not affected by the marker.
    let later = log_in(&app).await;
    let (status, _, _) = send(reqwest::Method::GET, &home, Some(&later)).await;
    assert_eq!(status, StatusCode::OK);
}

/// The per-user marker that "log out everywhere else" leaves is filed under an id only
/// the server can compute (an HMAC under the cookie key), not under one derived from the
/// user id alone, and a server that rolled its key over still honours it.
#[tokio::test]
async fn user_revocations_sit_under_keyed_ids_and_survive_a_key_roll() {
    use sha2::{Digest, Sha256};
    let revocations = Arc::new(MemoryStore::new());
    let old = app(&[OLD_KEY], revocations.clone()).await;
    let other = log_in(&old).await;
    let this = log_in(&old).await;
    let (status, _, _) = send(
        reqwest::Method::POST,
        &format!("{}/revoke-others", old.url),
        Some(&this),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revocations.len(), 1, "one marker");
    // Where the marker used to be: the SHA-256 of a token anyone could compute from the
    // user id. Nothing is there now.
    let guessable: [u8; 32] = Sha256::new()
        .chain_update(b"latchkey revoked user\0")
        .chain_update(old.user.id.to_string().as_bytes())
        .finalize()
        .into();
    let guessed = latchkey::SessionId(Sha256::digest(guessable).into());
    assert!(revocations.load(&guessed).await.expect("load").is_none());
    // A server with a new key in front still refuses the other browser's old cookie.
    let rolled = app(&[NEW_KEY, OLD_KEY], revocations.clone()).await;
    let home = format!("{}/home", rolled.url);
    let (status, _, _) = send(reqwest::Method::GET, &home, Some(&other)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(reqwest::Method::GET, &home, Some(&this)).await;
    assert_eq!(status, StatusCode::OK);
}
