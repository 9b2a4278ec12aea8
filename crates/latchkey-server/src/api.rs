//! The JSON API of the seed's "full authentication example": signup, login, home,
//! logout.

use crate::app::AppState;
use crate::headers;
use crate::throttling::{throttled_login, too_many_message, with_retry_after, Attempt, ClientIp};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use latchkey::axum::RequireLogin;
use latchkey::throttle::Verdict;
use latchkey::{AuthError, AuthSession, NewUser, SessionError, User, UserStoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// An error answer: a status and `{"error": message[, "field": name]}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many(wait: std::time::Duration) -> Self {
        ApiError {
            retry_after: Some(wait),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, too_many_message(wait))
        }
    }

    /// 403 with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 400 naming the field at fault.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field),
            ..Self::new(StatusCode::BAD_REQUEST, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(field) => json!({ "error": self.message, "field": field }),
            None => json!({ "error": self.message }),
        };
        let response = headers::json(self.status, &body);
        match self.retry_after {
            Some(wait) => with_retry_after(response, wait),
            None => response,
        }
    }
}

/// Failures of the auth layer keep their own answer (503 when a store is down).
pub enum HandlerError {
    Api(ApiError),
    Auth(AuthError),
}

impl From<ApiError> for HandlerError {
    fn from(error: ApiError) -> Self {
        HandlerError::Api(error)
    }
}

impl From<AuthError> for HandlerError {
    fn from(error: AuthError) -> Self {
        HandlerError::Auth(error)
    }
}

impl From<UserStoreError> for HandlerError {
    fn from(error: UserStoreError) -> Self {
        HandlerError::Auth(AuthError::Users(error))
    }
}

impl From<latchkey::PasswordError> for HandlerError {
    fn from(error: latchkey::PasswordError) -> Self {
        HandlerError::Auth(AuthError::Password(error))
    }
}

impl IntoResponse for HandlerError {
    fn into_response(self) -> Response {
        match self {
            HandlerError::Api(error) => error.into_response(),
            HandlerError::Auth(error) => error.into_response(),
        }
    }
}

/// A JSON body whose every rejection (wrong content type, malformed JSON, wrong field
/// types, too large) is a JSON 4xx naming the problem.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = match rejection.status() {
        // Well-formed JSON of the wrong shape is still a bad request here.
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        status => status,
    };
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a JSON body with Content-Type: application/json".to_string()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            format!(
                "request body is larger than {} bytes",
                crate::app::MAX_BODY_BYTES
            )
        }
        _ => rejection.body_text(),
    };
    ApiError::new(status, message)
}

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

/// `POST /login`: `{"username", "password"}` (the username may be the email).
#[utoipa::path(post, path = "/login", request_body = LoginRequest, responses(
    (status = 200, description = "Logged in; Set-Cookie carries the new session", body = crate::openapi::Message),
    (status = 400, description = "Missing or malformed fields", body = crate::openapi::ErrorBody),
    (status = 401, description = "Invalid username or password (the same for every cause)", body = crate::openapi::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::openapi::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::openapi::ErrorBody),
    (status = 429, description = "Throttled; see Retry-After", body = crate::openapi::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn login(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    JsonBody(request): JsonBody<LoginRequest>,
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
    match throttled_login(&app, ip, &username, &password).await? {
        Attempt::Checked(Some(user)) => {
            auth.login(&user).await?;
            Ok(headers::json(
                StatusCode::OK,
                &json!({ "message": "Logged in" }),
            ))
        }
        Attempt::Checked(None) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "Invalid username or password").into())
        }
        Attempt::Throttled(wait) => Err(ApiError::too_many(wait).into()),
    }
}

/// `GET|POST /home`: greets the logged-in user; 401 otherwise.
#[utoipa::path(method(get, post), path = "/home", responses(
    (status = 200, description = "The greeting", body = crate::openapi::Message),
    (status = 401, description = "Not logged in", body = crate::openapi::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::openapi::ErrorBody),
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
#[utoipa::path(post, path = "/logout", responses(
    (status = 200, description = "Logged out (or was not logged in)", body = crate::openapi::Message),
    (status = 403, description = "Sent from another site", body = crate::openapi::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn logout(auth: AuthSession<User>) -> Result<Response, HandlerError> {
    let message = match auth.logout().await? {
        Some(_) => "Logged out",
        None => "Not logged in",
    };
    Ok(headers::json(
        StatusCode::OK,
        &json!({ "message": message }),
    ))
}

/// `POST /signup` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// 1-64 characters, no spaces; unique whatever the letter case.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 64)]
    username: Option<String>,
    /// 12-128 characters, not one of the most common passwords.
    #[schema(value_type = String, required = true, min_length = 12, max_length = 128)]
    password: Option<String>,
    /// Optional; unique.
    #[schema(value_type = String, format = Email)]
    email: Option<String>,
}

