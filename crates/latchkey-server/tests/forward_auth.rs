//! Forward authentication (issue 28) over HTTP against the binary, asked the way nginx's
//! `auth_request` and Caddy's `forward_auth` ask (the test is the trusted proxy, on
//! loopback): the access rules decide on the session or bearer token the request
//! carries; groups come from the command line and count at once; the login page sends
//! the browser back to the app only when the rules protect it; the rules are read again
//! on SIGHUP, and a bad file keeps the old ones.

mod common;

use common::flows::{enable_totp, now_secs, post, PASSWORD};
use common::{bare_client, cli, client, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;

const RULES: &str = r#"
[[rule]]
host = "public.localhost"
schemes = ["http"]
policy = "bypass"

[[rule]]
host = "admin.localhost"
schemes = ["http"]
policy = "one_factor"
groups = ["admins"]

[[rule]]
host = "admin.localhost"
policy = "deny"

[[rule]]
host = "vault.localhost"
schemes = ["http"]
policy = "two_factor"

[[rule]]
host = "*.apps.localhost"
schemes = ["http"]
policy = "one_factor"
"#;

/// A server with `rules` as its access rules, this test's loopback its trusted proxy.
fn server_with(dir: &Path, rules: &str, extra: &[&str]) -> (Server, std::path::PathBuf) {
    let file = dir.join("rules.toml");
    std::fs::write(&file, rules).expect("rules file");
    let file_arg = file.display().to_string();
    let mut args = vec![
        "--access-rules",
        file_arg.as_str(),
        "--trusted-proxy",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    (Server::start(dir, &args), file)
}

/// `name` signed up and logged in: the browser.
async fn browser_of(server: &Server, name: &str, email: &str) -> reqwest::Client {
    let browser = client();
    let credentials = json!({ "username": name, "email": email, "password": PASSWORD });
    let (status, body) = post(&browser, server, "/signup", credentials).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = post(
        &browser,
        server,
        "/login",
        json!({ "username": name, "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    browser
}

/// nginx's subrequest for `url` (method `method`) from `client`.
async fn nginx(
    client: &reqwest::Client,
    server: &Server,
    url: &str,
    method: &str,
) -> reqwest::Response {
    client
        .get(server.url("/auth/nginx"))
        .header("x-original-url", url)
        .header("x-original-method", method)
        .send()
        .await
        .expect("auth_request")
}

/// Caddy's `forward_auth` for `method scheme://host uri`, accepting `accept`.
async fn forward(
    client: &reqwest::Client,
    server: &Server,
    (method, host, uri): (&str, &str, &str),
    accept: &str,
) -> reqwest::Response {
    client
        .get(server.url("/auth/forward"))
        .header("x-forwarded-method", method)
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", host)
        .header("x-forwarded-uri", uri)
        .header("accept", accept)
        .send()
        .await
        .expect("forward_auth")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn group(database: &str, verb: &str, name: &str, group: &str) {
    let (ok, said, stderr) = cli(
        &[
            "user",
            "group",
            verb,
            name,
            group,
            "--database-url",
            database,
        ],
        "",
    );
    assert!(ok, "{said}{stderr}");
}

#[tokio::test]
async fn the_rules_decide_for_nginx_and_caddy_on_the_session_the_request_carries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = server_with(dir.path(), RULES, &[]);
    let ada = browser_of(&server, "ada", "ada@example.com").await;
    let bob = browser_of(&server, "bob", "bob@example.com").await;
    group(&server.database_url, "add", "ada", "admins");
    // A proxy follows no redirect: it hands them to the browser.
    let nobody = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Nobody logged in: nginx gets 401 with the login page and `rd` in Location.
    let answer = nginx(
        &nobody,
        &server,
        "http://wiki.apps.localhost/page?x=1",
        "GET",
    )
    .await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let location = header(&answer, "location").expect("Location");
    assert_eq!(
        location,
        server
            .url("/login?rd=http%3A%2F%2Fwiki.apps.localhost%2Fpage%3Fx%3D1")
            .replace("127.0.0.1", "localhost"),
    );

    // Logged in: 200 with who it is.
    let answer = nginx(&ada, &server, "http://wiki.apps.localhost/page", "POST").await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(header(&answer, "remote-user").as_deref(), Some("ada"));
    assert_eq!(header(&answer, "remote-name").as_deref(), Some("ada"));
    assert_eq!(
        header(&answer, "remote-email").as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(header(&answer, "remote-groups").as_deref(), Some("admins"));

    // A bypass needs nobody; a group rule lets ada in and keeps bob out; a host no rule
    // names is refused; two_factor without a second factor says how to set one up.
    for (who, client, url, status) in [
        (
            "nobody",
            &nobody,
            "http://public.localhost/",
            StatusCode::OK,
        ),
        ("ada", &ada, "http://admin.localhost/", StatusCode::OK),
        (
            "bob",
            &bob,
            "http://admin.localhost/",
            StatusCode::FORBIDDEN,
        ),
        (
            "nobody",
            &nobody,
            "http://admin.localhost/",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "ada",
            &ada,
            "http://elsewhere.localhost/",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let answer = nginx(client, &server, url, "GET").await;
        assert_eq!(answer.status(), status, "{who} at {url}");
    }
    let vault = nginx(&bob, &server, "http://vault.localhost/", "GET").await;
    assert_eq!(vault.status(), StatusCode::FORBIDDEN);
    let said: Value = vault.json().await.expect("json");
    assert!(
        said["error"]
            .as_str()
            .is_some_and(|e| e.contains("two-step")),
        "{said}"
    );
    // A browser (Caddy and Traefik show latchkey's 403) gets a page linking to the
    // account page, on the login host.
    let page = forward(&bob, &server, ("GET", "vault.localhost", "/"), "text/html").await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(header(&page, "content-type").is_some_and(|kind| kind.starts_with("text/html")));
    let html = page.text().await.expect("html");
    assert!(
        html.contains("two-step login") && html.contains("&#x2f;account\">Your account page</a>"),
        "{html}"
    );
    // A path that decodes into another is refused, whoever asks.
    assert_eq!(
        nginx(
            &ada,
            &server,
            "http://wiki.apps.localhost/a%2f..%2fb",
            "GET"
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );

    // Caddy: a browser's GET goes to the login page (302); other methods and clients
    // that do not take HTML get 401.
    let page = forward(
        &nobody,
        &server,
        ("GET", "wiki.apps.localhost", "/x"),
        "text/html",
    )
    .await;
    assert_eq!(page.status(), StatusCode::FOUND);
    assert!(header(&page, "location")
        .is_some_and(|l| l.contains("/login?rd=http%3A%2F%2Fwiki.apps.localhost%2Fx")));
    let post_answer = forward(
        &nobody,
        &server,
        ("POST", "wiki.apps.localhost", "/x"),
        "text/html",
    )
    .await;
    assert_eq!(post_answer.status(), StatusCode::UNAUTHORIZED);
    let api = forward(
        &nobody,
        &server,
        ("GET", "wiki.apps.localhost", "/x"),
        "application/json",
    )
    .await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let allowed = forward(
        &bob,
        &server,
        ("GET", "wiki.apps.localhost:8443", "/x"),
        "text/html",
    )
    .await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(header(&allowed, "remote-user").as_deref(), Some("bob"));
    assert_eq!(header(&allowed, "remote-groups").as_deref(), Some(""));

    // A group change counts at the next request.
    group(&server.database_url, "remove", "ada", "admins");
    assert_eq!(
        nginx(&ada, &server, "http://admin.localhost/", "GET")
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    group(&server.database_url, "add", "bob", "admins");
    assert_eq!(
        nginx(&bob, &server, "http://admin.localhost/", "GET")
            .await
            .status(),
        StatusCode::OK
    );
    // The account shows its groups; so does the user list.
    let (status, account) =
        common::flows::call(&bob, &server, reqwest::Method::GET, "/account", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["groups"], json!(["admins"]));
    let (ok, listed, _) = cli(
        &["user", "list", "--database-url", &server.database_url],
        "",
    );
    assert!(
        ok && listed
            .lines()
            .any(|line| line.contains("bob") && line.ends_with("admins")),
        "{listed}"
    );
}

#[tokio::test]
async fn only_trusted_proxies_may_ask_and_bearer_tokens_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, RULES).expect("rules");
    let file_arg = file.display().to_string();
    // The proxy it trusts is elsewhere: this test's requests come from no proxy.
    let server = Server::start(
        dir.path(),
        &[
            "--access-rules",
            file_arg.as_str(),
            "--trusted-proxy",
            "192.0.2.7",
        ],
    );
    let answer = nginx(&bare_client(), &server, "http://public.localhost/", "GET").await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    drop(server);

    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = server_with(dir.path(), RULES, &[]);
    let browser = browser_of(&server, "script", "script@example.com").await;
    let (status, made) = post(
        &browser,
        &server,
        "/account/tokens",
        json!({ "name": "deploy", "scopes": ["read"] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().expect("token");
    let answer = bare_client()
        .get(server.url("/auth/nginx"))
        .header("x-original-url", "http://api.apps.localhost/v1/items")
        .header("x-original-method", "GET")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("auth_request");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(header(&answer, "remote-user").as_deref(), Some("script"));

    // A read token may read the app, not write to it: its scopes are held against the
    // app's method, not the proxy's GET. Where nobody needs a login, it passes as nobody.
    let with_token = |method: &'static str, url: &'static str| {
        let (server, token) = (&server, token.to_string());
        async move {
            bare_client()
                .get(server.url("/auth/nginx"))
                .header("x-original-url", url)
                .header("x-original-method", method)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .expect("auth_request")
        }
    };
    for method in ["DELETE", "POST", "put"] {
        let answer = with_token(method, "http://api.apps.localhost/v1/items/1").await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{method}");
        assert_eq!(header(&answer, "remote-user"), None, "{method}");
    }
    let answer = with_token("HEAD", "http://api.apps.localhost/v1/items/1").await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = with_token("DELETE", "http://public.localhost/x").await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(header(&answer, "remote-user"), None, "through as nobody");
}

#[tokio::test]
async fn hosts_and_paths_a_proxy_could_read_otherwise_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = server_with(dir.path(), RULES, &[]);
    let nobody = bare_client();
    // Each would be the admin app to a proxy that routes on the text before the colon,
    // and a bypass or wildcard host to a URL parser; or holds a raw `#` or backslash,
    // which nginx passes on to the app whole and a URL parser would cut or turn into `/`.
    for url in [
        "http://admin.localhost:x@public.localhost/",
        "http://admin.localhost@public.localhost/",
        "http://public.localhost/x#/../admin",
        "http://public.localhost/a\\..\\admin",
    ] {
        let answer = nginx(&nobody, &server, url, "GET").await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{url}");
    }
    for host in [
        "admin.localhost:.apps.localhost",
        "admin.localhost:x@public.localhost",
        "public.localhost:80:80",
        "public.localhost:99999",
        "public.localhost:",
        "public.localhost.",
        "public..localhost",
        "public.localhost/x",
        "public.local_host",
        "[::1]",
        "",
    ] {
        let answer = forward(&nobody, &server, ("GET", host, "/"), "text/html").await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{host:?}");
    }
    // The plain host, with or without a port, upper case or not: the bypass.
    for host in ["public.localhost", "PUBLIC.localhost:8443"] {
        let answer = forward(&nobody, &server, ("GET", host, "/"), "text/html").await;
        assert_eq!(answer.status(), StatusCode::OK, "{host:?}");
    }
    // Paths apps read in more than one way are refused even where nobody needs a login;
    // a raw `#` anywhere too; a query may hold `;` and `//`.
    for (uri, status) in [
        ("//admin/x", StatusCode::FORBIDDEN),
        ("/a;x/b", StatusCode::FORBIDDEN),
        ("/a%3bx/b", StatusCode::FORBIDDEN),
        ("/public#/../admin", StatusCode::FORBIDDEN),
        ("/a%2fb", StatusCode::FORBIDDEN),
        ("/a/b?x=;//#", StatusCode::FORBIDDEN),
        ("/a/b?x=;//", StatusCode::OK),
    ] {
        let answer = forward(
            &nobody,
            &server,
            ("GET", "public.localhost", uri),
            "text/html",
        )
        .await;
        assert_eq!(answer.status(), status, "{uri}");
    }
}

#[tokio::test]
async fn after_the_login_rd_goes_back_only_to_a_host_the_rules_protect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = server_with(dir.path(), RULES, &[]);
    let signup = client();
    let (status, _) = post(
        &signup,
        &server,
        "/signup",
        json!({ "username": "rd", "email": "rd@example.com", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for (rd, lands) in [
        (
            "http://wiki.apps.localhost/page?x=1",
            "http://wiki.apps.localhost/page?x=1",
        ),
        ("https://wiki.apps.localhost/", "/home"),
        ("http://evil.example/", "/home"),
        ("http://wiki.apps.localhost@evil.example/", "/home"),
        ("http://apps.localhost.evil.example/", "/home"),
        ("http://admin.localhost%2f@evil.example/", "/home"),
        ("//wiki.apps.localhost/", "/home"),
    ] {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let encoded: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let page = browser
            .get(server.url(&format!("/login?rd={encoded}")))
            .send()
            .await
            .expect("login page");
        // The page's form may lead to the app (browsers hold the redirect after a form
        // to the page's form-action), and to nowhere else.
        let policy = header(&page, "content-security-policy").unwrap_or_default();
        let leads_to = if lands.starts_with("http") {
            "form-action 'self' http://wiki.apps.localhost;"
        } else {
            "form-action 'self';"
        };
        assert!(policy.contains(leads_to), "{rd}: {policy}");
        let page = page.text().await.expect("html");
        let csrf = common::pages::csrf_token(&page);
        let action = common::pages::form_action(&page, "/login");
        let answer = browser
            .post(server.url(&action))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("username", "rd"),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .expect("login");
        assert!(
            answer.status().is_redirection(),
            "{rd}: {}",
            answer.status()
        );
        assert_eq!(header(&answer, "location").as_deref(), Some(lands), "{rd}");
    }
}

#[tokio::test]
async fn the_rules_are_read_again_on_sighup_and_a_bad_file_keeps_the_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, file) = server_with(dir.path(), RULES, &[]);
    let nobody = bare_client();
    let public = || nginx(&nobody, &server, "http://public.localhost/", "GET");
    assert_eq!(public().await.status(), StatusCode::OK);

    std::fs::write(
        &file,
        "[[rule]]\nhost = \"public.localhost\"\npolicy = \"deny\"\n",
    )
    .expect("write");
    server.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while public().await.status() != StatusCode::FORBIDDEN {
        assert!(
            std::time::Instant::now() < deadline,
            "the new rules were not read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    std::fs::write(
        &file,
        "[[rule]]\nhost = \"public.localhost\"\npolicy = \"maybe\"\n",
    )
    .expect("write");
    server.signal("HUP");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        public().await.status(),
        StatusCode::FORBIDDEN,
        "the old rules stay"
    );
}

#[test]
fn a_bad_rules_file_stops_the_start_with_its_line_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        "[[rule]]\nhost = \"a.localhost\"\n\npolicy = \"sometimes\"\n",
    )
    .expect("rules");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &common::database_url(dir.path()),
            "--access-rules",
            &file.display().to_string(),
        ])
        .output()
        .expect("run latchkey");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("line 4") && said.contains("sometimes"),
        "{said}"
    );
}

#[tokio::test]
async fn a_cookie_domain_sends_the_session_to_every_host_under_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &[
            "--public-url",
            "https://login.apps.localhost",
            "--cookie-domain",
            "apps.localhost",
        ],
    );
    let client = bare_client();
    let credentials = json!({ "username": "sso", "password": PASSWORD });
    let signup = client
        .post(server.url("/signup"))
        .header("origin", "https://login.apps.localhost")
        .json(&credentials)
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), StatusCode::CREATED);
    let login = client
        .post(server.url("/login"))
        .header("origin", "https://login.apps.localhost")
        .json(&credentials)
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = common::session_cookie(&login, "__Secure-id").expect("__Secure-id, not __Host-id");
    for attribute in ["Domain=apps.localhost", "Secure", "HttpOnly", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    // The logout expires it for the whole domain too.
    let token = common::cookie_value(&cookie);
    let logout = client
        .post(server.url("/logout"))
        .header("origin", "https://login.apps.localhost")
        .header("cookie", format!("__Secure-id={token}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    let removal = common::session_cookie(&logout, "__Secure-id").expect("removal");
    assert!(
        removal.contains("Domain=apps.localhost") && removal.contains("Max-Age=0"),
        "{removal}"
    );
}

#[test]
fn a_cookie_domain_that_does_not_hold_the_login_host_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (domain, public_url) in [
        ("example.com", "https://login.apps.localhost"),
        ("localhost", "https://login.apps.localhost"),
        ("ps.localhost", "https://login.apps.localhost"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--database-url",
                &common::database_url(dir.path()),
                "--public-url",
                public_url,
                "--cookie-domain",
                domain,
            ])
            .output()
            .expect("run latchkey");
        assert!(!output.status.success(), "{domain}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains("--cookie-domain"), "{domain}: {said}");
    }
}

#[tokio::test]
async fn a_two_factor_rule_asks_a_session_without_it_for_the_second_step_then_the_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = server_with(dir.path(), RULES, &[]);
    // Logged in with a password before the authenticator app was set up: a login
    // without the second factor the vault asks.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let credentials =
        json!({ "username": "vic", "email": "vic@example.com", "password": PASSWORD });
    let (status, body) = post(&browser, &server, "/signup", credentials).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let app = enable_totp(&browser, &server, "vic").await;
    let vault = "http://vault.localhost/secrets?x=1";
    let to_second_step = format!(
        "/login/second-factor?rd={}",
        url::form_urlencoded::byte_serialize(vault.as_bytes()).collect::<String>()
    );
    let second_step = server.url(&to_second_step);
    let sends_to_second_step = |answer: &reqwest::Response| {
        header(answer, "location").is_some_and(|to| to.ends_with(&to_second_step))
    };
    let answer = nginx(&browser, &server, vault, "GET").await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(sends_to_second_step(&answer), "{answer:?}");
    let answer = forward(
        &browser,
        &server,
        ("GET", "vault.localhost", "/secrets?x=1"),
        "text/html",
    )
    .await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    assert!(sends_to_second_step(&answer), "{answer:?}");
    let answer = forward(
        &browser,
        &server,
        ("POST", "vault.localhost", "/secrets"),
        "application/json",
    )
    .await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    // The second step's page, for the logged-in session: a wrong code, then the right
    // one, and back to the vault.
    let page = browser
        .get(&second_step)
        .header("accept", "text/html")
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.expect("html");
    assert!(page.contains("not with it"), "{page}");
    let csrf = common::pages::csrf_token(&page);
    let action = common::pages::form_action(&page, "/login/second-factor");
    let submit = |code: String| {
        let (browser, server, action, csrf) = (&browser, &server, &action, &csrf);
        async move {
            browser
                .post(server.url(action))
                .form(&[("csrf_token", csrf.as_str()), ("code", code.as_str())])
                .send()
                .await
                .expect("second step")
        }
    };
    let wrong = submit("000000".to_string()).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        nginx(&browser, &server, vault, "GET").await.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong code steps nothing up"
    );
    let right = submit(app.code_at(now_secs() + 30)).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&right, "location").as_deref(), Some(vault));
    let answer = nginx(&browser, &server, vault, "GET").await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(header(&answer, "remote-user").as_deref(), Some("vic"));

    // Past it, the page sends the browser straight on; nobody logged in goes to the
    // login page, and comes back through it.
    let again = browser.get(&second_step).send().await.expect("page");
    assert_eq!(header(&again, "location").as_deref(), Some(vault));
    let nobody = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let nobody = nobody.get(&second_step).send().await.expect("page");
    assert!(
        header(&nobody, "location").is_some_and(|to| to.starts_with("/login?next=http")),
        "{:?}",
        header(&nobody, "location")
    );

    // A personal token never passes a two_factor rule, nor steps up.
    let (ok, token, stderr) = cli(
        &[
            "token",
            "create",
            "vic",
            "--name",
            "ci",
            "--database-url",
            &common::database_url(dir.path()),
        ],
        "",
    );
    assert!(ok, "{stderr}");
    let answer = bare_client()
        .get(server.url("/auth/nginx"))
        .header("x-original-url", vault)
        .header("authorization", format!("Bearer {}", token.trim()))
        .send()
        .await
        .expect("auth_request");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let step_up = bare_client()
        .post(server.url("/login/second-factor"))
        .header("authorization", format!("Bearer {}", token.trim()))
        .json(&json!({ "code": app.code_at(now_secs() + 60) }))
        .send()
        .await
        .expect("second step");
    assert_eq!(
        step_up.status(),
        StatusCode::UNAUTHORIZED,
        "a token steps nothing up"
    );
}

