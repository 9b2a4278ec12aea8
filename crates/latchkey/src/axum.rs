//! axum extractors and guards: [`Session`], [`AuthSession`], [`RequireLogin`],
//! [`RequireFresh`], [`Csrf`] / [`BrowserCsrf`], and [`login_required`] / [`fresh_login_required`]
//! to protect a whole router.
//!
//! Guards answer the way the client expects: a browser asking for HTML is redirected
//! (303) to the login page with `?next=` the page it wanted; anything else gets a 401
//! JSON error.

use crate::access_token::TokenRefusal;
use crate::auth::{AuthError, AuthSession, Authenticator, RequestAuth};
use crate::csrf::{browser_cookie_name, BrowserNonce, CsrfKey};
use crate::session::layer::{append_cookie, request_cookie};
use crate::session::site_cookie;
use crate::session::{Session, SessionError};
use crate::user::AuthUser;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Why an extractor could not give a handler what it asked for.
#[derive(Debug)]
pub enum Rejection {
    /// No [`crate::SessionLayer`] (or no [`crate::AuthLayer`] inside it) on the route: a
    /// programming error, answered 500.
    MissingLayer(&'static str),
    /// Not logged in (or not freshly enough): 401 with this message.
    Unauthorized(String),
    /// Logged in, but not allowed to do this (a token's scopes, a credential change
    /// asked with a bearer token): 403 with this message.
    Forbidden(String),
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
            Rejection::Forbidden(message) => json_error(StatusCode::FORBIDDEN, &message),
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
    /// 503 when a store is down, 429 when the session layer's new-session policy said no
    /// (with `Retry-After`), 413 when a session would be too large (with the limit),
    /// 500 otherwise; details go to the log, not the client.
    fn into_response(self) -> Response {
        if let AuthError::Session(SessionError::Refused(wait)) = &self {
            let mut response = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                crate::session::layer::REFUSED_MESSAGE,
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(wait.as_secs().max(1)),
            );
            return response;
        }
        if let AuthError::Session(error) = &self {
            if error.is_too_large() {
                tracing::info!(%error, "session write refused");
                return json_error(StatusCode::PAYLOAD_TOO_LARGE, &error.to_string());
            }
        }
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

/// The request's session and auth state, borrowed from its extensions.
fn request_auth<U: AuthUser>(parts: &Parts) -> Result<(&Session, &Arc<RequestAuth<U>>), Rejection> {
    let session = parts
        .extensions
        .get::<Session>()
        .ok_or(Rejection::MissingLayer("SessionLayer"))?;
    let auth = parts
        .extensions
        .get::<Arc<RequestAuth<U>>>()
        .ok_or(Rejection::MissingLayer(
            "AuthLayer (inside the SessionLayer)",
        ))?;
    Ok((session, auth))
}

impl<S: Send + Sync, U: AuthUser> FromRequestParts<S> for AuthSession<U> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let (session, auth) = request_auth::<U>(parts)?;
        Ok(AuthSession::from_request(session.clone(), auth.clone()))
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

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let (session, auth) = request_auth::<U>(parts)?;
        match auth.current_user(session).await {
            Ok(Some(user)) => Ok(RequireLogin(user)),
            Ok(None) if auth.bearer_refusal() == Some(TokenRefusal::Scope) => {
                Err(Rejection::Forbidden(TOKEN_SCOPE_REFUSED.to_string()))
            }
            Ok(None) => Err(must_log_in(
                parts,
                &auth.authenticator,
                auth.authenticator.unauthorized_message(),
            )),
            Err(error) => Err(Rejection::Failed(error)),
        }
    }
}

/// Extracts the logged-in user only if the login is fresh: by password in this session
/// (and within the authenticator's fresh window, if set), not restored from a
/// remember-me cookie (Flask-Login's `fresh_login_required`, Microdot's
/// `@login.fresh`). Browsers are sent to the login page to enter their password again;
/// other clients get 401 `{"error": "fresh login required"}`. A request with a bearer
/// credential (a personal access token, a bearer session) gets 403: what needs a fresh
/// login changes how one gets in, and no token does that.
pub struct RequireFresh<U>(pub U);

/// The 401 message of [`RequireFresh`].
pub const FRESH_LOGIN_REQUIRED: &str = "fresh login required";

/// The 403 message of [`RequireFresh`] to a request with a bearer token.
pub const NOT_WITH_A_TOKEN: &str =
    "not allowed with a bearer token: sign in with a browser to change this";

/// The 403 message of a request a personal access token's scopes do not allow.
pub const TOKEN_SCOPE_REFUSED: &str = "this token's scopes do not allow this request";

impl<S: Send + Sync, U: AuthUser> FromRequestParts<S> for RequireFresh<U> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RequireLogin(user) = RequireLogin::<U>::from_request_parts(parts, state).await?;
        let auth = AuthSession::<U>::from_request_parts(parts, state).await?;
        if auth.is_bearer() {
            return Err(Rejection::Forbidden(NOT_WITH_A_TOKEN.to_string()));
        }
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

/// Extracts the logged-in user only if the login was completed with a second factor
/// (TOTP, a recovery code or a passkey; within the authenticator's
/// `with_second_factor_within` window, if set). Browsers are sent to the login page;
/// other clients get 401 `{"error": "second factor required"}`.
pub struct RequireSecondFactor<U>(pub U);

