//! `bench/run.sh`'s axum-login peer: the latchkey server's JSON routes (`POST /signup`,
//! `POST /login`, `GET|POST /home`, `POST /logout`) written the way axum-login's own
//! examples write them: an `AuthnBackend` over a SQLite users table, password-auth
//! (argon2id m=19456 t=2 p=1, checked on the blocking pool) and a tower-sessions store.
//!
//!   axum-login-peer USERS_DB SESSION_STORE
//!
//! USERS_DB is a SQLite file (created if missing). SESSION_STORE is `memory`, `sqlite`
//! (the users' database), `sqlite://PATH` (another SQLite file), `postgres://...`
//! (schema `peer_sessions`) or `redis://...`. Binds `LATCHKEY_BIND` (default
//! 127.0.0.1:8091).

use std::str::FromStr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_login::{predicate_required, AuthManagerLayerBuilder, AuthUser, AuthnBackend, UserId};
use serde::Deserialize;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::FromRow;
use tokio::task;
use tower_sessions::cookie::time::Duration;
use tower_sessions::{ExpiredDeletion, Expiry, MemoryStore, SessionManagerLayer, SessionStore};
use tower_sessions_redis_store::fred::prelude::{
    ClientLike, Config as RedisConfig, Pool as RedisPool,
};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often the SQL stores sweep expired sessions, as in axum-login's examples. (Redis
/// expires its keys itself; the memory store has no sweep.)
const DELETION_PERIOD: tokio::time::Duration = tokio::time::Duration::from_secs(60);

#[derive(Clone, FromRow)]
struct User {
    id: i64,
    username: String,
    password: String,
}

// By hand so that the password hash never reaches a log.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl AuthUser for User {
    type Id = i64;

    fn id(&self) -> Self::Id {
        self.id
    }

    // A password change ends every session of the user.
    fn session_auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
}

#[derive(Clone, Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum BackendError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    TaskJoin(#[from] task::JoinError),
}

#[derive(Clone)]
struct Backend {
    db: SqlitePool,
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = (String, String);
    type Error = BackendError;

    async fn authenticate(
        &self,
        (username, password): Self::Credentials,
    ) -> Result<Option<Self::User>, Self::Error> {
        let user: Option<User> = sqlx::query_as("select * from users where username = ?")
            .bind(username)
            .fetch_optional(&self.db)
            .await?;
        // Verifying the password is slow and blocking: off the async workers.
        Ok(task::spawn_blocking(move || {
            user.filter(|user| password_auth::verify_password(password, &user.password).is_ok())
        })
        .await?)
    }

    async fn get_user(&self, user_id: &UserId<Self>) -> Result<Option<Self::User>, Self::Error> {
        Ok(sqlx::query_as("select * from users where id = ?")
            .bind(user_id)
            .fetch_optional(&self.db)
            .await?)
    }
}

type AuthSession = axum_login::AuthSession<Backend>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn internal(err: impl std::fmt::Display) -> Response {
    eprintln!("error: {err}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The username and password of a request body, or the 400 answer.
fn required(creds: Credentials) -> Result<(String, String), Response> {
    match (
        creds.username.filter(|name| !name.trim().is_empty()),
        creds.password.filter(|password| !password.is_empty()),
    ) {
        (Some(username), Some(password)) => Ok((username, password)),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "Please specify username and password",
        )),
    }
}

async fn signup(auth_session: AuthSession, Json(creds): Json<Credentials>) -> Response {
    let (username, password) = match required(creds) {
        Ok(pair) => pair,
        Err(answer) => return answer,
    };
    let hash = match task::spawn_blocking(move || password_auth::generate_hash(password)).await {
        Ok(hash) => hash,
        Err(err) => return internal(err),
    };
    let inserted = sqlx::query("insert into users (username, password) values (?, ?)")
        .bind(&username)
        .bind(hash)
        .execute(&auth_session.backend.db)
        .await;
    match inserted {
        Ok(_) => (
            StatusCode::CREATED,
            Json(json!({ "message": "User account has been created." })),
        )
            .into_response(),
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => error(
            StatusCode::CONFLICT,
            format!("Username {username} is not available."),
        ),
        Err(err) => internal(err),
    }
}

