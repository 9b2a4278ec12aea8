//! axum extractors and guards: [`Session`], [`AuthSession`], [`RequireLogin`].

use crate::auth::{AuthError, AuthSession, Authenticator};
use crate::session::{Session, SessionError};
use crate::user::AuthUser;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Why an extractor could not give a handler what it asked for.
#[derive(Debug)]
pub enum Rejection {
    /// No [`crate::SessionLayer`] (or no authenticator attached to it) on the route:
    /// a programming error, answered 500.
    MissingLayer(&'static str),
    /// Not logged in: 401 with the authenticator's message.
    Unauthorized(String),
    /// A store or the user database failed.
    Failed(AuthError),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::MissingLayer(what) => {
                tracing::error!("{what} is missing: add it to the router");
                json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
            Rejection::Unauthorized(message) => json_error(StatusCode::UNAUTHORIZED, &message),
            Rejection::Failed(error) => error.into_response(),
        }
    }
}

impl IntoResponse for AuthError {
    /// 503 when a store is down, 500 otherwise; details go to the log, not the client.
    fn into_response(self) -> Response {
        if self.is_unavailable() {
            tracing::warn!(error = %self, "auth backend unavailable");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service temporarily unavailable, try again shortly",
            )
        } else {
            tracing::error!(error = %self, "auth operation failed");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        AuthError::from(self).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(Rejection::MissingLayer("SessionLayer"))
    }
}

impl<S: Send + Sync, U: AuthUser> FromRequestParts<S> for AuthSession<U> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        let authenticator = session
            .attachment::<Authenticator<U>>()
            .or_else(|| parts.extensions.get::<Authenticator<U>>())
            .cloned()
            .ok_or(Rejection::MissingLayer(
                "SessionLayer::with_authenticator (or Extension(Authenticator))",
            ))?;
        Ok(authenticator.session(session))
    }
}

/// Extracts the logged-in user, or answers 401 JSON `{"error": …}` (Flask-Login's
/// `login_required`, Microdot's `@login`).
///
/// ```no_run
/// use latchkey::{axum::RequireLogin, User};
/// async fn home(RequireLogin(user): RequireLogin<User>) -> String {
///     format!("Hello, {}", user.username)
/// }
/// ```
pub struct RequireLogin<U>(pub U);

impl<S: Send + Sync, U: AuthUser> FromRequestParts<S> for RequireLogin<U> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = AuthSession::<U>::from_request_parts(parts, state).await?;
        match auth.current_user().await {
            Ok(Some(user)) => Ok(RequireLogin(user)),
            Ok(None) => Err(Rejection::Unauthorized(
                auth.authenticator().unauthorized_message().to_string(),
            )),
            Err(error) => Err(Rejection::Failed(error)),
        }
    }
}
