//! # latchkey
//!
//! User login and server-side sessions for Rust web services.
//!
//! * [`Session`]: a lazily loaded, server-side session behind an opaque cookie token
//!   (32 random bytes; stores only see its SHA-256). Saves are compare-and-swap; lost
//!   races are re-applied key by key, so concurrent requests never lose updates.
//! * [`SessionStore`]: pluggable stores ([`store::MemoryStore`], [`store::SqliteStore`]).
//! * [`PasswordHasher`]: argon2id off the async workers; [`PasswordBackend`] checks
//!   credentials in constant work whether or not the user exists.
//! * [`AuthSession`] and the axum guards in [`axum`]: login (token rotation), logout,
//!   current user through one [`AuthBackend`] (credentials and user loading).
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use latchkey::{axum::RequireLogin, store, AuthLayer, Authenticator, SessionConfig, SessionLayer, User};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = store::open_sqlite("sqlite://app.db").await?;
//! let users = latchkey::PasswordBackend::new(
//!     latchkey::SqliteUserStore::new(pool.clone()),
//!     latchkey::PasswordHasher::new(latchkey::HashParams::default())?,
//! );
//! let app: Router = Router::new()
//!     .route("/home", get(|RequireLogin(user): RequireLogin<User>| async move {
//!         format!("Hello, {}", user.username)
//!     }))
//!     .layer(AuthLayer::new(Authenticator::new(users)))
//!     .layer(SessionLayer::new(store::SqliteStore::new(pool), SessionConfig::default()));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Emits a structured audit event (target `latchkey::audit`, field `event` = the name) for
/// the gate, the backends and the credential table. Never pass a password, token, validator
/// or hash.
macro_rules! audit {
    ($level:ident, $event:literal $(, $($field:tt)+)?) => {
        tracing::$level!(target: "latchkey::audit", event = $event $(, $($field)+)?, $event)
    };
}

#[cfg(feature = "forward")]
pub mod access_rules;
pub mod access_token;
pub mod auth;
#[cfg(feature = "axum")]
pub mod axum;
pub mod bytes;
pub mod csrf;
pub mod factors;
pub mod flash;
pub mod log_budget;
pub mod mail;
#[cfg(feature = "oidc")]
pub mod oidc;
pub mod password;
#[cfg(feature = "postgres")]
mod pg;
pub mod redirect;
pub mod remember;
pub mod secret_box;
pub mod session;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_error;
pub mod store;
pub mod store_error;
pub mod throttle;
mod time;
pub mod user;

pub use auth::credentials::{CredentialEvent, SessionsEnded};
pub use auth::{
    AuthBackend, AuthError, AuthSession, Authenticator, Evidence, PasswordBackend,
    PasswordCredentials, Proof, Refusal, SecondFactorSource, SecondStepFor, SessionInfo, SignIn,
};
#[cfg(feature = "axum")]
pub use auth::{AuthLayer, AuthService};
pub use password::{HashParams, PasswordError, PasswordHasher, PasswordPolicy, PolicyError};
pub use session::{
    AuthInfo, Authentication, NewSessionPolicy, Session, SessionConfig, SessionError, SessionId,
    SessionRecord, SessionStore, SessionToken, StoreError,
};
#[cfg(feature = "axum")]
pub use session::{SessionLayer, SessionService};
pub use time::Timestamp;
#[cfg(feature = "postgres")]
pub use user::PostgresUserStore;
#[cfg(feature = "sqlite")]
pub use user::SqliteUserStore;
pub use user::{AuthUser, NewUser, User, UserStore, UserStoreError};
