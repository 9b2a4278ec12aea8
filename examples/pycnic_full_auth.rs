//! Port of the pycnic "Full Authentication Example" (seed 000): an in-memory SQLite
//! database with users and sessions, user `foo` / password `foo` created at start, and
//! the seed's three routes:
//!
//! 1. `POST /login` with `{"username": "foo", "password": "foo"}` sets up a session.
//! 2. `GET` or `POST /home` answers `{"message": "Hello, foo"}`.
//! 3. `POST /logout` deletes the session; `/home` is then a 401.
//!
//! Run it with `cargo run --release --example pycnic_full_auth` (listens on
//! `LATCHKEY_BIND`, default 127.0.0.1:8080).

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use latchkey::axum::RequireLogin;
use latchkey::store::{open_sqlite, SqliteStore};
use latchkey::{
    AuthBackend, AuthError, AuthLayer, AuthSession, Authenticator, HashParams, NewUser,
    PasswordBackend, PasswordCredentials, PasswordHasher, SessionConfig, SessionLayer,
    SqliteUserStore, User, UserStore,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// What the handlers share: the users and their passwords (the authenticator loads
/// users through the same backend).
type Users = Arc<PasswordBackend<SqliteUserStore>>;

#[derive(Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

type Answer = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn error(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": message })))
}

fn failed(cause: AuthError) -> (StatusCode, Json<Value>) {
    eprintln!("auth error: {cause}");
    error(StatusCode::SERVICE_UNAVAILABLE, "try again later")
}

/// `requires_login` + `Home.get`/`Home.post`.
async fn home(RequireLogin(user): RequireLogin<User>) -> Json<Value> {
    Json(json!({ "message": format!("Hello, {}", user.username) }))
}

/// `Login.post`.
async fn login(
    Extension(users): Extension<Users>,
    auth: AuthSession<User>,
    Json(credentials): Json<Credentials>,
) -> Answer {
    let (Some(username), Some(password)) = (credentials.username, credentials.password) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Please specify username and password",
        ));
    };
    let user = users
        .authenticate(PasswordCredentials::new(username, password))
        .await
        .map_err(failed)?
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "Invalid username or password"))?;
    auth.login(&user).await.map_err(failed)?;
    Ok(Json(json!({ "message": "Logged in" })))
}

/// `Logout.post`.
async fn logout(auth: AuthSession<User>) -> Answer {
    match auth.logout().await.map_err(failed)? {
        Some(_) => Ok(Json(json!({ "message": "logged out" }))),
        None => Ok(Json(json!({ "message": "Not logged in" }))),
    }
}

/// Builds the app on a fresh in-memory database holding user foo/foo.
pub async fn app() -> Result<Router, Box<dyn std::error::Error>> {
    println!("DB: Creating users and sessions tables in memory...");
    let pool = open_sqlite("sqlite::memory:").await?;
    let users: Users = Arc::new(PasswordBackend::new(
        SqliteUserStore::new(pool.clone()),
        PasswordHasher::new(HashParams::default())?,
    ));

    println!("DB: Adding users...");
    let hash = users.hasher().hash("foo").await?;
    users
        .users()
        .create(NewUser::new("foo", None, hash)?)
        .await?;

    let authenticator =
        Authenticator::new(users.clone()).with_unauthorized_message("I can't let you do that");
    Ok(Router::new()
        .route("/home", post(home).get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(Extension(users))
        .layer(AuthLayer::new(authenticator))
        .layer(SessionLayer::new(
            SqliteStore::new(pool),
            SessionConfig::insecure_for_local_development(),
        )))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::var("LATCHKEY_BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let app = app().await?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("Serving on {bind}");
    axum::serve(listener, app).await?;
    Ok(())
}