async fn login(mut auth_session: AuthSession, Json(creds): Json<Credentials>) -> Response {
    let (username, password) = match required(creds) {
        Ok(pair) => pair,
        Err(answer) => return answer,
    };
    let user = match auth_session.authenticate((username, password)).await {
        Ok(Some(user)) => user,
        Ok(None) => return error(StatusCode::UNAUTHORIZED, "Invalid username or password"),
        Err(err) => return internal(err),
    };
    match auth_session.login(&user).await {
        Ok(()) => Json(json!({ "message": "Logged in" })).into_response(),
        Err(err) => internal(err),
    }
}

async fn home(auth_session: AuthSession) -> Response {
    // login_required below has let only logged-in requests through.
    match auth_session.user {
        Some(user) => {
            Json(json!({ "message": format!("Hello, {}", user.username) })).into_response()
        }
        None => error(StatusCode::UNAUTHORIZED, "Please log in"),
    }
}

async fn logout(mut auth_session: AuthSession) -> Response {
    match auth_session.logout().await {
        Ok(Some(_)) => Json(json!({ "message": "Logged out" })).into_response(),
        Ok(None) => Json(json!({ "message": "Not logged in" })).into_response(),
        Err(err) => internal(err),
    }
}

async fn is_authenticated(auth_session: AuthSession) -> bool {
    auth_session.user.is_some()
}

async fn serve<S>(store: S, db: SqlitePool, bind: &str) -> Result<(), BoxError>
where
    S: SessionStore + Clone,
{
    let session_layer = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_name("id")
        .with_expiry(Expiry::OnInactivity(Duration::days(1)));
    let auth_layer = AuthManagerLayerBuilder::new(Backend { db }, session_layer).build();

    // axum-login's login_required! with a JSON 401 instead of its empty one.
    let protected = Router::new()
        .route("/home", get(home).post(home))
        .route_layer(predicate_required!(
            is_authenticated,
            error(StatusCode::UNAUTHORIZED, "Please log in")
        ));
    let app = protected
        .route("/signup", post(signup))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(auth_layer);

    let listener = tokio::net::TcpListener::bind(bind).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (Some(users_db), Some(store)) = (args.next(), args.next()) else {
        return Err("usage: axum-login-peer USERS_DB SESSION_STORE (memory | sqlite | sqlite://PATH | postgres://... | redis://...)".into());
    };
    let bind = std::env::var("LATCHKEY_BIND").unwrap_or_else(|_| "127.0.0.1:8091".into());

    // WAL, as a production SQLite is set up (and as latchkey sets it up).
    let sqlite = |path: &str| {
        SqliteConnectOptions::from_str(path).map(|options| {
            options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        })
    };
    let db = SqlitePool::connect_with(sqlite(&users_db)?).await?;
    sqlx::query(
        "create table if not exists users (
            id integer primary key autoincrement,
            username text not null unique,
            password text not null
        )",
    )
    .execute(&db)
    .await?;

    if store == "memory" {
        serve(MemoryStore::default(), db, &bind).await
    } else if store == "sqlite" || store.starts_with("sqlite:") {
        let pool = if store == "sqlite" {
            db.clone()
        } else {
            SqlitePool::connect_with(sqlite(&store)?).await?
        };
        let store = SqliteStore::new(pool).with_table_name("peer_sessions")?;
        store.migrate().await?;
        tokio::spawn(store.clone().continuously_delete_expired(DELETION_PERIOD));
        serve(store, db, &bind).await
    } else if store.starts_with("postgres:") || store.starts_with("postgresql:") {
        let pool = sqlx::PgPool::connect(&store).await?;
        let store = PostgresStore::new(pool).with_schema_name("peer_sessions")?;
        store.migrate().await?;
        tokio::spawn(store.clone().continuously_delete_expired(DELETION_PERIOD));
        serve(store, db, &bind).await
    } else if store.starts_with("redis:") {
        let pool = RedisPool::new(RedisConfig::from_url(&store)?, None, None, None, 4)?;
        pool.init().await?;
        serve(RedisStore::new(pool), db, &bind).await
    } else {
        Err(format!("unknown session store {store:?}").into())
    }
}
