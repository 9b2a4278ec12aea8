//! Security headers on every response, errors included.
//!
//! * JSON: `Content-Disposition: attachment; filename="api.json"` (a browser that is
//!   tricked into opening an API response saves it rather than rendering it);
//! * all responses: `Cache-Control: no-store` (unless the handler chose a policy, as the
//!   stylesheet does), `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`;
//!   every one of them is added to every answer, whatever headers the handler set;
//! * HTML: a strict `Content-Security-Policy` (same-origin styles, nothing else; no
//!   framing), `X-Frame-Options: DENY`, `Cross-Origin-Opener-Policy: same-origin`;
//! * a successful logout: `Clear-Site-Data: "cache", "storage"`. Not `"cookies"`: the
//!   logout response itself removes the session and remember-me cookies and sets the
//!   new anonymous session that carries the "signed out" message, which Chromium would
//!   wipe too (the browser test caught it);
//! * with an https public URL: `Strict-Transport-Security` for a year, subdomains too.

use axum::http::header::CONTENT_LENGTH;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::LazyLock;

/// The policy for the server's HTML: same-origin scripts, stylesheets, form targets and
/// script requests (the passkey ceremonies' JSON calls) only; nothing inline.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";
/// One year, as ASVS 5.0 3.4.1 asks.
pub const HSTS_VALUE: &str = "max-age=31536000; includeSubDomains";
const CLEAR_SITE_DATA: HeaderName = HeaderName::from_static("clear-site-data");
const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");

/// The headers of a JSON answer, security headers included, made once: [`json_body`]
/// copies the map (two allocations) instead of inserting six headers one by one, which
/// showed as a tenth of the work of `GET /home`. `Content-Length` is a placeholder it
/// overwrites.
static JSON_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    add_security_headers(&mut headers);
    headers
});

/// `Content-Length` values for bodies shorter than 1 KiB (most JSON answers), made once
/// with static text so that copying one allocates nothing (a value made per answer
/// allocates its few digits).
static SMALL_LENGTHS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    (0..1024usize)
        .map(|length| HeaderValue::from_static(length.to_string().leak()))
        .collect()
});

/// A JSON answer with the security headers [`secure`] would add to it already in place
/// (all but HSTS, which depends on the server's settings).
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let mut body = Vec::with_capacity(64);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => json_body(status, body),
        Err(error) => {
            tracing::error!(%error, "answer not serializable");
            json_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error":"answer could not be written"}"#.to_vec(),
            )
        }
    }
}

/// [`json`] for a body that is already JSON.
pub fn json_body(status: StatusCode, body: Vec<u8>) -> Response {
    let mut headers = JSON_HEADERS.clone();
    if let Some(length) = headers.get_mut(CONTENT_LENGTH) {
        *length = match SMALL_LENGTHS.get(body.len()) {
            Some(small) => small.clone(),
            None => HeaderValue::from(body.len()),
        };
    }
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The origin (`https://app.example.com`) a page's form leads to after its submission,
/// besides this site: the app a login goes back to (an `rd` the access rules allowed).
/// Browsers hold the redirect that follows a form's submission to the page's
/// `form-action`, so [`secure`] names this origin there, for this answer only.
#[derive(Debug, Clone)]
pub struct FormLeadsTo(pub String);

/// Adds the headers to a response (a synchronous map, so the layer costs no allocation
/// per request). `hsts` when the public URL is https.
pub fn secure<B>(mut response: axum::http::Response<B>, hsts: bool) -> axum::http::Response<B> {
    let leads_to = response.extensions_mut().remove::<FormLeadsTo>();
    let headers = response.headers_mut();
    // Always, whatever the handler set: an answer made by [`json`] has every header in
    // place already, and inserting them again only replaces them (the map does not grow).
    add_security_headers(headers);
    if let Some(FormLeadsTo(origin)) = leads_to {
        let policy = CONTENT_SECURITY_POLICY_VALUE.replace(
            "form-action 'self'",
            &format!("form-action 'self' {origin}"),
        );
        if let (true, Ok(policy)) = (
            headers.contains_key(CONTENT_SECURITY_POLICY),
            HeaderValue::from_str(&policy),
        ) {
            headers.insert(CONTENT_SECURITY_POLICY, policy);
        }
    }
    if hsts {
        headers.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS_VALUE),
        );
    }
    response
}

