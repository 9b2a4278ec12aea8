//! A user's sessions: the JSON endpoints.

use crate::web::headers;
use crate::web::json::{ApiError, HandlerError};
use crate::web::submission::SameSite;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey::axum::{RequireFresh, RequireLogin};
use latchkey::{AuthSession, User};
use serde::Serialize;
use serde_json::json;

/// `GET /sessions` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// The user's live sessions, newest first.
    pub sessions: Vec<crate::sessions::flows::SessionView>,
}

/// `GET /sessions` (JSON): the logged-in user's live sessions, newest first.
#[utoipa::path(get, path = "/sessions", tag = "sessions", responses(
    (status = 200, description = "The sessions", body = SessionList),
    (status = 401, description = "Not logged in", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn sessions(
    auth: AuthSession<User>,
    _login: RequireLogin<User>,
) -> Result<Response, HandlerError> {
    let sessions = crate::sessions::flows::sessions(&auth).await?;
    Ok(headers::json(StatusCode::OK, &SessionList { sessions }))
}

/// `DELETE /sessions/{id}`: ends one of the user's sessions (a fresh login is needed;
/// ending the current one is a logout).
#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions", params(
    ("id" = String, Path, description = "The session id (64 hex characters) from `GET /sessions`"),
), responses(
    (status = 200, description = "Revoked", body = crate::web::json::Message),
    (status = 401, description = "Not logged in, or the login is not fresh (password entered in this session)", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site, or with a bearer token (no token changes how one gets in)", body = crate::web::json::ErrorBody),
    (status = 404, description = "Not a session of this user", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn revoke_session(
    _fresh: RequireFresh<User>,
    auth: AuthSession<User>,
    Path(id): Path<String>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    if crate::sessions::flows::revoke_session(&auth, &id).await? {
        Ok(headers::json(
            StatusCode::OK,
            &json!({ "message": "Session revoked" }),
        ))
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "No such session.").into())
    }
}

/// `POST /sessions/revoke-others` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    /// What happened.
    pub message: String,
    /// How many sessions ended.
    pub revoked: u64,
}

/// `POST /sessions/revoke-others` (JSON): ends every other session of the user (a fresh
/// login is needed).
#[utoipa::path(post, path = "/sessions/revoke-others", tag = "sessions", responses(
    (status = 200, description = "The other sessions ended", body = Revoked),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site, or with a bearer token (no token changes how one gets in)", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn revoke_other_sessions(
    auth: AuthSession<User>,
    _fresh: RequireFresh<User>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    let revoked = crate::sessions::flows::revoke_other_sessions(&auth).await?;
    let body = Revoked {
        message: format!("{revoked} other session(s) logged out."),
        revoked,
    };
    Ok(headers::json(StatusCode::OK, &body))
}
