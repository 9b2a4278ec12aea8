//! Forward authentication: the endpoints a proxy asks, and their answers in the form
//! each proxy expects.

use crate::forward::flows::{self, Original, Verdict};
use crate::web::headers;
use crate::web::json::{ApiError, HandlerError};
use crate::web::state::AppState;
use crate::web::throttling::Peer;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey::{AuthSession, User};
use std::sync::LazyLock;

/// The 401's message when the rules need more than the request has.
const LOGIN_REQUIRED: &str = "login required";

/// The 403 to anyone but a trusted proxy.
const NOT_A_PROXY: &str = "only a trusted proxy (--trusted-proxy) may ask";

/// Refuses a request whose connection is not from a trusted proxy.
fn refuse_untrusted(app: &AppState, peer: Peer) -> Result<(), HandlerError> {
    if app.proxies.addresses.contains(&peer.0.ip()) {
        Ok(())
    } else {
        latchkey::audit_refusal!("forward_auth_untrusted_peer", peer = %peer.0.ip());
        Err(ApiError::forbidden(NOT_A_PROXY).into())
    }
}

/// Where a browser goes when the rules need more than its session has: the login page,
/// or the second step's.
#[derive(Clone, Copy)]
enum Page {
    Login,
    SecondStep,
}

impl Page {
    fn path(self) -> &'static str {
        match self {
            Page::Login => "/login",
            Page::SecondStep => "/login/second-factor",
        }
    }
}

/// `response` sending the browser to `page`, `rd` the URL it asked for.
fn to_page(mut response: Response, app: &AppState, page: Page, original: &Original) -> Response {
    let rd: String = url::form_urlencoded::byte_serialize(original.url().as_bytes()).collect();
    let location = format!("{}{}?rd={rd}", app.mail.public_url, page.path());
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// The headers of who is let through.
const REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
const REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");
const REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");
const REMOTE_GROUPS: HeaderName = HeaderName::from_static("remote-groups");

/// A `200`'s headers, made once: the security headers, an empty body's length and the
/// `Remote-*` names (empty), so that an answer copies the map and fills the values in
/// place rather than inserting a dozen headers one by one (this answer goes out on
/// every request to every protected app).
static ALLOWED_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut response = Response::new(());
    let headers = response.headers_mut();
    headers.reserve(10);
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    for name in [REMOTE_USER, REMOTE_NAME, REMOTE_EMAIL, REMOTE_GROUPS] {
        headers.insert(name, HeaderValue::from_static(""));
    }
    std::mem::take(headers::secure(response, false).headers_mut())
});

/// `200` with the `Remote-*` headers of who is let through.
fn allowed(who: Option<(User, Vec<String>)>) -> Response {
    let mut response = StatusCode::OK.into_response();
    let Some((user, groups)) = who else {
        return response;
    };
    let mut map = ALLOWED_HEADERS.clone();
    let mut set = |name: &HeaderName, value: &str| {
        if let (Some(slot), Ok(value)) = (map.get_mut(name), HeaderValue::from_str(value)) {
            *slot = value;
        }
    };
    set(&REMOTE_USER, &user.username);
    set(&REMOTE_NAME, &user.username);
    set(&REMOTE_EMAIL, user.email.as_deref().unwrap_or_default());
    set(&REMOTE_GROUPS, &groups.join(","));
    *response.headers_mut() = map;
    response
}

/// The original request as nginx describes it, or why it cannot be read.
pub struct AskedByNginx(Result<Original, &'static str>);

impl<S: Send + Sync> FromRequestParts<S> for AskedByNginx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AskedByNginx(Original::from_nginx(&parts.headers)))
    }
}

/// The original request as Caddy or Traefik describe it (or why it cannot be read), and
/// whether the client is a browser asking for a page (a GET or HEAD accepting HTML).
pub struct AskedByForward {
    original: Result<Original, &'static str>,
    browser: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for AskedByForward {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let original = Original::from_forwarded(&parts.headers);
        let browser = original
            .as_ref()
            .is_ok_and(|original| matches!(original.method, Method::GET | Method::HEAD))
            && parts
                .headers
                .get(ACCEPT)
                .and_then(|accept| accept.to_str().ok())
                .is_some_and(|accept| accept.contains("text/html"));
        Ok(AskedByForward { original, browser })
    }
}

/// `why` a description cannot be read, as a 400.
fn unreadable(why: &'static str) -> HandlerError {
    ApiError::new(StatusCode::BAD_REQUEST, why).into()
}

/// `GET /auth/nginx` (nginx `auth_request`): reads `X-Original-URL` and
/// `X-Original-Method`. 200 with `Remote-User`, `Remote-Email`, `Remote-Name`,
/// `Remote-Groups` when the rules let the request through; 401 with `Location` the login
/// page (`?rd=` the original URL, which nginx's `error_page 401` turns into a redirect)
/// when nobody is logged in (the second step's page when the session lacks the second
/// factor a `two_factor` rule asks); 403 when the user may not.
pub async fn nginx(
    State(app): State<AppState>,
    peer: Peer,
    auth: AuthSession<User>,
    AskedByNginx(original): AskedByNginx,
) -> Result<Response, HandlerError> {
    refuse_untrusted(&app, peer)?;
    let original = original.map_err(unreadable)?;
    let page = match flows::check(&app, &auth, &original).await? {
        Verdict::Allow(who) => return Ok(allowed(who)),
        Verdict::Forbidden(why) => return Ok(ApiError::forbidden(why).into_response()),
        Verdict::LogIn => Page::Login,
        Verdict::SecondStep => Page::SecondStep,
    };
    let unauthorized = ApiError::new(StatusCode::UNAUTHORIZED, LOGIN_REQUIRED).into_response();
    Ok(to_page(unauthorized, &app, page, &original))
}

/// `GET /auth/forward` (Caddy `forward_auth`, Traefik `forwardAuth`): reads
/// `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri`. 200 with the `Remote-*` headers;
/// nobody logged in: 302 to the login page (`?rd=` the original URL) for a browser's GET
/// or HEAD (the second step's page when the session lacks the second factor a
/// `two_factor` rule asks), 401 for other methods and for clients that do not accept
/// HTML; 403 when the user may not.
pub async fn forward(
    State(app): State<AppState>,
    peer: Peer,
    auth: AuthSession<User>,
    asked: AskedByForward,
) -> Result<Response, HandlerError> {
    refuse_untrusted(&app, peer)?;
    let original = asked.original.map_err(unreadable)?;
    let page = match flows::check(&app, &auth, &original).await? {
        Verdict::Allow(who) => return Ok(allowed(who)),
        Verdict::Forbidden(why) => return Ok(ApiError::forbidden(why).into_response()),
        Verdict::LogIn => Page::Login,
        Verdict::SecondStep => Page::SecondStep,
    };
    Ok(if asked.browser {
        to_page(StatusCode::FOUND.into_response(), &app, page, &original)
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, LOGIN_REQUIRED).into_response()
    })
}
