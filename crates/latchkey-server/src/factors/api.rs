//! The JSON side of second factors (the login's second step, TOTP enrolment and
//! removal, recovery codes), over the use cases in [`crate::factors::second_factor`].

use crate::factors::second_factor::{self, CodeCheck, SecondStep};
use crate::web::headers;
use crate::web::json::{ApiError, HandlerError};
use crate::web::state::AppState;
use crate::web::submission::{SameSite, SameSiteJson};
use crate::web::throttling::ClientIp;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey::axum::{RequireFresh, RequireLogin};
use latchkey::{AuthSession, User};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `POST /login` answer when a second factor must complete the login.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SecondFactorRequired {
    /// `Second factor required`.
    pub message: String,
    /// What can complete it: `totp`, `recovery_code`.
    pub methods: Vec<String>,
    /// For a login that asked for a bearer session (`?session=token`): the token of the
    /// session the login waits in, to send with `POST /login/second-factor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
}

/// The 202 answer of a first step (a password, a mailed code or link, a reset that logs
/// in) whose user has a second factor: nobody is logged in yet.
pub async fn second_factor_required(
    auth: &AuthSession<User>,
    methods: Vec<String>,
) -> Result<Response, HandlerError> {
    let session_token = crate::web::session_token::new_session_token(auth).await?;
    Ok(headers::json(
        StatusCode::ACCEPTED,
        &SecondFactorRequired {
            message: "Second factor required".into(),
            methods,
            session_token,
        },
    ))
}

/// A body of one code (TOTP or recovery code).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    /// A 6-digit code from the authenticator app, or a recovery code.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 64)]
    code: Option<String>,
}

/// `POST /account/totp` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TotpSetup {
    /// The secret in base32, for typing into an authenticator app.
    pub secret: String,
    /// The `otpauth://totp/…` URI (what the QR code holds).
    pub otpauth_uri: String,
}

/// `POST /account/totp/confirm` and `POST /account/recovery-codes` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes, shown this once.
    pub recovery_codes: Vec<String>,
}

/// The code of a body, or a 400 naming it.
fn code_of(body: CodeBody) -> Result<String, ApiError> {
    body.code
        .filter(|code| !code.trim().is_empty() && code.len() <= 64)
        .ok_or_else(|| ApiError::invalid("code", "code is required"))
}

/// `POST /login/second-factor`: completes a login waiting for its second factor.
#[utoipa::path(post, path = "/login/second-factor", tag = "second factors", request_body = CodeBody, responses(
    (status = 200, description = "Logged in; Set-Cookie carries the new session (a bearer session's new token is `session_token` in the body)", body = crate::web::json::Message),
    (status = 400, description = "No code", body = crate::web::json::ErrorBody),
    (status = 401, description = "A wrong or used code, or no login waiting (none, or older than 5 minutes)", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many wrong codes for this account or address; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn second_step(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    SameSiteJson(body): SameSiteJson<CodeBody>,
) -> Result<Response, HandlerError> {
    let code = code_of(body)?;
    match second_factor::complete(&app, ip, &auth, &code).await? {
        SecondStep::LoggedIn(_) => Ok(crate::web::session_token::logged_in(&auth).await?),
        SecondStep::NothingPending => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "No login is waiting for a second factor: log in with your password first.",
        )
        .into()),
        SecondStep::Wrong => Err(ApiError::new(StatusCode::UNAUTHORIZED, "Wrong code.").into()),
        SecondStep::Throttled(wait) => Err(ApiError::too_many(wait).into()),
    }
}

/// `POST /account/totp`: starts setting up an authenticator app (a fresh login is
/// needed); nothing is enabled until a code from it is confirmed.
#[utoipa::path(post, path = "/account/totp", tag = "second factors", responses(
    (status = 200, description = "The new secret and its otpauth URI", body = TotpSetup),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site, or with a bearer token (no token changes how one gets in)", body = crate::web::json::ErrorBody),
    (status = 409, description = "An authenticator app is already set up (remove it first)", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn begin_totp(
    State(app): State<AppState>,
    RequireFresh(user): RequireFresh<User>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    match second_factor::begin_totp(&app, &user).await? {
        Some(setup) => Ok(headers::json(
            StatusCode::OK,
            &TotpSetup {
                secret: setup.secret,
                otpauth_uri: setup.otpauth_uri,
            },
        )),
        None => Err(already_on().into()),
    }
}

/// The 409 of a second setup.
fn already_on() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "An authenticator app is already set up; remove it first.",
    )
}

/// `POST /account/totp/confirm`: enables the authenticator app with a code from it;
/// answers the recovery codes (shown once) and ends the user's other sessions.
#[utoipa::path(post, path = "/account/totp/confirm", tag = "second factors", request_body = CodeBody, responses(
    (status = 200, description = "Enabled; the recovery codes", body = RecoveryCodes),
    (status = 400, description = "A wrong code, or no setup under way (`code`)", body = crate::web::json::ErrorBody),
    (status = 401, description = "Not logged in", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn confirm_totp(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    RequireLogin(user): RequireLogin<User>,
    SameSiteJson(body): SameSiteJson<CodeBody>,
) -> Result<Response, HandlerError> {
    let code = code_of(body)?;
    match second_factor::confirm_totp(&app, &auth, &user, &code).await? {
        Some(recovery_codes) => Ok(headers::json(
            StatusCode::OK,
            &RecoveryCodes { recovery_codes },
        )),
        None => Err(ApiError::invalid(
            "code",
            "Wrong code (or no setup under way): type the current code from the app.",
        )
        .into()),
    }
}

/// `DELETE /account/totp`: removes the authenticator app and the recovery codes (a fresh
/// login and a current code, or a recovery code, are needed).
#[utoipa::path(delete, path = "/account/totp", tag = "second factors", request_body = CodeBody, responses(
    (status = 200, description = "Removed; the other sessions ended", body = crate::web::json::Message),
    (status = 400, description = "No code", body = crate::web::json::ErrorBody),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "A wrong code (`code`), sent from another site, or with a bearer token", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many wrong codes; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn remove_totp(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    ip: ClientIp,
    RequireFresh(user): RequireFresh<User>,
    SameSiteJson(body): SameSiteJson<CodeBody>,
) -> Result<Response, HandlerError> {
    let code = code_of(body)?;
    match second_factor::remove(&app, &auth, ip, &user, &code).await? {
        CodeCheck::Right => Ok(headers::json(
            StatusCode::OK,
            &json!({ "message": "Two-step login is off." }),
        )),
        CodeCheck::Wrong => Err(ApiError::forbidden_field("code", "Wrong code.").into()),
        CodeCheck::Throttled(wait) => Err(ApiError::too_many(wait).into()),
    }
}

/// `POST /account/recovery-codes`: replaces the recovery codes (a fresh login is needed).
#[utoipa::path(post, path = "/account/recovery-codes", tag = "second factors", responses(
    (status = 200, description = "The new codes; the old ones stop working", body = RecoveryCodes),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site, or with a bearer token (no token changes how one gets in)", body = crate::web::json::ErrorBody),
    (status = 409, description = "No authenticator app is set up", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn regenerate_recovery_codes(
    State(app): State<AppState>,
    RequireFresh(user): RequireFresh<User>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    if !second_factor::status(&app, user.id).await?.totp {
        return Err(ApiError::new(StatusCode::CONFLICT, "No authenticator app is set up.").into());
    }
    let recovery_codes = second_factor::regenerate_recovery_codes(&app, &user).await?;
    Ok(headers::json(
        StatusCode::OK,
        &RecoveryCodes { recovery_codes },
    ))
}
