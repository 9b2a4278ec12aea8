//! Sign-in with other identity providers: the JSON endpoints of the account's
//! connections.

use crate::providers::flows::{self, DisconnectError};
use crate::web::for_people::rfc3339;
use crate::web::headers;
use crate::web::json::{ApiError, HandlerError};
use crate::web::state::AppState;
use crate::web::submission::SameSite;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use latchkey::axum::{RequireFresh, RequireLogin};
use latchkey::{AuthSession, User};
use serde::Serialize;
use serde_json::json;

/// One connected provider.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IdentityView {
    /// The provider's configured name.
    provider: String,
    /// The subject at the provider.
    subject: String,
    /// The address the provider last gave.
    email: Option<String>,
    /// Whether the provider said it verified that address.
    email_verified: bool,
    /// When it was connected (RFC 3339).
    linked_at: String,
    /// When it last signed the user in (RFC 3339).
    last_used_at: String,
}

/// `GET /account/identities` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IdentityList {
    identities: Vec<IdentityView>,
}

/// `GET /account/identities`: the providers connected to this account.
#[utoipa::path(get, path = "/account/identities", tag = "providers", responses(
    (status = 200, description = "The connected providers", body = IdentityList),
    (status = 401, description = "Not logged in", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn list(
    State(app): State<AppState>,
    RequireLogin(user): RequireLogin<User>,
) -> Result<Response, HandlerError> {
    let identities = flows::identities(&app, &user)
        .await?
        .into_iter()
        .map(|identity| IdentityView {
            provider: identity.provider,
            subject: identity.subject,
            email: identity.email,
            email_verified: identity.email_verified,
            linked_at: rfc3339(identity.linked_at),
            last_used_at: rfc3339(identity.last_used_at),
        })
        .collect();
    Ok(headers::json(StatusCode::OK, &IdentityList { identities }))
}

/// `DELETE /account/identities/{provider}`: disconnects a provider (a fresh login is
/// needed); refused while it is the account's last way in.
#[utoipa::path(delete, path = "/account/identities/{provider}", tag = "providers", params(
    ("provider" = String, Path, description = "The provider's configured name"),
), responses(
    (status = 200, description = "Disconnected", body = crate::web::json::Message),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site, or with a bearer token (no token changes how one gets in)", body = crate::web::json::ErrorBody),
    (status = 404, description = "That provider is not connected", body = crate::web::json::ErrorBody),
    (status = 409, description = "It is the account's last way in (no password, passkey or other provider)", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn disconnect(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    RequireFresh(user): RequireFresh<User>,
    Path(provider): Path<String>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    match flows::disconnect(&app, &auth, &user, &provider).await {
        Ok(()) => Ok(headers::json(
            StatusCode::OK,
            &json!({ "message": format!("{provider} is disconnected.") }),
        )),
        Err(DisconnectError::NotConnected) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "That provider is not connected.").into())
        }
        Err(DisconnectError::LastWayIn) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "It is the account's last way in: set a password or add a passkey first.",
        )
        .into()),
        Err(DisconnectError::Failed(error)) => Err(error.into()),
    }
}