/// The headers for the answer's content type (see the module notes), HSTS aside. Each
/// one replaces whatever the handler set, except `Cache-Control`, where a handler's own
/// policy (the stylesheet's) is kept. A header already there with our value is left as
/// it is: the prepared JSON answers carry them all, and reading costs less than
/// replacing.
fn add_security_headers(headers: &mut HeaderMap) {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let html = content_type.starts_with("text/html");
    let json = content_type.starts_with("application/json");
    // No `reserve`: a JSON answer's map (content type and length) has room for its four
    // headers as it is, and reserving more than that made it grow on every request.
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    ensure(headers, X_CONTENT_TYPE_OPTIONS, "nosniff");
    ensure(headers, REFERRER_POLICY, "same-origin");
    if html {
        ensure(
            headers,
            CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY_VALUE,
        );
        ensure(headers, X_FRAME_OPTIONS, "DENY");
        ensure(headers, CROSS_ORIGIN_OPENER_POLICY, "same-origin");
    }
    if json {
        ensure(
            headers,
            CONTENT_DISPOSITION,
            "attachment; filename=\"api.json\"",
        );
    }
}

/// Sets `name` to `value` unless it holds exactly that, once, already.
fn ensure(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    let mut present = headers.get_all(&name).iter();
    let ours = matches!(
        (present.next(), present.next()),
        (Some(only), None) if only.as_bytes() == value.as_bytes()
    );
    if !ours {
        headers.insert(name, HeaderValue::from_static(value));
    }
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
        include_str!("../../static/app.js"),
    )
}

/// `GET /style.css`: the pages' stylesheet (cacheable for an hour).
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/style.css"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers_carry_their_length_and_security_headers() {
        for length in [0, 1, 27, 1023, 1024, 70_000] {
            let response = json_body(StatusCode::OK, vec![b' '; length]);
            let headers = response.headers();
            assert_eq!(headers[CONTENT_LENGTH], length.to_string().as_str());
            assert_eq!(headers[CONTENT_TYPE], "application/json");
            assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(headers[CACHE_CONTROL], "no-store");
            assert!(headers.contains_key(CONTENT_DISPOSITION));
        }
        // `secure` adds nothing to them but HSTS.
        let plain = secure(json_body(StatusCode::OK, b"{}".to_vec()), false);
        assert_eq!(plain.headers().len(), JSON_HEADERS.len());
        let https = secure(json_body(StatusCode::OK, b"{}".to_vec()), true);
        assert_eq!(https.headers()[STRICT_TRANSPORT_SECURITY], HSTS_VALUE);
    }

    #[test]
    fn an_answer_that_set_some_security_headers_gets_all_of_them() {
        let mut response = Response::new(axum::body::Body::empty());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
        let response = secure(response, false);
        let headers = response.headers();
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert_eq!(headers[REFERRER_POLICY], "same-origin");
        assert_eq!(
            headers[CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY_VALUE
        );
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY", "the strict value wins");
        assert_eq!(headers[CROSS_ORIGIN_OPENER_POLICY], "same-origin");
    }

    #[test]
    fn our_value_among_others_is_left_ours_alone() {
        let mut response = Response::new(axum::body::Body::empty());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        headers.append(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.append(X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
        let response = secure(response, false);
        let frames: Vec<_> = response.headers().get_all(X_FRAME_OPTIONS).iter().collect();
        assert_eq!(frames, ["DENY"]);
    }
}
