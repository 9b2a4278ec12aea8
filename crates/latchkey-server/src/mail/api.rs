//! The JSON side of the mail flows (password reset, email verification, sign-in by mail,
//! email change), over the use cases in [`crate::mail::flows`].

use crate::factors::api::second_factor_required;
use crate::mail::flows::{
    self as mail_flows, EmailChangeError, MailRequest, MailSignIn, Requested, Reset, ResetError,
};
use crate::web::headers;
use crate::web::json::{ApiError, HandlerError};
use crate::web::session_token::SessionDelivery;
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

/// What every answer to a request for mail says: the same for every address.
pub const MAIL_ON_ITS_WAY: &str =
    "If an account uses that address, a mail is on its way to it. The link in it is valid for a limited time.";

/// What a dead link gets.
pub const DEAD_LINK: &str =
    "This link is invalid, was already used, or has expired. Ask for a new one.";

/// A body of one email address.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// The address.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 254)]
    email: Option<String>,
}

/// A body of one token from a mailed link.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The `token` parameter of the link.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128)]
    token: Option<String>,
}

/// `POST /password/reset` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The `token` parameter of the mailed link.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128)]
    token: Option<String>,
    /// The new password: 12-128 characters, not easily guessed.
    #[schema(value_type = String, required = true, min_length = 12, max_length = 128)]
    password: Option<String>,
}

/// `POST /login/email/verify` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The address the code was sent to.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 254)]
    email: Option<String>,
    /// The 6-digit code from the mail.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 16)]
    code: Option<String>,
}

/// The field, or a 400 naming it.
fn required(value: Option<String>, field: &'static str) -> Result<String, ApiError> {
    value
        .filter(|value| !value.trim().is_empty())
        .ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))
}

/// The answer to a request for mail.
async fn mail_requested(
    app: &AppState,
    ip: ClientIp,
    email: Option<String>,
    what: Requested,
) -> Result<Response, HandlerError> {
    let email = required(email, "email")?;
    match mail_flows::request_mail(app, ip, &email, what).await? {
        MailRequest::Accepted => Ok(headers::json(
            StatusCode::ACCEPTED,
            &json!({ "message": MAIL_ON_ITS_WAY }),
        )),
        MailRequest::Throttled(wait) => Err(ApiError::too_many(wait).into()),
        MailRequest::Busy => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many requests are being worked on; try again in a moment.",
        )
        .into()),
        MailRequest::NotAnAddress(reason) => Err(ApiError::invalid("email", reason).into()),
    }
}

/// `POST /password/forgot`: mails a reset link if an account uses the address.
#[utoipa::path(post, path = "/password/forgot", tag = "mail", request_body = EmailRequest, responses(
    (status = 202, description = "Taken (the same answer, in the same time, for every address)", body = crate::web::json::Message),
    (status = 400, description = "No address, or not a bare deliverable address (no display name, <= 254 characters)", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many requests for this address or from this client; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable, or too many requests in flight", body = crate::web::json::ErrorBody),
))]
pub async fn forgot_password(
    State(app): State<AppState>,
    ip: ClientIp,
    SameSiteJson(request): SameSiteJson<EmailRequest>,
) -> Result<Response, HandlerError> {
    mail_requested(&app, ip, request.email, Requested::PasswordReset).await
}