#[tokio::test]
async fn the_answers_read_the_session_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = server_with(dir.path(), RULES, &[]);
    let ada = browser_of(&server, "quiet", "quiet@example.com").await;
    let sessions = || {
        let connection =
            rusqlite::Connection::open(dir.path().join("latchkey.db")).expect("the database");
        let mut statement = connection
            .prepare("SELECT id, version, expires_at, record FROM sessions ORDER BY id")
            .expect("query");
        let rows: Vec<(String, i64, i64, String)> = statement
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        rows
    };
    let before = sessions();
    assert!(!before.is_empty(), "ada's session is stored");
    let nobody = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for round in 0..20 {
        for (client, url) in [
            (&ada, "http://wiki.apps.localhost/"),
            (&ada, "http://admin.localhost/"),
            (&nobody, "http://wiki.apps.localhost/"),
            (&nobody, "http://public.localhost/"),
        ] {
            let answer = nginx(client, &server, url, "GET").await;
            assert!(
                answer.headers().get("set-cookie").is_none(),
                "round {round}, {url}: {:?}",
                answer.headers()
            );
        }
        let answer = forward(
            &nobody,
            &server,
            ("GET", "wiki.apps.localhost", "/"),
            "text/html",
        )
        .await;
        assert_eq!(answer.status(), StatusCode::FOUND);
        assert!(answer.headers().get("set-cookie").is_none());
    }
    assert_eq!(
        sessions(),
        before,
        "no session written, refreshed or created"
    );
}