/// The 401 message of [`RequireSecondFactor`].
pub const SECOND_FACTOR_REQUIRED: &str = "second factor required";

impl<S: Send + Sync, U: AuthUser> FromRequestParts<S> for RequireSecondFactor<U> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RequireLogin(user) = RequireLogin::<U>::from_request_parts(parts, state).await?;
        let auth = AuthSession::<U>::from_request_parts(parts, state).await?;
        match auth.has_second_factor().await {
            Ok(true) => Ok(RequireSecondFactor(user)),
            Ok(false) => Err(must_log_in(
                parts,
                auth.authenticator(),
                SECOND_FACTOR_REQUIRED,
            )),
            Err(error) => Err(Rejection::Failed(error)),
        }
    }
}

/// A layer that lets only users logged in with a second factor through (see
/// [`RequireSecondFactor`]).
pub fn second_factor_required<U: AuthUser>(
) -> axum::middleware::FromExtractorLayer<RequireSecondFactor<U>, ()> {
    axum::middleware::from_extractor::<RequireSecondFactor<U>>()
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
    let bearer = parts
        .extensions
        .get::<Session>()
        .is_some_and(Session::is_bearer);
    if bearer || !wants_html(&parts.headers) {
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

/// The browser's own CSRF value ([`BrowserNonce`], the signed double-submit cookie): the
/// one its `csrf` cookie holds, or a new one. Forms shown to a visitor who is not logged
/// in are bound to it (see [`crate::csrf`]), so they need no stored session. A page that
/// shows such a form calls [`BrowserCsrf::set_cookie`] on its response.
#[derive(Debug, Clone)]
pub struct BrowserCsrf {
    nonce: BrowserNonce,
    sent: bool,
    secure: bool,
}

impl BrowserCsrf {
    /// The value forms of this response are bound to.
    pub fn nonce(&self) -> &BrowserNonce {
        &self.nonce
    }

    /// The value the browser sent, if it sent a well-formed one: the only one a form
    /// submission may be checked against.
    pub fn sent(&self) -> Option<&BrowserNonce> {
        self.sent.then_some(&self.nonce)
    }

    /// Adds the cookie to `response` when the browser does not have it yet (`HttpOnly`,
    /// `SameSite=Lax`, and `Secure` with the `__Host-` prefix when sessions are secure).
    pub fn set_cookie(&self, response: &mut Response) {
        if self.sent {
            return;
        }
        let name = browser_cookie_name(self.secure);
        append_cookie(
            response,
            site_cookie(name, self.nonce.encode(), self.secure),
        );
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BrowserCsrf {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let secure = parts
            .extensions
            .get::<Session>()
            .ok_or(Rejection::MissingLayer("SessionLayer"))?
            .config()
            .secure();
        let name = browser_cookie_name(secure);
        let sent = request_cookie(&parts.headers, name)
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(BrowserNonce::parse);
        Ok(match sent {
            Some(nonce) => BrowserCsrf {
                nonce,
                sent: true,
                secure,
            },
            None => BrowserCsrf {
                nonce: BrowserNonce::generate(),
                sent: false,
                secure,
            },
        })
    }
}

/// Everything a handler needs for CSRF-protected forms: the key (from an
/// `axum::Extension(CsrfKey)` layer), the request's session and the browser's CSRF
/// cookie.
///
/// ```no_run
/// use axum::{response::{Html, IntoResponse, Response}, routing::get, Extension, Router};
/// use latchkey::{axum::Csrf, csrf::CsrfKey, store::MemoryStore, SessionConfig, SessionLayer};
///
/// async fn form(csrf: Csrf) -> Response {
///     let Ok(token) = csrf.token().await else {
///         return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
///     };
///     let page = format!(r#"<form method="post"><input type="hidden" name="csrf_token" value="{token}"></form>"#);
///     let mut response = Html(page).into_response();
///     csrf.set_cookie(&mut response);
///     response
/// }
///
/// let app: Router = Router::new()
///     .route("/form", get(form))
///     .layer(Extension(CsrfKey::derive(b"a secret every process shares, 32+ bytes")))
///     .layer(SessionLayer::new(MemoryStore::new(), SessionConfig::insecure_for_local_development()));
/// ```
#[derive(Clone)]
pub struct Csrf {
    key: CsrfKey,
    session: Session,
    browser: BrowserCsrf,
}

impl Csrf {
    /// The token for a form on this response (see [`CsrfKey::form_token`]).
    pub async fn token(&self) -> Result<String, SessionError> {
        self.key
            .form_token(&self.session, self.browser.nonce())
            .await
    }

    /// Whether a submitted form's token is good (see [`CsrfKey::verify`]).
    pub async fn verify(&self, submitted: Option<&str>) -> Result<bool, SessionError> {
        self.key
            .verify(&self.session, self.browser.sent(), submitted)
            .await
    }

    /// Gives the browser its CSRF cookie if it has none (call on every page with a form).
    pub fn set_cookie(&self, response: &mut Response) {
        self.browser.set_cookie(response)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Csrf {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let key = parts
            .extensions
            .get::<CsrfKey>()
            .cloned()
            .ok_or(Rejection::MissingLayer("Extension(CsrfKey)"))?;
        let browser = BrowserCsrf::from_request_parts(parts, state).await?;
        let session = Session::from_request_parts(parts, state).await?;
        Ok(Csrf {
            key,
            session,
            browser,
        })
    }
}
