//! The account: the JSON endpoint.

use crate::web::headers;
use crate::web::json::HandlerError;
use crate::web::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey::axum::RequireLogin;
use latchkey::User;

/// `GET /account`: the logged-in user's account.
#[utoipa::path(get, path = "/account", tag = "account", responses(
    (status = 200, description = "The account", body = crate::account::flows::Account),
    (status = 401, description = "Not logged in", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn account(
    State(app): State<AppState>,
    RequireLogin(user): RequireLogin<User>,
) -> Result<Response, HandlerError> {
    let account = crate::account::flows::account(&app, &user).await?;
    Ok(headers::json(StatusCode::OK, &account))
}
