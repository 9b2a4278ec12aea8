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
        // Directive by directive: scripts and styles from this origin only (no host,
        // scheme, `*`, nonce or `unsafe-*` source beside 'self'), nothing by default.
        let directives: Vec<(&str, &str)> = csp
            .split(';')
            .map(str::trim)
            .filter(|directive| !directive.is_empty())
            .map(|directive| directive.split_once(' ').unwrap_or((directive, "")))
            .collect();
        for (name, sources) in [
            ("default-src", "'none'"),
            ("script-src", "'self'"),
            ("style-src", "'self'"),
            ("img-src", "'self'"),
            ("connect-src", "'self'"),
            ("form-action", "'self'"),
            ("frame-ancestors", "'none'"),
            ("base-uri", "'none'"),
        ] {
            assert_eq!(
                directives
                    .iter()
                    .filter(|(directive, _)| *directive == name)
                    .map(|(_, sources)| sources.trim())
                    .collect::<Vec<_>>(),
                vec![sources],
                "{what}: CSP {csp:?}, {name}"
            );
        }
        assert_eq!(directives.len(), 8, "{what}: no other directive: {csp:?}");
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
    let body = response.text().await.expect("body");
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("text/html") {
        assets_are_this_origins_own(&what, &body);
    }
    if content_type.starts_with("text/css") || content_type.starts_with("text/javascript") {
        // A URL elsewhere: a scheme, a protocol-relative string; in the stylesheet, any
        // `url(` or import at all.
        let mut external = vec!["http:", "https:", "\"//", "'//", "`//"];
        if content_type.starts_with("text/css") {
            external.extend(["@import", "url("]);
        }
        for external in external {
            assert!(!body.contains(external), "{what} refers to {external}");
        }
    }
    (status, headers)
}

/// A page loads nothing from elsewhere (ASVS 14.2.3): every `src` and every `<link>`'s
/// `href` is a path on this server (`/…`, not `//host/…` or a scheme), and there is no
/// inline script or style for the CSP to have to allow.
fn assets_are_this_origins_own(what: &str, html: &str) {
    let mut loaded = Vec::new();
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        let name = tag.split_whitespace().next().unwrap_or_default();
        let mut urls: Vec<&str> = tag
            .split(" src=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        if name == "link" {
            urls.extend(
                tag.split(" href=\"")
                    .skip(1)
                    .filter_map(|rest| rest.split('"').next()),
            );
        }
        for url in urls {
            loaded.push(url.to_string());
            assert!(
                url.starts_with('/') && !url.starts_with("//"),
                "{what}: <{name}> loads {url:?} from elsewhere"
            );
        }
        if name == "script" {
            assert!(tag.contains(" src=\""), "{what}: an inline <script>");
        }
        assert!(
            name != "style" && !tag.contains(" style=\""),
            "{what}: inline style in <{tag}>"
        );
    }
    for asset in ["/style.css", "/app.js"] {
        assert!(
            loaded.iter().any(|url| url == asset),
            "{what}: the page loads {asset}: {loaded:?}"
        );
    }
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
                let (status, _) =
                    visit(server, Method::GET, path, accept, cookie, None, hsts).await;
                if path == "/nowhere" {
                    assert_eq!(status, StatusCode::NOT_FOUND, "{accept}, {cookie:?}");
                }
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

/// ASVS 4.3.2: no directory is served and there are no debug or admin routes: paths a
/// static-file server, a leftover debug route or a misplaced file would answer are
/// 404, as HTML and as JSON, logged in or not (the session data API is off by default).
#[tokio::test]
async fn unknown_paths_are_404_for_everyone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let cookie = common::signup_and_login(&server, "prober", PASSWORD).await;
    let paths = [
        "/nowhere",
        "/latchkey.db",
        "/latchkey.key",
        "/.env",
        "/.git/config",
        "/static/app.js",
        "/static/style.css",
        "/templates/base.html",
        "/src/main.rs",
        "/Cargo.toml",
        "/style.css/",
        "/app.js.map",
        "/admin",
        "/debug",
        "/metrics",
        "/api/session/data",
        "/home/..%2f..%2fCargo.toml",
        "/%2e%2e/Cargo.toml",
    ];
    for accept in ["text/html", "application/json"] {
        for cookie in [None, Some(cookie.as_str())] {
            for path in paths {
                let (status, _) =
                    visit(&server, Method::GET, path, accept, cookie, None, false).await;
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "GET {path} ({accept}, logged in: {})",
                    cookie.is_some()
                );
            }
        }
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
