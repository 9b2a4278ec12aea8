//! A user's sessions: list, revoke one, revoke all others.

use latchkey::{AuthError, AuthSession, SessionId, User};
use serde::Serialize;

/// One of the user's sessions, as the sessions page and `GET /sessions` show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session's id (SHA-256 of its token, 64 hex characters): what revoking takes.
    pub id: String,
    /// Whether it is the session of the request asking.
    pub current: bool,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// When a request last refreshed it (RFC 3339, UTC).
    pub last_active_at: String,
    /// How its user logged in: the methods joined by `+` (`password+totp`).
    pub method: Option<String>,
    /// The client address when it was created.
    pub client_ip: Option<String>,
    /// The client's user agent when it was created.
    pub user_agent: Option<String>,
}

/// The logged-in user's live sessions, newest first.
pub async fn sessions(auth: &AuthSession<User>) -> Result<Vec<SessionView>, AuthError> {
    Ok(auth
        .sessions()
        .await?
        .into_iter()
        .map(|session| SessionView {
            id: session.id.to_hex(),
            current: session.current,
            created_at: crate::web::for_people::rfc3339(session.created_at),
            last_active_at: crate::web::for_people::rfc3339(session.last_active_at),
            method: (!session.methods.is_empty()).then(|| session.methods.join("+")),
            client_ip: session.client_ip,
            user_agent: session.user_agent,
        })
        .collect())
}

/// Ends one of the logged-in user's sessions (`id` as 64 hex characters); `false` when it
/// is not one of theirs or not an id at all. Revoking the current session is a logout.
pub async fn revoke_session(auth: &AuthSession<User>, id: &str) -> Result<bool, AuthError> {
    match SessionId::from_hex(id) {
        Some(id) => auth.revoke_session(&id).await,
        None => Ok(false),
    }
}

/// Ends every other session of the logged-in user; how many ended.
pub async fn revoke_other_sessions(auth: &AuthSession<User>) -> Result<u64, AuthError> {
    auth.revoke_other_sessions().await
}
