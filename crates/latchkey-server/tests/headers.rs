//! Every route, errors included, answers with the security headers: no-store caching,
//! nosniff, a referrer policy; a strict CSP and frame protection on HTML; Clear-Site-Data
//! on logout; HSTS when the public URL is https.

mod common;

use common::{bare_client, Server};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

fn check(what: &str, headers: &HeaderMap, hsts: bool) {
    let get = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    assert_eq!(get("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(get("referrer-policy"), Some("same-origin"), "{what}");
    for leak in ["server", "x-powered-by", "access-control-allow-origin"] {
        assert!(get(leak).is_none(), "{what}: sends {leak}");
    }
    if get("content-type").is_some_and(|value| value.starts_with("application/json")) {
        assert_eq!(
            get("content-disposition"),
            Some("attachment; filename=\"api.json\""),
            "{what}"
        );
    }
    let html = get("content-type").is_some_and(|value| value.starts_with("text/html"));
    if html {
        let csp = get("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(
                csp.contains(directive),
                "{what}: CSP {csp:?} lacks {directive}"
            );
        }
        assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
        assert_eq!(get("x-frame-options"), Some("DENY"), "{what}");
    }
    assert_eq!(
        get("strict-transport-security").is_some(),
        hsts,
        "{what}: HSTS only with an https public URL"
    );
}

/// Sends one request; checks its headers; returns status and headers.
async fn visit(
    server: &Server,
    method: Method,
    path: &str,
    accept: &str,
    cookie: Option<&str>,
    body: Option<serde_json::Value>,
    hsts: bool,
) -> (StatusCode, HeaderMap) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut request = client
        .request(method.clone(), server.url(path))
        .header("accept", accept);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let (status, headers) = (response.status(), response.headers().clone());
    let what = format!("{method} {path} ({accept}) -> {status}");
    check(&what, &headers, hsts);
    if path != "/style.css" && path != "/app.js" {
        assert_eq!(
            headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{what}"
        );
    }
    (status, headers)
}

async fn walk(server: &Server, hsts: bool) {
    let cookie = common::signup_and_login(server, "walker", PASSWORD).await;

    let pages = [
        "/",
        "/signup",
        "/login",
        "/home",
        "/sessions",
        "/password",
        "/style.css",
        "/app.js",
        "/nowhere",
    ];
    for accept in ["text/html", "application/json"] {
        for cookie in [None, Some(cookie.as_str())] {
            for path in pages {
                visit(server, Method::GET, path, accept, cookie, None, hsts).await;
            }
            // Errors: wrong method, bad body, missing CSRF token, unknown session id.
            visit(server, Method::PUT, "/home", accept, cookie, None, hsts).await;
            visit(
                server,
                Method::POST,
                "/login",
                accept,
                cookie,
                Some(json!({ "username": 7 })),
                hsts,
            )
            .await;
            for path in [
                "/sessions/00/revoke",
                "/sessions/revoke-others",
                "/password",
            ] {
                visit(server, Method::POST, path, accept, cookie, None, hsts).await;
            }
        }
    }
    let (status, headers) = visit(
        server,
        Method::POST,
        "/logout",
        "application/json",
        Some(&cookie),
        None,
        hsts,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("clear-site-data").and_then(|v| v.to_str().ok()),
        Some("\"cache\", \"storage\""),
        "logout clears the site's data"
    );
}

#[tokio::test]
async fn every_route_sends_the_security_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    walk(&server, false).await;
}

#[tokio::test]
async fn an_https_public_url_adds_hsts_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--public-url", "https://login.example.com"]);
    // Cookies are `__Host-` and Secure there; the header walk needs no session.
    let (_, headers) = visit(
        &server,
        Method::GET,
        "/login",
        "text/html",
        None,
        None,
        true,
    )
    .await;
    assert_eq!(
        headers
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000; includeSubDomains")
    );
    for path in ["/", "/home", "/nowhere", "/style.css"] {
        visit(
            &server,
            Method::GET,
            path,
            "application/json",
            None,
            None,
            true,
        )
        .await;
    }
}

#[tokio::test]
async fn what_users_type_is_escaped_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let name = "<b>bold</b>";
    let cookie = common::signup_and_login(&server, name, PASSWORD).await;
    for path in ["/home"] {
        let page = bare_client()
            .get(server.url(path))
            .header("accept", "text/html")
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("html");
        assert!(!page.contains(name), "{path} renders the name as markup");
        assert!(
            page.contains("&lt;b&gt;bold&lt;"),
            "{path} does not show the escaped name"
        );
    }
}

/// The refusals made before a handler runs (a declared body over the limit: 413; a
/// non-JSON body on the JSON branch: 415) carry every security header too, HSTS
/// included (issue 15, item 19: headers were skipped on answers that already had
/// `X-Content-Type-Options`).
#[tokio::test]
async fn refusals_carry_every_security_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--public-url", "https://login.example.com"]);
    let client = bare_client();
    let too_large = client
        .post(server.url("/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .expect("413");
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    check("413 before the handler", too_large.headers(), true);
    let not_json = client
        .post(server.url("/logout"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("415");
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    check("415 on the JSON branch", not_json.headers(), true);
}
