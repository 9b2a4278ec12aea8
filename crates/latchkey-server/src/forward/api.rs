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
use minijinja::context;
use std::sync::LazyLock;

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

    /// The 401's message to a client that is not sent there.
    fn message(self) -> &'static str {
        match self {
            Page::Login => "login required",
            Page::SecondStep => "this app needs a login completed with your second factor (POST /login/second-factor)",
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
    let mut set = |name: &HeaderName, value: HeaderValue| {
        if let Some(slot) = map.get_mut(name) {
            *slot = value;
        }
    };
    // A value that is no header value (none: usernames, addresses and group names are
    // checked when they are set) stays empty.
    if let Ok(username) = HeaderValue::from_str(&user.username) {
        set(&REMOTE_USER, username.clone());
        set(&REMOTE_NAME, username);
    }
    if let Some(Ok(email)) = user.email.as_deref().map(HeaderValue::from_str) {
        set(&REMOTE_EMAIL, email);
    }
    if !groups.is_empty() {
        if let Ok(groups) = HeaderValue::from_str(&groups.join(",")) {
            set(&REMOTE_GROUPS, groups);
        }
    }
    *response.headers_mut() = map;
    response
}

/// The original request as a proxy describes it (or why it cannot be read), and whether
/// the client is a browser asking for a page (a GET or HEAD accepting HTML: the proxies
/// pass the client's `Accept` on).
pub struct Asked {
    original: Result<Original, &'static str>,
    browser: bool,
}

impl Asked {
    fn new(original: Result<Original, &'static str>, parts: &Parts) -> Self {
        let browser = original
            .as_ref()
            .is_ok_and(|original| matches!(original.method, Method::GET | Method::HEAD))
            && parts
                .headers
                .get(ACCEPT)
                .and_then(|accept| accept.to_str().ok())
                .is_some_and(|accept| accept.contains("text/html"));
        Asked { original, browser }
    }
}

/// [`Asked`] of nginx (`X-Original-URL`, `X-Original-Method`).
pub struct AskedByNginx(Asked);

impl<S: Send + Sync> FromRequestParts<S> for AskedByNginx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AskedByNginx(Asked::new(
            Original::from_nginx(&parts.headers),
            parts,
        )))
    }
}

/// [`Asked`] of Caddy or Traefik (`X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`).
pub struct AskedByForward(Asked);

impl<S: Send + Sync> FromRequestParts<S> for AskedByForward {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AskedByForward(Asked::new(
            Original::from_forwarded(&parts.headers),
            parts,
        )))
    }
}

/// The message of a `two_factor` rule's 403 to a user with no second factor.
const SET_UP_SECOND_FACTOR: &str =
    "This app needs two-step login: set up an authenticator app or a passkey on your account page.";

/// A 403: a page for a browser (the proxy shows it on the app's host, so it links only
/// to the login host; the shipped nginx config asks again for it), JSON otherwise. With
/// `set_up`, the page links to the account page.
fn forbidden(app: &AppState, why: &'static str, set_up: bool, browser: bool) -> Response {
    if !browser {
        return ApiError::forbidden(why).into_response();
    }
    let (link, link_text) = if set_up {
        (
            format!("{}/account", app.mail.public_url),
            "Your account page",
        )
    } else {
        (
            format!("{}/home", app.mail.public_url),
            "Your latchkey home page",
        )
    };
    app.templates.render(
        StatusCode::FORBIDDEN,
        "forward_forbidden.html",
        context! { message => why, link => link, link_text => link_text },
    )
}

/// `why` a description cannot be read, as a 400.
fn unreadable(why: &'static str) -> HandlerError {
    ApiError::new(StatusCode::BAD_REQUEST, why).into()
}

/// How a proxy hands a browser on to a latchkey page.
#[derive(Clone, Copy)]
enum Proxy {
    /// nginx: a 401 with `Location` for every client (its `error_page 401` redirects).
    Nginx,
    /// Caddy and Traefik: a 302 to a browser asking for a page, a bare 401 otherwise.
    Forward,
}

/// The answer to a proxy: refused unless it is a trusted one; 400 for a description
/// that cannot be read; the rules' 200 or 403; or the page the browser must go to first,
/// in `proxy`'s way.
async fn answer(
    app: &AppState,
    peer: Peer,
    auth: &AuthSession<User>,
    asked: Asked,
    proxy: Proxy,
) -> Result<Response, HandlerError> {
    refuse_untrusted(app, peer)?;
    let original = asked.original.map_err(unreadable)?;
    let page = match flows::check(app, auth, &original).await? {
        Verdict::Allow(who) => return Ok(allowed(who)),
        Verdict::SetUpSecondFactor => {
            return Ok(forbidden(app, SET_UP_SECOND_FACTOR, true, asked.browser))
        }
        Verdict::Forbidden(why) => return Ok(forbidden(app, why, false, asked.browser)),
        Verdict::LogIn => Page::Login,
        Verdict::SecondStep => Page::SecondStep,
    };
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, page.message()).into_response();
    Ok(match (proxy, asked.browser) {
        (Proxy::Nginx, _) => to_page(unauthorized(), app, page, &original),
        (Proxy::Forward, true) => to_page(StatusCode::FOUND.into_response(), app, page, &original),
        (Proxy::Forward, false) => unauthorized(),
    })
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
    AskedByNginx(asked): AskedByNginx,
) -> Result<Response, HandlerError> {
    answer(&app, peer, &auth, asked, Proxy::Nginx).await
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
    AskedByForward(asked): AskedByForward,
) -> Result<Response, HandlerError> {
    answer(&app, peer, &auth, asked, Proxy::Forward).await
}
