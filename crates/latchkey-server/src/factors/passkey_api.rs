//! The JSON side of passkeys (what the pages' script and mobile clients call), over the
//! use cases in [`crate::factors::passkeys`]. Every ceremony is two requests: `begin` answers the
//! options for `navigator.credentials.create` / `.get` (their state waits in the
//! session), `finish` takes the browser's answer.

use crate::factors::passkeys::{self, PasskeyError};
use crate::factors::second_factor::SecondStep;
use crate::web::for_people::rfc3339;
use crate::web::headers;
use crate::web::json::{ApiError, HandlerError};
use crate::web::state::AppState;
use crate::web::submission::{SameSite, SameSiteJson};
use crate::web::throttling::ClientIp;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use latchkey::axum::{RequireFresh, RequireLogin};
use latchkey::factors::passkeys::{PublicKeyCredential, RegisterPublicKeyCredential};
use latchkey::{AuthSession, User};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The answer to a passkey ceremony that failed.
fn refused(error: PasskeyError) -> HandlerError {
    match error {
        PasskeyError::Off => ApiError::new(
            StatusCode::NOT_FOUND,
            "Passkeys are off on this server (its public URL has no host name).",
        )
        .into(),
        PasskeyError::NotStarted => ApiError::new(
            StatusCode::BAD_REQUEST,
            "No passkey ceremony was started in this session: call begin first.",
        )
        .into(),
        PasskeyError::Refused(why) => {
            tracing::info!(target: "latchkey::audit", event = "passkey_refused", %why, "passkey_refused");
            ApiError::new(StatusCode::UNAUTHORIZED, "The passkey was not accepted.").into()
        }
        PasskeyError::BadName(reason) => ApiError::invalid("name", reason).into(),
        PasskeyError::Failed(error) => error.into(),
    }
}

/// `POST /account/passkeys/finish` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// A name to tell it by (at most 64 characters).
    #[schema(max_length = 64)]
    name: Option<String>,
    /// What `navigator.credentials.create` answered (WebAuthn `PublicKeyCredential`,
    /// binary fields base64url).
    #[schema(value_type = Object)]
    credential: RegisterPublicKeyCredential,
}

/// A body of a `navigator.credentials.get` answer.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionBody {
    /// What `navigator.credentials.get` answered (WebAuthn `PublicKeyCredential`,
    /// binary fields base64url).
    #[schema(value_type = Object)]
    credential: PublicKeyCredential,
}

/// `PATCH /account/passkeys/{id}` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    /// The new name (at most 64 characters).
    #[schema(value_type = String, required = true, max_length = 64)]
    name: Option<String>,
}

/// One passkey as `GET /account/passkeys` lists it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PasskeyView {
    /// Its id (for renaming and deleting).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// When it was added (RFC 3339, UTC).
    pub created_at: String,
    /// When it last signed in (RFC 3339, UTC).
    pub last_used_at: Option<String>,
}

/// `GET /account/passkeys` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PasskeyList {
    /// The user's passkeys, oldest first.
    pub passkeys: Vec<PasskeyView>,
}

/// A passkey id from the path; any other text names no passkey (404).
fn passkey_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "No such passkey."))
}

/// The options a `begin` answers, as the browser API takes them.
fn options(value: serde_json::Value) -> Response {
    headers::json(StatusCode::OK, &value)
}

