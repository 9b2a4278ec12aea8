//! Security headers on every response, errors included.
//!
//! * JSON: `Content-Disposition: attachment; filename="api.json"` (a browser that is
//!   tricked into opening an API response saves it rather than rendering it);
//! * all responses: `Cache-Control: no-store` (unless the handler chose a policy, as the
//!   stylesheet does), `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`;
//! * HTML: a strict `Content-Security-Policy` (same-origin styles, nothing else; no
//!   framing), `X-Frame-Options: DENY`, `Cross-Origin-Opener-Policy: same-origin`;
//! * a successful logout: `Clear-Site-Data: "cache", "storage"`. Not `"cookies"`: the
//!   logout response itself removes the session and remember-me cookies and sets the
//!   new anonymous session that carries the "signed out" message, which Chromium would
//!   wipe too (the browser test caught it);
//! * with an https public URL: `Strict-Transport-Security` for a year, subdomains too.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The policy for the server's HTML: same-origin scripts, stylesheets and form targets
/// only; nothing inline.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";
/// One year, as ASVS 5.0 3.4.1 asks.
pub const HSTS_VALUE: &str = "max-age=31536000; includeSubDomains";
const CLEAR_SITE_DATA: HeaderName = HeaderName::from_static("clear-site-data");
const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");

/// Adds the headers to a response (a synchronous map, so the layer costs no allocation
/// per request). `hsts` when the public URL is https.
pub fn secure<B>(mut response: axum::http::Response<B>, hsts: bool) -> axum::http::Response<B> {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let html = content_type.starts_with("text/html");
    let json = content_type.starts_with("application/json");
    // No `reserve`: a JSON answer's map (content type and length) has room for its four
    // headers as it is, and reserving more than that made it grow on every request.
    let headers = response.headers_mut();
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if html {
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
        );
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            CROSS_ORIGIN_OPENER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    if json {
        headers.insert(
            CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"api.json\""),
        );
    }
    if hsts {
        headers.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS_VALUE),
        );
    }
    response
}

/// Marks a successful logout's response: `Clear-Site-Data: "cache", "storage"`.
pub fn clear_site_data(mut response: Response) -> Response {
    if response.status().is_success() || response.status().is_redirection() {
        response.headers_mut().insert(
            CLEAR_SITE_DATA,
            HeaderValue::from_static("\"cache\", \"storage\""),
        );
    }
    response
}

/// `GET /app.js`: the pages' script (show-password buttons, strength hint).
pub async fn script() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/app.js"),
    )
}

/// `GET /style.css`: the pages' stylesheet (cacheable for an hour).
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/style.css"),
    )
}
