//! Sign-up, login, home and logout: the JSON endpoints (the seed's "full authentication example").

use crate::login::flows::LogIn;
use crate::login::flows::SignUpError;
use crate::web::headers;
use crate::web::json::{ApiError, HandlerError};
use crate::web::session_token::SessionDelivery;
use crate::web::state::AppState;
use crate::web::submission::{SameSite, SameSiteJson};
use crate::web::throttling::ClientIp;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey::axum::RequireLogin;
use latchkey::{AuthSession, User};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `POST /login` body. Fields are optional so a missing one gets the seed's message.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The username or the email.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 254)]
    username: Option<String>,
    #[schema(value_type = String, required = true, min_length = 1, max_length = 4096)]
    password: Option<String>,
}

/// What a password login gets while the email is unverified (`--require-verified-email`).
pub const UNVERIFIED: &str = "Please verify your email address first: follow the link we mailed you, or ask for a new one (POST /email/verify/resend).";

/// `POST /login`: `{"username", "password"}` (the username may be the email). With
/// `?session=token` the session's token comes back in the body as `session_token` and no
/// cookie is set: send it as `Authorization: Bearer <session_token>`.
#[utoipa::path(post, path = "/login", tag = "login", request_body = LoginRequest, params(
    ("session" = Option<String>, Query, description = "`token`: a bearer session (its token in the body, no cookie); `cookie` (the default)"),
), responses(
    (status = 200, description = "Logged in; Set-Cookie carries the new session, or with ?session=token the body's `session_token`", body = crate::web::json::Message),
    (status = 202, description = "The password is right and the user has a second factor: nobody is logged in yet; complete with POST /login/second-factor within 5 minutes", body = crate::factors::api::SecondFactorRequired),
    (status = 400, description = "Missing or malformed fields", body = crate::web::json::ErrorBody),
    (status = 401, description = "Invalid username or password (the same for every cause)", body = crate::web::json::ErrorBody),
    (status = 403, description = "The password is right but the email is not verified yet (`--require-verified-email`)", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Throttled; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn login(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    _delivery: SessionDelivery,
    SameSiteJson(request): SameSiteJson<LoginRequest>,
) -> Result<Response, HandlerError> {
    let (Some(username), Some(password)) = (
        request.username.filter(|name| !name.trim().is_empty()),
        request.password.filter(|password| !password.is_empty()),
    ) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Please specify username and password",
        )
        .into());
    };
    match crate::login::flows::log_in(&app, ip, &auth, &username, &password, false).await? {
        LogIn::LoggedIn(_) => Ok(crate::web::session_token::logged_in(&auth).await?),
        LogIn::Refused => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "Invalid username or password").into())
        }
        LogIn::Unverified => Err(ApiError::forbidden_field("email", UNVERIFIED).into()),
        LogIn::SecondFactorRequired(methods) => {
            crate::factors::api::second_factor_required(&auth, methods).await
        }
        LogIn::Throttled(wait) => Err(ApiError::too_many(wait).into()),
    }
}

