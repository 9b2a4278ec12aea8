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

/// `response` sending the browser to the login page, `rd` the URL it asked for.
fn to_login(mut response: Response, app: &AppState, original: &Original) -> Response {
    let rd: String = url::form_urlencoded::byte_serialize(original.url().as_bytes()).collect();
    if let Ok(location) = HeaderValue::from_str(&format!("{}/login?rd={rd}", app.mail.public_url)) {
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
/// when nobody is logged in; 403 when the user may not.
pub async fn nginx(
    State(app): State<AppState>,
    peer: Peer,
    auth: AuthSession<User>,
    headers: HeaderMap,
) -> Result<Response, HandlerError> {
    refuse_untrusted(&app, peer)?;
    let original = Original::from_nginx(&headers)
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
    Ok(match flows::check(&app, &auth, &original).await? {
        Verdict::Allow(who) => allowed(who),
        Verdict::LogIn => to_login(
            ApiError::new(StatusCode::UNAUTHORIZED, "login required").into_response(),
            &app,
            &original,
        ),
        Verdict::Forbidden(why) => ApiError::forbidden(why).into_response(),
    })
}

/// `GET /auth/forward` (Caddy `forward_auth`, Traefik `forwardAuth`): reads
/// `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri`. 200 with the `Remote-*` headers;
/// nobody logged in: 302 to the login page (`?rd=` the original URL) for a browser's GET
/// or HEAD, 401 for other methods and for clients that do not accept HTML; 403 when the
/// user may not.
pub async fn forward(
    State(app): State<AppState>,
    peer: Peer,
    auth: AuthSession<User>,
    headers: HeaderMap,
) -> Result<Response, HandlerError> {
    refuse_untrusted(&app, peer)?;
    let original = Original::from_forwarded(&headers)
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
    Ok(match flows::check(&app, &auth, &original).await? {
        Verdict::Allow(who) => allowed(who),
        Verdict::LogIn => {
            let browser = matches!(original.method.as_str(), "GET" | "HEAD")
                && headers
                    .get(ACCEPT)
                    .and_then(|accept| accept.to_str().ok())
                    .is_some_and(|accept| accept.contains("text/html"));
            if browser {
                to_login(StatusCode::FOUND.into_response(), &app, &original)
            } else {
                ApiError::new(StatusCode::UNAUTHORIZED, "login required").into_response()
            }
        }
        Verdict::Forbidden(why) => ApiError::forbidden(why).into_response(),
    })
}
