//! Personal access tokens: the JSON endpoints.

use crate::tokens::flows::{self, CreatedToken, TokenRequest, TokenView};
use crate::web::headers;
use crate::web::json::{ApiError, HandlerError};
use crate::web::state::AppState;
use crate::web::submission::{SameSite, SameSiteJson};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use latchkey::axum::{RequireFresh, RequireLogin};
use latchkey::User;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `GET /account/tokens` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// The user's live tokens, newest first.
    pub tokens: Vec<TokenView>,
}

/// `POST /account/tokens` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What to call it (1 to 100 characters).
    pub name: String,
    /// What it may do: `read` (GET, HEAD, OPTIONS), `write` (everything a token may).
    pub scopes: Vec<String>,
    /// Days it lives (default 90, at most the server's `--max-token-lifetime`).
    pub expires_in_days: Option<u32>,
    /// A token that never expires (only where the server allows it).
    #[serde(default)]
    pub never_expires: bool,
}

/// `GET /account/tokens` (JSON): the logged-in user's live tokens, newest first.
#[utoipa::path(get, path = "/account/tokens", tag = "tokens", responses(
    (status = 200, description = "The tokens", body = TokenList),
    (status = 401, description = "Not logged in", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn tokens(
    State(app): State<AppState>,
    RequireLogin(user): RequireLogin<User>,
) -> Result<Response, HandlerError> {
    let tokens = flows::tokens(&app, &user).await?;
    Ok(headers::json(StatusCode::OK, &TokenList { tokens }))
}

/// `POST /account/tokens` (JSON): makes a personal access token, shown once. Needs a
/// fresh login in a browser's session: a bearer token never makes a token (403).
#[utoipa::path(post, path = "/account/tokens", tag = "tokens", request_body = CreateToken, responses(
    (status = 201, description = "Made: the token is in the answer, and only there", body = CreatedToken),
    (status = 400, description = "A name, scope or lifetime that is not acceptable", body = crate::web::json::ErrorBody),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent with a bearer token, or from another site", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not JSON", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn create_token(
    State(app): State<AppState>,
    RequireFresh(user): RequireFresh<User>,
    SameSiteJson(body): SameSiteJson<CreateToken>,
) -> Result<Response, HandlerError> {
    let request = TokenRequest {
        name: body.name,
        scopes: body.scopes,
        expires_in_days: body.expires_in_days,
        never_expires: body.never_expires,
    };
    match flows::create(&app, &user, request).await? {
        Ok(created) => Ok(headers::json(StatusCode::CREATED, &created)),
        Err((field, message)) => Err(ApiError::invalid(field, message).into()),
    }
}

/// `DELETE /account/tokens/{id}`: revokes one of the user's tokens at once, in every
/// process. Needs a fresh login in a browser's session (403 with a bearer token).
#[utoipa::path(delete, path = "/account/tokens/{id}", tag = "tokens", params(
    ("id" = String, Path, description = "The token's id from `GET /account/tokens`"),
), responses(
    (status = 200, description = "Revoked", body = crate::web::json::Message),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent with a bearer token, or from another site", body = crate::web::json::ErrorBody),
    (status = 404, description = "Not a live token of this user", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn revoke_token(
    State(app): State<AppState>,
    RequireFresh(user): RequireFresh<User>,
    Path(id): Path<String>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    if flows::revoke(&app, &user, &id).await? {
        Ok(headers::json(
            StatusCode::OK,
            &json!({ "message": "Token revoked" }),
        ))
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "No such token.").into())
    }
}
