//! Server-side sessions: tokens, records, the store trait, the per-request handle and
//! the tower layer.

mod config;
mod handle;
#[cfg(feature = "axum")]
pub(crate) mod layer;
mod record;
mod storage;
mod store;
mod token;

#[cfg(feature = "axum")]
pub(crate) use config::site_cookie;
pub use config::{SessionConfig, DEFAULT_MAX_KEYS, DEFAULT_MAX_RECORD_BYTES};
pub use handle::{ClientInfo, CookieChange, Session, SessionError};
#[cfg(feature = "axum")]
pub use layer::{authorization_bearer, request_cookie, SessionLayer, SessionService};
pub use record::{AuthInfo, Authentication, SessionRecord};
pub use storage::{CookieSession, ServerSide, SessionStorage};
pub use store::{BoxError, Loaded, NewSessionPolicy, SessionStore, StoreError};
pub use token::{SessionId, SessionToken, TOKEN_BYTES, TOKEN_CHARS};