/// `GET|POST /home`: greets the logged-in user; 401 otherwise.
#[utoipa::path(method(get, post), path = "/home", tag = "login", responses(
    (status = 200, description = "The greeting", body = crate::web::json::Message),
    (status = 401, description = "Not logged in", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn home(RequireLogin(user): RequireLogin<User>) -> Response {
    match greeting(&user.username) {
        Ok(body) => headers::json_body(StatusCode::OK, body),
        Err(error) => {
            tracing::error!(%error, "greeting not written");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// `{"message":"Hello, <username>"}`, written into one buffer (`format!` and then a
/// serializer over its result were a tenth of the work of the answer). The buffer is
/// exactly as long as a name with nothing to escape needs: a response body made from a
/// buffer with room to spare costs one more allocation.
fn greeting(username: &str) -> Result<Vec<u8>, serde_json::Error> {
    const OPENING: &[u8] = br#"{"message":"Hello, "#;
    const CLOSING: &[u8] = br#""}"#;
    let mut body = Vec::with_capacity(OPENING.len() + username.len() + CLOSING.len());
    body.extend_from_slice(OPENING);
    username.serialize(&mut serde_json::Serializer::with_formatter(
        &mut body,
        StringContents,
    ))?;
    body.extend_from_slice(CLOSING);
    Ok(body)
}

/// Writes JSON strings escaped but without their quotes: the contents of a string the
/// surrounding text opens and closes.
struct StringContents;

impl serde_json::ser::Formatter for StringContents {
    fn begin_string<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        Ok(())
    }

    fn end_string<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        Ok(())
    }
}

/// `POST /logout`: ends the session; the old cookie is dead even if replayed.
#[utoipa::path(post, path = "/logout", tag = "login", responses(
    (status = 200, description = "Logged out (or was not logged in)", body = crate::web::json::Message),
    (status = 403, description = "Sent from another site", body = crate::web::json::ErrorBody),
    (status = 415, description = "A body that is not JSON (this endpoint needs none)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn logout(
    auth: AuthSession<User>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    let message = match crate::login::flows::log_out(&auth).await? {
        Some(_) => "Logged out",
        None => "Not logged in",
    };
    // A logout also asks the browser (or any client that keeps them) to clear its cache.
    Ok(headers::clear_site_data(headers::json(
        StatusCode::OK,
        &json!({ "message": message }),
    )))
}

/// `POST /signup` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// 1-64 characters, no spaces, invisible or text-direction characters; unique whatever
    /// the letter case, width or look-alike letters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 64)]
    username: Option<String>,
    /// 12-128 characters, not easily guessed (a common password, a sequence, a word with
    /// digits, the username…).
    #[schema(value_type = String, required = true, min_length = 12, max_length = 128)]
    password: Option<String>,
    /// Optional; unique.
    #[schema(value_type = String, format = Email)]
    email: Option<String>,
}

/// `POST /signup`: creates a user; 409 when the name or email is taken.
#[utoipa::path(post, path = "/signup", tag = "login", request_body = SignupRequest, responses(
    (status = 201, description = "Created", body = crate::web::json::Message),
    (status = 400, description = "A field breaks the rules (named in `field`)", body = crate::web::json::ErrorBody),
    (status = 409, description = "Username or email taken", body = crate::web::json::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::web::json::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::web::json::ErrorBody),
    (status = 429, description = "Too many sign-ups from this address; see Retry-After", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn signup(
    State(app): State<AppState>,
    ip: ClientIp,
    SameSiteJson(request): SameSiteJson<SignupRequest>,
) -> Result<Response, HandlerError> {
    let username = request.username.unwrap_or_default();
    let password = request
        .password
        .filter(|password| !password.is_empty())
        .ok_or_else(|| ApiError::invalid("password", "password is required"))?;
    match crate::login::flows::sign_up(&app, ip, &username, request.email.as_deref(), &password)
        .await
    {
        Ok(_) => Ok(headers::json(
            StatusCode::CREATED,
            &json!({ "message": "User account has been created." }),
        )),
        Err(SignUpError::Invalid(field, message)) => Err(ApiError::invalid(field, message).into()),
        Err(SignUpError::Taken(message)) => {
            Err(ApiError::new(StatusCode::CONFLICT, message).into())
        }
        Err(SignUpError::Throttled(wait)) => Err(ApiError::too_many(wait).into()),
        Err(SignUpError::Failed(error)) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::greeting;

    #[test]
    fn the_greeting_is_json_whatever_the_username() {
        for username in [
            "foo",
            "",
            "a\"b\\c",
            "tab\there\nnewline",
            "ünï©ødé 🦀",
            "\u{1}",
        ] {
            let body = greeting(username).expect("greeting");
            let parsed: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            assert_eq!(
                parsed,
                serde_json::json!({ "message": format!("Hello, {username}") })
            );
        }
    }
}