/// `POST /password/reset`: sets a new password from a reset link's token; every session
/// and remembered device of the user ends.
#[utoipa::path(post, path = "/password/reset", tag = "mail", request_body = ResetRequest, params(
    ("session" = Option<String>, Query, description = "`token`: with --reset-logs-in, a bearer session (its token in the body as `session_token`, no cookie); `cookie` (the default)"),
), responses(
    (status = 200, description = "The password is set", body = crate::web::json::Message),
    (status = 202, description = "The password is set and, with --reset-logs-in, the user has a second factor: nobody is logged in yet; complete with POST /login/second-factor", body = crate::factors::api::SecondFactorRequired),
    (status = 400, description = "A dead link (`token`) or a password that breaks the rules (`password`)", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn reset_password(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    _delivery: SessionDelivery,
    SameSiteJson(request): SameSiteJson<ResetRequest>,
) -> Result<Response, HandlerError> {
    let token = required(request.token, "token")?;
    let password = required(request.password, "password")?;
    match mail_flows::reset_password(&app, &auth, &token, &password).await {
        Ok(Reset::PasswordSet(_) | Reset::LoggedIn(_)) => {
            let mut body = json!({ "message": "Your password has been reset." });
            // With --reset-logs-in, a bearer session's client gets its new token.
            if let Some(token) = crate::web::session_token::new_session_token(&auth).await? {
                body["session_token"] = token.into();
            }
            Ok(headers::json(StatusCode::OK, &body))
        }
        Ok(Reset::SecondFactorRequired(methods)) => second_factor_required(&auth, methods).await,
        Err(ResetError::InvalidToken) => Err(ApiError::invalid("token", DEAD_LINK).into()),
        Err(ResetError::Policy(message)) => Err(ApiError::invalid("password", message).into()),
        Err(ResetError::Failed(error)) => Err(error.into()),
    }
}

/// `POST /login/email`: mails a sign-in link and code if an account uses the address.
#[utoipa::path(post, path = "/login/email", tag = "mail", request_body = EmailRequest, responses(
    (status = 202, description = "Taken (the same answer for every address)", body = crate::web::json::Message),
    (status = 400, description = "No address, or not a bare deliverable address (no display name, <= 254 characters)", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many requests for this address or from this client; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable, or too many requests in flight", body = crate::web::json::ErrorBody),
))]
pub async fn sign_in_by_mail(
    State(app): State<AppState>,
    ip: ClientIp,
    SameSiteJson(request): SameSiteJson<EmailRequest>,
) -> Result<Response, HandlerError> {
    mail_requested(&app, ip, request.email, Requested::SignIn).await
}

/// The answer to a sign-in by mail.
async fn signed_in(
    auth: &AuthSession<User>,
    outcome: MailSignIn,
    refused: &'static str,
) -> Result<Response, HandlerError> {
    match outcome {
        MailSignIn::LoggedIn(_) => Ok(crate::web::session_token::logged_in(auth).await?),
        MailSignIn::SecondFactorRequired(methods) => second_factor_required(auth, methods).await,
        MailSignIn::Refused => Err(ApiError::new(StatusCode::UNAUTHORIZED, refused).into()),
        MailSignIn::Throttled(wait) => Err(ApiError::too_many(wait).into()),
    }
}

