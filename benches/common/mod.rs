//! What both benchmarks serve: `GET /home` behind latchkey with user foo logged in,
//! and the same route as a bare axum handler.

use axum::routing::get;
use axum::{Json, Router};
use latchkey::axum::RequireLogin;
use latchkey::session::CookieChange;
use latchkey::store::open_sqlite;
use latchkey::{
    AuthLayer, Authenticator, HashParams, NewUser, PasswordBackend, PasswordHasher, Session,
    SessionConfig, SessionLayer, SessionStore, SqliteUserStore, User, UserStore,
};
use serde_json::{json, Value};
use std::sync::Arc;

async fn home(RequireLogin(user): RequireLogin<User>) -> Json<Value> {
    Json(json!({ "message": format!("Hello, {}", user.username) }))
}

async fn bare_home() -> Json<Value> {
    Json(json!({ "message": format!("Hello, {}", "foo") }))
}

/// The ceiling: the same route and answer, no session layer.
pub fn bare_app() -> Router {
    Router::new().route("/home", get(bare_home))
}

/// latchkey over `store`, users in a fresh in-memory SQLite database, user foo logged
/// in; returns the router and the `Cookie` header value of foo's session.
pub async fn logged_in_app(store: Arc<dyn SessionStore>) -> (Router, String) {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = SqliteUserStore::new(pool);
    let hasher = PasswordHasher::new(HashParams::insecure_fast()).expect("hasher");
    let hash = hasher.hash("foo").await.expect("hash");
    let user = users
        .create(NewUser::new("foo", None, hash).expect("user"))
        .await
        .expect("create");
    let config = SessionConfig::insecure_for_local_development();
    let token = log_in(store.clone(), &config, &user).await;
    let router = Router::new()
        .route("/home", get(home))
        .layer(AuthLayer::new(Authenticator::new(PasswordBackend::new(
            users,
            PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
        ))))
        .layer(SessionLayer::from_arc(store, config));
    (router, format!("id={token}"))
}

/// Logs `user` in on a fresh session over `store`; returns the session's token.
pub async fn log_in(store: Arc<dyn SessionStore>, config: &SessionConfig, user: &User) -> String {
    let session = Session::new(store, Arc::new(config.clone()), None, Default::default());
    session
        .log_in(
            &user.id.to_string(),
            user.credential_version,
            latchkey::Authentication {
                methods: vec!["password".into()],
                fresh: true,
                multi_factor: false,
            },
        )
        .await
        .expect("login");
    let CookieChange::Set(token) = session.cookie_change().await else {
        panic!("no session token after login");
    };
    token
}
