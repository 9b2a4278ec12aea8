//! Forward authentication: the endpoints a proxy asks, and their answers in the form
//! each proxy expects.

use crate::forward::flows::{self, Original, Verdict};
use crate::web::json::{ApiError, HandlerError};
use crate::web::state::AppState;
use crate::web::throttling::Peer;
use axum::extract::State;
use axum::http::header::{ACCEPT, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey::{AuthSession, User};

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

/// `200` with the `Remote-*` headers of who is let through.
fn allowed(who: Option<(User, Vec<String>)>) -> Response {
    let mut response = StatusCode::OK.into_response();
    let Some((user, groups)) = who else {
        return response;
    };
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("remote-user", &user.username);
    set("remote-name", &user.username);
    set("remote-email", user.email.as_deref().unwrap_or_default());
    set("remote-groups", &groups.join(","));
    response
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
    headers: HeaderMap,
) -> Result<Response, HandlerError> {
    refuse_untrusted(&app, peer)?;
    let original = Original::from_nginx(&headers)
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
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
    headers: HeaderMap,
) -> Result<Response, HandlerError> {
    refuse_untrusted(&app, peer)?;
    let original = Original::from_forwarded(&headers)
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
    let page = match flows::check(&app, &auth, &original).await? {
        Verdict::Allow(who) => return Ok(allowed(who)),
        Verdict::Forbidden(why) => return Ok(ApiError::forbidden(why).into_response()),
        Verdict::LogIn => Page::Login,
        Verdict::SecondStep => Page::SecondStep,
    };
    let browser = matches!(original.method.as_str(), "GET" | "HEAD")
        && headers
            .get(ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
    Ok(if browser {
        to_page(StatusCode::FOUND.into_response(), &app, page, &original)
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, LOGIN_REQUIRED).into_response()
    })
}
