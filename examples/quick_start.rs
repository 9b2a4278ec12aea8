//! The README's library quick start, word for word (`tests/quick_start.rs` checks both):
//! a user, `POST /login`, `/home`, `POST /logout`, on SQLite, over plain http on localhost.
//! Run it with `cargo run --example quick_start`, then:
//!
//! ```text
//! curl -c jar -H 'content-type: application/json' \
//!      -d '{"username":"foo","password":"correct horse battery staple"}' http://127.0.0.1:3000/login
//! curl -b jar http://127.0.0.1:3000/home            # Hello, foo
//! curl -b jar -X POST http://127.0.0.1:3000/logout
//! ```

use axum::{http::StatusCode, routing::get, routing::post, Json, Router};
use latchkey::axum::RequireLogin;
use latchkey::{store, AuthLayer, AuthSession, Authenticator, NewUser, PasswordBackend};
use latchkey::{PasswordCredentials, PasswordHasher, SessionConfig, SessionLayer, SignIn};
use latchkey::{SqliteUserStore, User, UserStore};

#[derive(serde::Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(auth: AuthSession<User>, Json(form): Json<Login>) -> (StatusCode, String) {
    let credentials = PasswordCredentials::new(form.username, form.password);
    match auth.authenticate(credentials).await {
        // The gate logs the user in (a new session token), or asks for more.
        Ok(Some(user)) => match auth.login(&user).await {
            Ok(SignIn::LoggedIn(_)) => (StatusCode::OK, "Logged in".into()),
            Ok(_) => (StatusCode::FORBIDDEN, "Not allowed in".into()),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "Try again".into()),
        },
        Ok(None) => (StatusCode::UNAUTHORIZED, "Wrong name or password".into()),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "Try again".into()),
    }
}

async fn home(RequireLogin(user): RequireLogin<User>) -> String {
    format!("Hello, {}", user.username)
}

async fn logout(auth: AuthSession<User>) -> StatusCode {
    match auth.logout().await {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The app on the SQLite database at `url` (created with its tables if missing), with
/// the user `foo` if there is none yet.
pub async fn app(url: &str) -> Result<Router, Box<dyn std::error::Error>> {
    let pool = store::open_sqlite(url).await?; // users, sessions and more
    let users = SqliteUserStore::new(pool.clone());
    let hasher = PasswordHasher::new(Default::default())?;
    if users.find_by_login("foo").await?.is_none() {
        let hash = hasher.hash("correct horse battery staple").await?;
        users.create(NewUser::new("foo", None, hash)?).await?;
    }
    // Checks passwords at login, loads the user of each session.
    let backend = PasswordBackend::new(users, hasher);
    // Plain http on localhost; with https, SessionConfig::default() (Secure, __Host-).
    let sessions = SessionConfig::insecure_for_local_development();
    Ok(Router::new()
        .route("/login", post(login))
        .route("/home", get(home))
        .route("/logout", post(logout))
        .layer(AuthLayer::new(Authenticator::new(backend)))
        .layer(SessionLayer::new(store::SqliteStore::new(pool), sessions)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = app("sqlite://app.db").await?;
    axum::serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await?;
    Ok(())
}
