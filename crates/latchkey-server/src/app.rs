//! Wiring: stores, the router, the cleanup task and graceful shutdown.

use crate::api;
use crate::backend::Backend;
use crate::config::{load_secret_key, ServeArgs, SessionStoreKind};
use crate::pages::{self, Templates};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use latchkey::remember::RememberStore;
use latchkey::store::MemoryStore;
use latchkey::{
    Authenticator, PasswordHasher, PasswordPolicy, SessionLayer, SessionStore, Timestamp, User,
    UserStore,
};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (JSON and forms).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Sessions deleted per cleanup statement.
const CLEANUP_BATCH: u32 = 500;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Where users live.
    pub users: Arc<dyn UserStore>,
    /// Password hashing.
    pub hasher: PasswordHasher,
    /// Rules for new passwords.
    pub policy: PasswordPolicy,
    /// The HTML templates.
    pub templates: Templates,
    /// `scheme://host[:port]` of the public URL, for cross-site checks.
    pub public_origin: String,
}

/// The full router: pages and JSON API on the same paths, behind the session layer
/// (which carries the user loader).
pub fn router(state: AppState, sessions: SessionLayer) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/signup", get(pages::signup_page).post(pages::signup))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/home", post(pages::home).get(pages::home))
        .route("/logout", post(pages::logout))
        .route("/sessions", get(pages::sessions_page))
        .route(
            "/sessions/revoke-others",
            post(pages::revoke_other_sessions),
        )
        .route("/sessions/{id}/revoke", post(pages::revoke_session))
        .route(
            "/password",
            get(pages::password_page).post(pages::change_password),
        )
        .fallback(pages::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
        .layer(sessions)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// `scheme://host[:port]` of a URL (its path dropped).
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let secure = args.check()?;
    let (secret_key, key_source) = load_secret_key(&args.database)?;
    let fingerprint = Sha256::digest(&secret_key);
    tracing::info!(
        source = %key_source,
        fingerprint = %format!("{:02x}{:02x}{:02x}{:02x}", fingerprint[0], fingerprint[1], fingerprint[2], fingerprint[3]),
        "secret key loaded"
    );

    let backend = Backend::open(&args.database).await?;
    let session_store: Arc<dyn SessionStore> = match args.session_store {
        SessionStoreKind::Memory => Arc::new(MemoryStore::new()),
        SessionStoreKind::Database => backend.sessions.clone(),
    };
    let state = AppState {
        users: backend.users.clone(),
        hasher: args.database.hasher()?,
        policy: args.database.policy(),
        templates: Templates::new(args.templates.clone()),
        public_origin: origin_of(&args.public_url()),
    };
    let authenticator = Authenticator::<User>::new(backend.users.clone())
        .with_unauthorized_message("I can't let you do that")
        .with_remember_store(backend.remember.clone());
    let sessions = SessionLayer::from_arc(session_store.clone(), args.session_config(secure))
        .with_authenticator(authenticator);
    let app = router(state, sessions);

    tokio::spawn(sweep_expired(
        session_store,
        backend.remember,
        args.cleanup_interval,
    ));

    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        public_url = %args.public_url(),
        store = ?args.session_store,
        "latchkey listening"
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("server failed")?;
    tracing::info!("latchkey stopped");
    Ok(())
}

/// Deletes expired sessions and remember-me tokens every `interval`, in batches, until
/// none are left.
async fn sweep_expired(
    store: Arc<dyn SessionStore>,
    remember: Arc<dyn RememberStore>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        if let Err(error) = remember.delete_expired(Timestamp::now(), u32::MAX).await {
            tracing::warn!(%error, "expired remember-token sweep failed");
        }
        let mut total = 0;
        loop {
            match store.delete_expired(Timestamp::now(), CLEANUP_BATCH).await {
                Ok(deleted) => {
                    total += deleted;
                    if deleted < u64::from(CLEANUP_BATCH) {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "expired-session sweep failed");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, "expired sessions swept");
        }
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