/// `POST /account/passkeys/begin`: options to create a passkey (a fresh login is needed).
#[utoipa::path(post, path = "/account/passkeys/begin", tag = "passkeys", responses(
    (status = 200, description = "Options for navigator.credentials.create", body = Object),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site, or with a bearer token (no token changes how one gets in)", body = crate::web::json::ErrorBody),
    (status = 404, description = "Passkeys are off on this server", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn begin_registration(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    RequireFresh(user): RequireFresh<User>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    passkeys::begin_registration(&app, &auth, &user)
        .await
        .map(options)
        .map_err(refused)
}

/// `POST /account/passkeys/finish`: stores the new passkey; the other sessions end.
#[utoipa::path(post, path = "/account/passkeys/finish", tag = "passkeys", request_body = RegisterBody, responses(
    (status = 201, description = "Added", body = crate::web::json::Message),
    (status = 400, description = "Malformed, no ceremony started, or a name with control, invisible or text-direction characters", body = crate::web::json::ErrorBody),
    (status = 401, description = "Not logged in, or the passkey was not accepted", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site", body = crate::web::json::ErrorBody),
    (status = 404, description = "Passkeys are off on this server", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn finish_registration(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    RequireLogin(user): RequireLogin<User>,
    SameSiteJson(body): SameSiteJson<RegisterBody>,
) -> Result<Response, HandlerError> {
    let name = body.name.unwrap_or_default();
    passkeys::finish_registration(&app, &auth, &user, &name, &body.credential)
        .await
        .map_err(refused)?;
    Ok(headers::json(
        StatusCode::CREATED,
        &json!({ "message": "Passkey added." }),
    ))
}

/// `GET /account/passkeys`: the user's passkeys.
#[utoipa::path(get, path = "/account/passkeys", tag = "passkeys", responses(
    (status = 200, description = "The passkeys", body = PasskeyList),
    (status = 401, description = "Not logged in", body = crate::web::json::ErrorBody),
    (status = 404, description = "Passkeys are off on this server", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn list(
    State(app): State<AppState>,
    RequireLogin(user): RequireLogin<User>,
) -> Result<Response, HandlerError> {
    let passkeys = passkeys::list(&app, user.id).await.map_err(refused)?;
    let passkeys = passkeys
        .into_iter()
        .map(|stored| PasskeyView {
            id: stored.id,
            name: stored.name,
            created_at: rfc3339(stored.created_at),
            last_used_at: stored.last_used_at.map(rfc3339),
        })
        .collect();
    Ok(headers::json(StatusCode::OK, &PasskeyList { passkeys }))
}

/// `PATCH /account/passkeys/{id}`: renames one of the user's passkeys.
#[utoipa::path(patch, path = "/account/passkeys/{id}", tag = "passkeys", request_body = RenameBody, params(
    ("id" = i64, Path, description = "The passkey's id from GET /account/passkeys"),
), responses(
    (status = 200, description = "Renamed", body = crate::web::json::Message),
    (status = 400, description = "No name, or one with control, invisible or text-direction characters, or over 64 characters", body = crate::web::json::ErrorBody),
    (status = 401, description = "Not logged in", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site", body = crate::web::json::ErrorBody),
    (status = 404, description = "Not a passkey of this user, or passkeys are off", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn rename(
    State(app): State<AppState>,
    RequireLogin(user): RequireLogin<User>,
    Path(id): Path<String>,
    SameSiteJson(body): SameSiteJson<RenameBody>,
) -> Result<Response, HandlerError> {
    let id = passkey_id(&id)?;
    let name = body
        .name
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("name", "name is required"))?;
    if passkeys::rename(&app, &user, id, &name)
        .await
        .map_err(refused)?
    {
        Ok(headers::json(
            StatusCode::OK,
            &json!({ "message": "Renamed." }),
        ))
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "No such passkey.").into())
    }
}

/// `DELETE /account/passkeys/{id}`: deletes one of the user's passkeys (a fresh login is
/// needed); the other sessions end.
#[utoipa::path(delete, path = "/account/passkeys/{id}", tag = "passkeys", params(
    ("id" = i64, Path, description = "The passkey's id from GET /account/passkeys"),
), responses(
    (status = 200, description = "Deleted", body = crate::web::json::Message),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site, or with a bearer token (no token changes how one gets in)", body = crate::web::json::ErrorBody),
    (status = 404, description = "Not a passkey of this user, or passkeys are off", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn delete(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    RequireFresh(user): RequireFresh<User>,
    Path(id): Path<String>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    let id = passkey_id(&id)?;
    if passkeys::delete(&app, &auth, &user, id)
        .await
        .map_err(refused)?
    {
        Ok(headers::json(
            StatusCode::OK,
            &json!({ "message": "Passkey deleted." }),
        ))
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "No such passkey.").into())
    }
}

/// `POST /login/passkey/begin`: options to sign in with a passkey alone.
#[utoipa::path(post, path = "/login/passkey/begin", tag = "passkeys", responses(
    (status = 200, description = "Options for navigator.credentials.get", body = Object),
    (status = 403, description = "Sent from another site", body = crate::web::json::ErrorBody),
    (status = 404, description = "Passkeys are off on this server", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many new sessions from this address; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn begin_sign_in(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    passkeys::begin_sign_in(&app, &auth)
        .await
        .map(options)
        .map_err(refused)
}

/// `POST /login/passkey/finish`: signs in with the passkey's answer (a user-verified
/// passkey is two factors; the login is fresh).
#[utoipa::path(post, path = "/login/passkey/finish", tag = "passkeys", request_body = AssertionBody, responses(
    (status = 200, description = "Logged in; Set-Cookie carries the new session", body = crate::web::json::Message),
    (status = 400, description = "Malformed, or no ceremony started", body = crate::web::json::ErrorBody),
    (status = 401, description = "The passkey was not accepted", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site", body = crate::web::json::ErrorBody),
    (status = 404, description = "Passkeys are off on this server", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn finish_sign_in(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    SameSiteJson(body): SameSiteJson<AssertionBody>,
) -> Result<Response, HandlerError> {
    passkeys::finish_sign_in(&app, &auth, &body.credential)
        .await
        .map_err(refused)?;
    Ok(headers::json(
        StatusCode::OK,
        &json!({ "message": "Logged in" }),
    ))
}

/// `POST /login/second-factor/passkey/begin`: options to complete the waiting login
/// with one of the user's passkeys.
#[utoipa::path(post, path = "/login/second-factor/passkey/begin", tag = "passkeys", responses(
    (status = 200, description = "Options for navigator.credentials.get", body = Object),
    (status = 400, description = "No login is waiting for a second factor", body = crate::web::json::ErrorBody),
    (status = 401, description = "The user has no passkey", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site", body = crate::web::json::ErrorBody),
    (status = 404, description = "Passkeys are off on this server", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn begin_second_factor(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    passkeys::begin_second_factor(&app, &auth)
        .await
        .map(options)
        .map_err(refused)
}

/// `POST /login/second-factor/passkey/finish`: completes the waiting login.
#[utoipa::path(post, path = "/login/second-factor/passkey/finish", tag = "passkeys", request_body = AssertionBody, responses(
    (status = 200, description = "Logged in; Set-Cookie carries the new session (a bearer session's new token is `session_token` in the body)", body = crate::web::json::Message),
    (status = 400, description = "Malformed, or no ceremony started", body = crate::web::json::ErrorBody),
    (status = 401, description = "The passkey was not accepted, or no login waits", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site", body = crate::web::json::ErrorBody),
    (status = 404, description = "Passkeys are off on this server", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many failures for this account or address; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn finish_second_factor(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    SameSiteJson(body): SameSiteJson<AssertionBody>,
) -> Result<Response, HandlerError> {
    match passkeys::finish_second_factor(&app, ip, &auth, &body.credential)
        .await
        .map_err(refused)?
    {
        // A bearer session's client gets its new token (the login was written again).
        SecondStep::LoggedIn(_) => Ok(crate::web::session_token::logged_in(&auth).await?),
        SecondStep::NothingPending | SecondStep::Wrong => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "The passkey was not accepted.").into())
        }
        SecondStep::Throttled(wait) => Err(ApiError::too_many(wait).into()),
    }
}
