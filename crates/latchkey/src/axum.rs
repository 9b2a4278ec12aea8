//! axum extractors and guards: [`Session`], [`AuthSession`], [`RequireLogin`],
//! [`RequireFresh`], and [`login_required`] / [`fresh_login_required`] to protect a whole
//! router.
//!
//! Guards answer the way the client expects: a browser asking for HTML is redirected
//! (303) to the login page with `?next=` the page it wanted; anything else gets a 401
//! JSON error.

use crate::auth::{AuthError, AuthSession, Authenticator, LoginState};
use crate::session::{Session, SessionError};
use crate::user::AuthUser;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::future::Either;
use serde_json::json;
use std::future::Future;

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Why an extractor could not give a handler what it asked for.
#[derive(Debug)]
pub enum Rejection {
    /// No [`crate::SessionLayer`] (or no authenticator attached to it) on the route:
    /// a programming error, answered 500.
    MissingLayer(&'static str),
    /// Not logged in (or not freshly enough): 401 with this message.
    Unauthorized(String),
    /// A browser must log in first: 303 to this location.
    LoginRedirect(String),
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
            Rejection::LoginRedirect(location) => (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, location),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
            )
                .into_response(),
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

/// The request's session and authenticator, borrowed from its extensions.
fn login_state<U: AuthUser>(parts: &Parts) -> Result<LoginState<'_, U>, Rejection> {
    let session = parts
        .extensions
        .get::<Session>()
        .ok_or(Rejection::MissingLayer("SessionLayer"))?;
    let authenticator = session
        .attachment::<Authenticator<U>>()
        .or_else(|| parts.extensions.get::<Authenticator<U>>())
        .ok_or(Rejection::MissingLayer(
            "SessionLayer::with_authenticator (or Extension(Authenticator))",
        ))?;
    Ok(LoginState {
        session,
        authenticator,
    })
}

impl<S: Send + Sync, U: AuthUser> FromRequestParts<S> for AuthSession<U> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let state = login_state::<U>(parts)?;
        Ok(state.authenticator.session(state.session.clone()))
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

    /// Answers at once when the session and its user are in memory (an in-process store
    /// and the user cache), with a future of a few bytes: the state of the whole check
    /// is only allocated when a store must be asked.
    fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> impl Future<Output = Result<Self, Self::Rejection>> + Send {
        let parts: &Parts = parts;
        let answered = match login_state::<U>(parts) {
            Ok(login) => login.current_user_now().map(|user| Ok(RequireLogin(user))),
            Err(rejection) => Some(Err(rejection)),
        };
        match answered {
            Some(answer) => Either::Left(std::future::ready(answer)),
            None => Either::Right(Box::pin(require_login(parts))),
        }
    }
}

/// [`RequireLogin`] when the stores must be asked.
async fn require_login<U: AuthUser>(parts: &Parts) -> Result<RequireLogin<U>, Rejection> {
    let login = login_state::<U>(parts)?;
    match login.current_user().await {
        Ok(Some(user)) => Ok(RequireLogin(user)),
        Ok(None) => Err(must_log_in(
            parts,
            login.authenticator,
            login.authenticator.unauthorized_message(),
        )),
        Err(error) => Err(Rejection::Failed(error)),
    }
}

/// Extracts the logged-in user only if the login is fresh: by password in this session
/// (and within the authenticator's fresh window, if set), not restored from a
/// remember-me cookie (Flask-Login's `fresh_login_required`, Microdot's
/// `@login.fresh`). Browsers are sent to the login page to enter their password again;
/// other clients get 401 `{"error": "fresh login required"}`.
pub struct RequireFresh<U>(pub U);

/// The 401 message of [`RequireFresh`].
pub const FRESH_LOGIN_REQUIRED: &str = "fresh login required";

impl<S: Send + Sync, U: AuthUser> FromRequestParts<S> for RequireFresh<U> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RequireLogin(user) = RequireLogin::<U>::from_request_parts(parts, state).await?;
        let auth = AuthSession::<U>::from_request_parts(parts, state).await?;
        match auth.is_fresh().await {
            Ok(true) => Ok(RequireFresh(user)),
            Ok(false) => Err(must_log_in(
                parts,
                auth.authenticator(),
                FRESH_LOGIN_REQUIRED,
            )),
            Err(error) => Err(Rejection::Failed(error)),
        }
    }
}

/// A layer that lets only logged-in users through to every route of a router.
///
/// ```no_run
/// # use axum::{routing::get, Router};
/// use latchkey::{axum::login_required, User};
/// let private: Router = Router::new()
///     .route("/home", get(|| async { "hi" }))
///     .route_layer(login_required::<User>());
/// ```
pub fn login_required<U: AuthUser>() -> axum::middleware::FromExtractorLayer<RequireLogin<U>, ()> {
    axum::middleware::from_extractor::<RequireLogin<U>>()
}

/// A layer that lets only freshly logged-in users through (see [`RequireFresh`]).
pub fn fresh_login_required<U: AuthUser>(
) -> axum::middleware::FromExtractorLayer<RequireFresh<U>, ()> {
    axum::middleware::from_extractor::<RequireFresh<U>>()
}

/// Whether the client wants an HTML page rather than JSON: a browser navigation.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    accept.contains("text/html") && !accept.starts_with("application/json")
}

/// Whether the request asked for HTML (see [`wants_html`]), read without copying the
/// headers.
#[derive(Debug, Clone, Copy)]
pub struct WantsHtml(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for WantsHtml {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(WantsHtml(wants_html(&parts.headers)))
    }
}

/// The rejection for a request that needs a (fresh) login.
fn must_log_in<U: AuthUser>(
    parts: &Parts,
    authenticator: &Authenticator<U>,
    message: &str,
) -> Rejection {
    if !wants_html(&parts.headers) {
        return Rejection::Unauthorized(message.to_string());
    }
    let wanted = parts
        .uri
        .path_and_query()
        .map(|path| path.as_str())
        .unwrap_or("/");
    let next: String = form_urlencoded::byte_serialize(wanted.as_bytes()).collect();
    Rejection::LoginRedirect(format!("{}?next={next}", authenticator.login_url()))
}
