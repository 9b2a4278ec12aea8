//! The password change: the JSON endpoint.

use crate::password::flows::PasswordChangeError;
use crate::web::headers;
use crate::web::json::{ApiError, HandlerError};
use crate::web::state::AppState;
use crate::web::submission::SameSiteJson;
use crate::web::throttling::ClientIp;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey::axum::RequireFresh;
use latchkey::{AuthSession, User};
use serde::Deserialize;
use serde_json::json;

/// `POST /password` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    #[schema(value_type = String, required = true, max_length = 4096)]
    current: Option<String>,
    /// The new password: 12-128 characters, not easily guessed (a common password, a
    /// sequence, a word with digits, the username…).
    #[schema(value_type = String, required = true, min_length = 12, max_length = 128)]
    new: Option<String>,
}

/// `POST /password` (JSON): changes the password (a fresh login is needed); this session
/// stays, every other session and remembered device ends.
#[utoipa::path(post, path = "/password", tag = "password", request_body = PasswordChange, responses(
    (status = 200, description = "Changed; Set-Cookie carries the session's new token", body = crate::web::json::Message),
    (status = 400, description = "The new password breaks the rules (named in `field`)", body = crate::web::json::ErrorBody),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "The current password is wrong, sent from another site, or with a bearer token", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many wrong current passwords for this account or address; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn change_password(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    ip: ClientIp,
    RequireFresh(user): RequireFresh<User>,
    SameSiteJson(request): SameSiteJson<PasswordChange>,
) -> Result<Response, HandlerError> {
    let current = request.current.unwrap_or_default();
    let new = request.new.unwrap_or_default();
    match crate::password::flows::change_password(&app, &auth, ip, &user, &current, &new).await {
        Ok(()) => Ok(headers::json(
            StatusCode::OK,
            &json!({ "message": "Your password has been changed." }),
        )),
        Err(PasswordChangeError::WrongCurrent) => {
            Err(ApiError::forbidden_field("current", "The current password is wrong.").into())
        }
        Err(PasswordChangeError::Throttled(wait)) => Err(ApiError::too_many(wait).into()),
        Err(PasswordChangeError::Policy(message)) => Err(ApiError::invalid("new", message).into()),
        Err(PasswordChangeError::Failed(error)) => Err(error.into()),
    }
}
