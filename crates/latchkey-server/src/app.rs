//! Wiring: stores, the router, the cleanup task and graceful shutdown.

use crate::api;
use crate::config::{load_secret_key, ServeArgs, SessionStoreKind};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use latchkey::store::{open_sqlite, MemoryStore, SqliteStore};
use latchkey::{
    Authenticator, PasswordHasher, PasswordPolicy, SessionLayer, SessionStore, SqliteUserStore,
    Timestamp, UserStore,
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
}

/// The full router: JSON API behind the session layer (which carries the user loader).
pub fn router(state: AppState, sessions: SessionLayer) -> Router {
    Router::new()
        .route("/signup", post(api::signup))
        .route("/login", post(api::login))
        .route("/home", post(api::home).get(api::home))
        .route("/logout", post(api::logout))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
        .layer(sessions)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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

    let pool = open_sqlite(&args.database.database_url)
        .await
        .with_context(|| format!("cannot open database {}", args.database.database_url))?;
    let user_store = SqliteUserStore::new(pool.clone());
    let session_store: Arc<dyn SessionStore> = match args.session_store {
        SessionStoreKind::Memory => Arc::new(MemoryStore::new()),
        SessionStoreKind::Database => Arc::new(SqliteStore::new(pool)),
    };
    let state = AppState {
        users: Arc::new(user_store.clone()),
        hasher: args.database.hasher()?,
        policy: args.database.policy(),
    };
    let authenticator =
        Authenticator::new(user_store).with_unauthorized_message("I can't let you do that");
    let sessions = SessionLayer::from_arc(session_store.clone(), args.session_config(secure))
        .with_authenticator(authenticator);
    let app = router(state, sessions);

    tokio::spawn(sweep_expired_sessions(session_store, args.cleanup_interval));

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

/// Deletes expired sessions every `interval`, in batches, until none are left.
async fn sweep_expired_sessions(store: Arc<dyn SessionStore>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
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