/// Why a sign-up did not create a user.
pub enum CreateError {
    /// A field breaks the rules: (field, message).
    Invalid(&'static str, String),
    /// The username or email is in use: "Username X is not available."
    Taken(String),
    /// Too many sign-ups from this address; try again after this long.
    Throttled(std::time::Duration),
    /// A backing service failed.
    Failed(AuthError),
}

impl From<AuthError> for CreateError {
    fn from(error: AuthError) -> Self {
        CreateError::Failed(error)
    }
}

/// Validates the fields, hashes the password and creates the user; shared by the JSON
/// API and the sign-up form.
pub async fn create_user(
    app: &AppState,
    ip: ClientIp,
    username: &str,
    email: Option<&str>,
    password: &str,
) -> Result<User, CreateError> {
    let verdict = app
        .throttle
        .sign_up(ip.0)
        .await
        .map_err(|error| CreateError::Failed(SessionError::from(error).into()))?;
    if let Verdict::Wait(wait) = verdict {
        tracing::warn!(target: "latchkey::audit", event = "signup_throttled", ip = ?ip.0, "signup_throttled");
        return Err(CreateError::Throttled(wait));
    }
    let username = latchkey::user::validate_username(username)
        .map_err(|error| CreateError::Invalid("username", error.to_string()))?;
    let email = match email.map(str::trim) {
        Some(email) if !email.is_empty() => Some(
            latchkey::user::validate_email(email)
                .map_err(|error| CreateError::Invalid("email", error.to_string()))?,
        ),
        _ => None,
    };
    app.policy
        .check(password)
        .map_err(|error| CreateError::Invalid("password", error.to_string()))?;
    let hash = app
        .backend
        .hasher()
        .hash(password)
        .await
        .map_err(AuthError::from)?;
    let new_user = NewUser::new(&username, email.as_deref(), hash)
        .map_err(|error| CreateError::Invalid("username", error.to_string()))?;
    match app.backend.users().create(new_user).await {
        Ok(user) => {
            tracing::info!(target: "latchkey::audit", event = "signup", user_id = user.id, "signup");
            Ok(user)
        }
        Err(error @ (UserStoreError::UsernameTaken(_) | UserStoreError::EmailTaken(_))) => {
            Err(CreateError::Taken(error.to_string()))
        }
        Err(error) => Err(CreateError::Failed(error.into())),
    }
}

/// `POST /signup`: creates a user; 409 when the name or email is taken.
#[utoipa::path(post, path = "/signup", request_body = SignupRequest, responses(
    (status = 201, description = "Created", body = crate::openapi::Message),
    (status = 400, description = "A field breaks the rules (named in `field`)", body = crate::openapi::ErrorBody),
    (status = 409, description = "Username or email taken", body = crate::openapi::ErrorBody),
    (status = 413, description = "Body over 64 KiB", body = crate::openapi::ErrorBody),
    (status = 415, description = "Not a JSON body", body = crate::openapi::ErrorBody),
    (status = 429, description = "Too many sign-ups from this address; see Retry-After", body = crate::openapi::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn signup(
    State(app): State<AppState>,
    ip: ClientIp,
    JsonBody(request): JsonBody<SignupRequest>,
) -> Result<Response, HandlerError> {
    let username = request.username.unwrap_or_default();
    let password = request
        .password
        .filter(|password| !password.is_empty())
        .ok_or_else(|| ApiError::invalid("password", "password is required"))?;
    match create_user(&app, ip, &username, request.email.as_deref(), &password).await {
        Ok(_) => Ok(headers::json(
            StatusCode::CREATED,
            &json!({ "message": "User account has been created." }),
        )),
        Err(CreateError::Invalid(field, message)) => Err(ApiError::invalid(field, message).into()),
        Err(CreateError::Taken(message)) => {
            Err(ApiError::new(StatusCode::CONFLICT, message).into())
        }
        Err(CreateError::Throttled(wait)) => Err(ApiError::too_many(wait).into()),
        Err(CreateError::Failed(error)) => Err(error.into()),
    }
}

/// Unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}

/// Known paths with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
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