/// `POST /login/email/verify`: logs in with the mailed code (not a fresh login).
#[utoipa::path(post, path = "/login/email/verify", tag = "mail", request_body = CodeRequest, params(
    ("session" = Option<String>, Query, description = "`token`: a bearer session (its token in the body as `session_token`, no cookie); `cookie` (the default)"),
), responses(
    (status = 200, description = "Logged in; Set-Cookie carries the new session", body = crate::web::json::Message),
    (status = 202, description = "The mailbox is proven but the user has a second factor: nobody is logged in yet; complete with POST /login/second-factor", body = crate::factors::api::SecondFactorRequired),
    (status = 400, description = "Missing fields", body = crate::web::json::ErrorBody),
    (status = 401, description = "A wrong, used or expired code (ten wrong ones burn it)", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many codes for this address or from this client; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn sign_in_with_code(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    _delivery: SessionDelivery,
    SameSiteJson(request): SameSiteJson<CodeRequest>,
) -> Result<Response, HandlerError> {
    let email = required(request.email, "email")?;
    let code = required(request.code, "code")?;
    let outcome = mail_flows::sign_in_with_code(&app, ip, &auth, &email, &code).await?;
    signed_in(&auth, outcome, "Wrong or expired code.").await
}

/// `POST /login/email/confirm`: logs in with a sign-in link's token (not a fresh login).
#[utoipa::path(post, path = "/login/email/confirm", tag = "mail", request_body = TokenRequest, params(
    ("session" = Option<String>, Query, description = "`token`: a bearer session (its token in the body as `session_token`, no cookie); `cookie` (the default)"),
), responses(
    (status = 200, description = "Logged in; Set-Cookie carries the new session", body = crate::web::json::Message),
    (status = 202, description = "The mailbox is proven but the user has a second factor: nobody is logged in yet; complete with POST /login/second-factor", body = crate::factors::api::SecondFactorRequired),
    (status = 400, description = "No token", body = crate::web::json::ErrorBody),
    (status = 401, description = "A dead link", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn sign_in_with_link(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    _delivery: SessionDelivery,
    SameSiteJson(request): SameSiteJson<TokenRequest>,
) -> Result<Response, HandlerError> {
    let token = required(request.token, "token")?;
    let outcome = mail_flows::sign_in_with_link(&app, &auth, &token).await?;
    signed_in(&auth, outcome, DEAD_LINK).await
}

/// `POST /email/verify`: verifies the address a verification link went to.
#[utoipa::path(post, path = "/email/verify", tag = "mail", request_body = TokenRequest, responses(
    (status = 200, description = "Verified", body = crate::web::json::Message),
    (status = 400, description = "No token, or a dead link", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn verify_email(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    SameSiteJson(request): SameSiteJson<TokenRequest>,
) -> Result<Response, HandlerError> {
    let token = required(request.token, "token")?;
    match mail_flows::verify_email(&app, &auth, &token).await? {
        Some(_) => Ok(headers::json(
            StatusCode::OK,
            &json!({ "message": "Your email address is verified." }),
        )),
        None => Err(ApiError::invalid("token", DEAD_LINK).into()),
    }
}

/// `POST /email/verify/resend`: mails the verification link again if an unverified
/// account uses the address.
#[utoipa::path(post, path = "/email/verify/resend", tag = "mail", request_body = EmailRequest, responses(
    (status = 202, description = "Taken (the same answer for every address)", body = crate::web::json::Message),
    (status = 400, description = "No address, or not a bare deliverable address (no display name, <= 254 characters)", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many requests for this address or from this client; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable, or too many requests in flight", body = crate::web::json::ErrorBody),
))]
pub async fn resend_verification(
    State(app): State<AppState>,
    ip: ClientIp,
    SameSiteJson(request): SameSiteJson<EmailRequest>,
) -> Result<Response, HandlerError> {
    mail_requested(&app, ip, request.email, Requested::Verification).await
}

/// `POST /account/email`: asks to move the account to another address (a fresh login
/// is needed); a confirmation link goes to the new address.
#[utoipa::path(post, path = "/account/email", tag = "mail", request_body = EmailRequest, responses(
    (status = 202, description = "A confirmation link was sent to the new address", body = crate::web::json::Message),
    (status = 400, description = "Not an address", body = crate::web::json::ErrorBody),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Sent from another site, or with a bearer token (no token changes how one gets in)", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many requests for this account, address or client; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn change_email(
    State(app): State<AppState>,
    ip: ClientIp,
    RequireFresh(user): RequireFresh<User>,
    SameSiteJson(request): SameSiteJson<EmailRequest>,
) -> Result<Response, HandlerError> {
    let email = required(request.email, "email")?;
    match mail_flows::request_email_change(&app, ip, &user, &email).await {
        Ok(email) => Ok(headers::json(
            StatusCode::ACCEPTED,
            &json!({ "message": format!("A confirmation link was sent to {email}.") }),
        )),
        Err(error) => Err(email_change_error(error)),
    }
}

/// `POST /account/email/confirm`: moves the account to the address the link went to.
#[utoipa::path(post, path = "/account/email/confirm", tag = "mail", request_body = TokenRequest, responses(
    (status = 200, description = "The account uses the new address", body = crate::web::json::Message),
    (status = 400, description = "No token, or a dead link", body = crate::web::json::ErrorBody),
    (status = 409, description = "Another account uses the address", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn confirm_email_change(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    SameSiteJson(request): SameSiteJson<TokenRequest>,
) -> Result<Response, HandlerError> {
    let token = required(request.token, "token")?;
    match mail_flows::confirm_email_change(&app, &auth, &token).await {
        Ok(user) => {
            let mut body = json!({ "message": format!("Your email address is now {}.", user.email.unwrap_or_default()) });
            // The change renewed the caller's login under a new token.
            if let Some(token) = crate::web::session_token::new_session_token(&auth).await? {
                body["session_token"] = token.into();
            }
            Ok(headers::json(StatusCode::OK, &body))
        }
        Err(error) => Err(email_change_error(error)),
    }
}

/// The JSON answer to a failed email change.
fn email_change_error(error: EmailChangeError) -> HandlerError {
    match error {
        EmailChangeError::Invalid(message) => ApiError::invalid("email", message).into(),
        EmailChangeError::InvalidToken => ApiError::invalid("token", DEAD_LINK).into(),
        EmailChangeError::Taken(message) => ApiError::new(StatusCode::CONFLICT, message).into(),
        EmailChangeError::Throttled(wait) => ApiError::too_many(wait).into(),
        EmailChangeError::Failed(error) => error.into(),
    }
}
