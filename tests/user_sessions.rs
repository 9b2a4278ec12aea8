//! A user's sessions: list, revoke one, revoke all others, and a password change that
//! ends every other session — over HTTP, on the SQLite store.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey::axum::RequireLogin;
use latchkey::store::{open_sqlite, SqliteStore};
use latchkey::{
    AuthError, AuthLayer, AuthSession, Authenticator, HashParams, NewUser, PasswordBackend,
    PasswordHasher, SessionConfig, SessionId, SessionLayer, SqliteUserStore, User, UserStore,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

const HASH: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA";

async fn login(
    State(users): State<Arc<SqliteUserStore>>,
    auth: AuthSession<User>,
    Path(name): Path<String>,
) -> Result<&'static str, AuthError> {
    let user = users.find_by_login(&name).await?.expect("known user");
    auth.login(&user).await?;
    Ok("ok")
}

async fn list(auth: AuthSession<User>) -> Result<Json<Value>, AuthError> {
    let sessions = auth.sessions().await?;
    Ok(Json(json!(sessions
        .iter()
        .map(|session| json!({ "id": session.id.to_hex(), "current": session.current, "ip": session.client_ip }))
        .collect::<Vec<_>>())))
}

async fn revoke(auth: AuthSession<User>, Path(id): Path<String>) -> Result<StatusCode, AuthError> {
    let Some(id) = SessionId::from_hex(&id) else {
        return Ok(StatusCode::BAD_REQUEST);
    };
    Ok(if auth.revoke_session(&id).await? {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn revoke_others(auth: AuthSession<User>) -> Result<Json<Value>, AuthError> {
    Ok(Json(json!(auth.revoke_other_sessions().await?)))
}

async fn change_password(
    State(users): State<Arc<SqliteUserStore>>,
    auth: AuthSession<User>,
    RequireLogin(user): RequireLogin<User>,
) -> Result<&'static str, AuthError> {
    let updated = users.set_password_hash(user.id, HASH).await?;
    auth.password_changed(&updated).await?;
    Ok("ok")
}

async fn serve() -> (SocketAddr, Arc<SqliteUserStore>) {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = Arc::new(SqliteUserStore::new(pool.clone()));
    users
        .create(NewUser::new("grover", None, HASH.into()).expect("user"))
        .await
        .expect("create");
    users
        .create(NewUser::new("elmo", None, HASH.into()).expect("user"))
        .await
        .expect("create");
    let app = Router::new()
        .route("/login/{name}", post(login))
        .route("/sessions", get(list))
        .route("/sessions/{id}/revoke", post(revoke))
        .route("/sessions/revoke-others", post(revoke_others))
        .route("/password", post(change_password))
        .route(
            "/home",
            get(|RequireLogin(user): RequireLogin<User>| async move { user.username }),
        )
        .with_state(users.clone())
        .layer(AuthLayer::new(Authenticator::new(PasswordBackend::new(
            SqliteUserStore::new(pool.clone()),
            PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
        ))))
        .layer(SessionLayer::new(
            SqliteStore::new(pool.clone()),
            SessionConfig::insecure_for_local_development(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    (address, users)
}

struct Browser {
    client: reqwest::Client,
    address: SocketAddr,
}

impl Browser {
    async fn logged_in(address: SocketAddr) -> Browser {
        Self::logged_in_as(address, "grover").await
    }

    async fn logged_in_as(address: SocketAddr, name: &str) -> Browser {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("client");
        let browser = Browser { client, address };
        assert_eq!(
            browser.post(&format!("/login/{name}")).await,
            StatusCode::OK
        );
        browser
    }

    async fn current_id(&self) -> String {
        let sessions = self.sessions().await;
        let current = sessions
            .iter()
            .find(|session| session["current"] == json!(true))
            .expect("current session listed");
        current["id"].as_str().expect("id").to_string()
    }

    async fn post(&self, path: &str) -> StatusCode {
        self.client
            .post(format!("http://{}{path}", self.address))
            .send()
            .await
            .expect("post")
            .status()
    }

    async fn home(&self) -> StatusCode {
        self.client
            .get(format!("http://{}/home", self.address))
            .send()
            .await
            .expect("home")
            .status()
    }

    async fn sessions(&self) -> Vec<Value> {
        let response = self
            .client
            .get(format!("http://{}/sessions", self.address))
            .send()
            .await
            .expect("list");
        response.json::<Vec<Value>>().await.expect("json")
    }
}

#[tokio::test]
async fn list_revoke_one_revoke_others_and_password_change() {
    let (address, _users) = serve().await;
    let a = Browser::logged_in(address).await;
    let b = Browser::logged_in(address).await;
    let c = Browser::logged_in(address).await;

    let listed = a.sessions().await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(
        listed
            .iter()
            .filter(|s| s["current"] == json!(true))
            .count(),
        1
    );
    assert!(
        listed.iter().all(|s| s["ip"] == json!("127.0.0.1")),
        "{listed:?}"
    );

    // Revoke B from A: B is logged out at once.
    let b_id = b.current_id().await;
    assert_eq!(
        a.post(&format!("/sessions/{b_id}/revoke")).await,
        StatusCode::OK
    );
    assert_eq!(b.home().await, StatusCode::UNAUTHORIZED);
    assert_eq!(a.home().await, StatusCode::OK);
    assert_eq!(a.sessions().await.len(), 2);

    // Someone else's session (or an unknown id) cannot be revoked.
    let elmo = Browser::logged_in_as(address, "elmo").await;
    let elmo_id = elmo.current_id().await;
    assert_eq!(
        a.post(&format!("/sessions/{elmo_id}/revoke")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(elmo.home().await, StatusCode::OK);
    let unknown = "ab".repeat(32);
    assert_eq!(
        a.post(&format!("/sessions/{unknown}/revoke")).await,
        StatusCode::NOT_FOUND
    );

    // Revoke all others: C is logged out, A stays.
    assert_eq!(a.post("/sessions/revoke-others").await, StatusCode::OK);
    assert_eq!(c.home().await, StatusCode::UNAUTHORIZED);
    assert_eq!(a.home().await, StatusCode::OK);
    assert_eq!(a.sessions().await.len(), 1);

    // A password change keeps the session that made it and ends every other one.
    let d = Browser::logged_in(address).await;
    assert_eq!(a.post("/password").await, StatusCode::OK);
    assert_eq!(d.home().await, StatusCode::UNAUTHORIZED);
    assert_eq!(a.home().await, StatusCode::OK);
    assert_eq!(a.sessions().await.len(), 1);
    assert_eq!(
        elmo.home().await,
        StatusCode::OK,
        "other users are untouched"
    );
}
