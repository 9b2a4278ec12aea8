//! Port of sanic-cookies (seed 004): a session whose storage is one of several
//! "interfaces" (in memory with scheduled cleanup, Redis, encrypted in-cookie,
//! PostgreSQL), a master interface that reads go to and extra interfaces that every
//! write also goes to, and the `AuthSession` routes: login, logout, protected.
//!
//! Where sanic-cookies locks per thread (and warns that several processes race),
//! latchkey saves with compare-and-swap in the store, so this app can run as many
//! processes as you like on a shared Redis or PostgreSQL.
//!
//! ```text
//! cargo run --example sanic_cookies                                # in memory
//! cargo run --example sanic_cookies -- redis://127.0.0.1:6379      # Redis master
//! cargo run --example sanic_cookies -- memory redis://127.0.0.1    # memory + Redis mirror
//! LATCHKEY_SECRET_KEY=$(head -c 32 /dev/urandom | base64) \
//!   cargo run --example sanic_cookies -- cookie                    # encrypted in-cookie
//! ```
//!
//! Then `curl -c jar -b jar -X POST localhost:8080/login`, `curl -b jar
//! localhost:8080/protected`, `curl -b jar -c jar -X POST localhost:8080/logout`.
//! The seed's login and logout are GET routes; here they are POST, since a GET that
//! logs someone in or out can be triggered by any page (CSRF).

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey::axum::RequireLogin;
use latchkey::store::{
    open_postgres, open_sqlite, CookieStore, FanOutStore, MemoryStore, MirrorFailure, RedisStore,
    SqliteStore,
};
use latchkey::{
    AuthBackend, AuthError, AuthLayer, AuthSession, AuthUser, Authenticator, Session,
    SessionConfig, SessionError, SessionLayer, SessionStore, Timestamp, UserStoreError,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// `authorized_user = {'user_id': 123, 'email': 'foo@bar.baz'}`.
#[derive(Clone, Serialize)]
pub struct AuthorizedUser {
    user_id: u32,
    email: String,
}

impl AuthUser for AuthorizedUser {
    fn user_id(&self) -> String {
        self.user_id.to_string()
    }
}

/// The one user this app knows (the seed logs in a fixed, already authorized user).
fn authorized_user() -> AuthorizedUser {
    AuthorizedUser {
        user_id: 123,
        email: "foo@bar.baz".into(),
    }
}

/// The app's auth backend: the seed has no credentials to check (its login view logs
/// the fixed user in), so the credentials are `()`.
struct Users;

#[async_trait::async_trait]
impl AuthBackend for Users {
    type User = AuthorizedUser;
    type Credentials = ();

    async fn authenticate(&self, (): ()) -> Result<Option<AuthorizedUser>, AuthError> {
        Ok(Some(authorized_user()))
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<AuthorizedUser>, UserStoreError> {
        Ok((user_id == "123").then(authorized_user))
    }
}

/// Where the session is kept: a store on the server, or the cookie itself.
pub enum Interface {
    /// A server-side store (memory, Redis, PostgreSQL, SQLite).
    Store(Arc<dyn SessionStore>),
    /// `InCookieEncrypted`.
    Cookie(CookieStore),
}

/// The interface an argument names: `memory`, `cookie`, `redis://…`, `postgres://…` or
/// `sqlite:…`. An in-memory interface gets its scheduled cleanup task.
pub async fn open_interface(spec: &str) -> Result<Interface, Box<dyn std::error::Error>> {
    Ok(match spec {
        "memory" => {
            let memory = MemoryStore::new();
            tokio::spawn(clean_up(memory.clone()));
            Interface::Store(Arc::new(memory))
        }
        "cookie" => {
            let key = std::env::var("LATCHKEY_SECRET_KEY")
                .map_err(|_| "the cookie interface needs LATCHKEY_SECRET_KEY (32+ bytes)")?;
            Interface::Cookie(CookieStore::new(&[key])?)
        }
        url if url.starts_with("redis") => Interface::Store(Arc::new(RedisStore::open(url).await?)),
        url if url.starts_with("postgres") => Interface::Store(Arc::new(
            latchkey::store::PostgresStore::new(open_postgres(url).await?),
        )),
        url if url.starts_with("sqlite:") => {
            Interface::Store(Arc::new(SqliteStore::new(open_sqlite(url).await?)))
        }
        other => return Err(format!("unknown interface {other:?}").into()),
    })
}

/// `interface.init()`: removes expired sessions from memory every minute.
async fn clean_up(memory: MemoryStore) {
    let mut every_minute = tokio::time::interval(Duration::from_secs(60));
    loop {
        every_minute.tick().await;
        if let Err(error) = memory.delete_expired(Timestamp::now(), 10_000).await {
            eprintln!("session cleanup failed: {error}");
        }
    }
}

/// `GET /`: `sess['foo'] = 'bar'`, then read back from the master.
async fn index(session: Session) -> Result<Json<Value>, SessionError> {
    session.insert("foo", "bar").await?;
    Ok(Json(json!({ "foo": session.get_value("foo").await? })))
}

/// `login_user(request, authorized_user)`, then `sess['foo'] = 'bar'`.
async fn login(auth: AuthSession<AuthorizedUser>) -> Response {
    let user = authorized_user();
    let logged_in = async {
        auth.login(&user).await?;
        auth.session().insert("foo", "bar").await?;
        auth.current_user().await
    };
    match logged_in.await {
        Ok(current_user) => Json(json!({ "current_user": current_user })).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `logout_user(request)`: the session is reset, so neither `foo` nor the user remain.
async fn logout(auth: AuthSession<AuthorizedUser>) -> Response {
    let logged_out = async {
        let before = auth.session().get_value("foo").await?;
        auth.logout().await?;
        let after = auth.session().get_value("foo").await?;
        let user = auth.current_user().await?;
        Ok::<_, latchkey::AuthError>(
            json!({ "foo_before": before, "foo": after, "current_user": user }),
        )
    };
    match logged_out.await {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `@login_required()`.
async fn protected(RequireLogin(user): RequireLogin<AuthorizedUser>) -> Json<Value> {
    Json(json!({ "current_user": user }))
}

/// The app over a master interface and the mirrors every write also goes to.
pub fn app(master: Interface, mirrors: Vec<Arc<dyn SessionStore>>) -> Result<Router, String> {
    let config = SessionConfig::insecure_for_local_development().with_cookie_name("SECURE_SESSION");
    let sessions = match master {
        Interface::Store(store) if mirrors.is_empty() => SessionLayer::from_arc(store, config),
        Interface::Store(store) => SessionLayer::from_arc(
            Arc::new(FanOutStore::new(store, mirrors, MirrorFailure::Log)),
            config,
        ),
        Interface::Cookie(_) if !mirrors.is_empty() => {
            return Err("the in-cookie interface cannot have mirrors".into())
        }
        Interface::Cookie(cookies) => SessionLayer::with_storage(cookies, config),
    };
    Ok(Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/protected", get(protected))
        .layer(AuthLayer::new(Authenticator::new(Users)))
        .layer(sessions))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut specs = std::env::args().skip(1);
    let master = open_interface(&specs.next().unwrap_or_else(|| "memory".into())).await?;
    let mut mirrors = Vec::new();
    for spec in specs {
        match open_interface(&spec).await? {
            Interface::Store(store) => mirrors.push(store),
            Interface::Cookie(_) => return Err("the in-cookie interface cannot be a mirror".into()),
        }
    }
    let bind = std::env::var("LATCHKEY_BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("Serving on http://{bind}/");
    axum::serve(listener, app(master, mirrors)?).await?;
    Ok(())
}
