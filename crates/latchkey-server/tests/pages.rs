//! The HTML pages over real HTTP against the `latchkey` binary: forms with CSRF tokens,
//! flash messages, safe `next`, remember-me, fresh login for /password, sessions page,
//! template overrides, and the cross-site check on JSON posts.

mod common;

use common::pages::csrf_token;
use common::Server;
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

/// A browser: cookie jar, no automatic redirects, asks for HTML.
struct Browser {
    client: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(server: &Server) -> Browser {
        Browser::with_jar(server, std::sync::Arc::new(reqwest::cookie::Jar::default()))
    }

    fn with_jar(server: &Server, jar: std::sync::Arc<reqwest::cookie::Jar>) -> Browser {
        Browser::with_jar_and_agent(server, jar, "latchkey-tests")
    }

    fn with_jar_and_agent(
        server: &Server,
        jar: std::sync::Arc<reqwest::cookie::Jar>,
        agent: &str,
    ) -> Browser {
        let client = reqwest::Client::builder()
            .cookie_provider(jar)
            .user_agent(agent)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(
                [(
                    reqwest::header::ACCEPT,
                    "text/html,application/xhtml+xml".parse().expect("header"),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .expect("client");
        Browser {
            client,
            base: server.url(""),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String, Option<String>) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("get");
        let status = response.status();
        let location = location(&response);
        (status, response.text().await.expect("body"), location)
    }

    /// GETs `page`, then posts `fields` plus the page's CSRF token to `action`.
    async fn submit(
        &self,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let (_, html, _) = self.get(page).await;
        let token = csrf_token(&html);
        let mut form: Vec<(&str, &str)> = vec![("csrf_token", token.as_str())];
        form.extend_from_slice(fields);
        self.post_form(action, &form).await
    }

    async fn post_form(
        &self,
        action: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let response = self
            .client
            .post(format!("{}{action}", self.base))
            .form(form)
            .send()
            .await
            .expect("post");
        let status = response.status();
        let location = location(&response);
        (status, response.text().await.expect("body"), location)
    }
}

fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .map(|value| value.to_str().expect("ascii").to_string())
}

async fn sign_up(browser: &Browser, name: &str) {
    let (status, _, location) = browser
        .submit(
            "/signup",
            "/signup",
            &[
                ("username", name),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/login"));
}

async fn log_in(browser: &Browser, name: &str, remember: bool, next: &str) -> Option<String> {
    let mut fields = vec![("username", name), ("password", PASSWORD)];
    if remember {
        fields.push(("remember", "on"));
    }
    let (status, _, location) = browser
        .submit("/login", &format!("/login{next}"), &fields)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    location
}

#[tokio::test]
async fn signup_login_home_logout_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = Browser::new(&server);

    let (status, html, _) = browser.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"href="/signup""#) && html.contains(r#"href="/login""#));

    sign_up(&browser, "bob").await;
    let (_, html, _) = browser.get("/login").await;
    assert!(
        html.contains("User account has been created."),
        "flash shown once"
    );
    let (_, html, _) = browser.get("/login").await;
    assert!(
        !html.contains("User account has been created."),
        "and only once"
    );

    // Taken names, mismatched confirmation: the form again with a message.
    let (status, html, _) = browser
        .submit(
            "/signup",
            "/signup",
            &[
                ("username", "BOB"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("Username BOB is not available."), "{html}");
    let (status, html, _) = browser
        .submit(
            "/signup",
            "/signup",
            &[
                ("username", "carl"),
                ("password", PASSWORD),
                ("confirm", "other"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("do not match"));

    // Wrong password: the form again.
    let (status, html, _) = browser
        .submit(
            "/login",
            "/login",
            &[("username", "bob"), ("password", "wrong password")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("Invalid username or password"));

    // Protected page: to the login page with next, and back there after logging in.
    let (status, _, wanted) = browser.get("/sessions").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(wanted.as_deref(), Some("/login?next=%2Fsessions"));
    assert_eq!(
        log_in(&browser, "bob", false, "?next=%2Fsessions")
            .await
            .as_deref(),
        Some("/sessions")
    );

    let (status, html, _) = browser.get("/home").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Hello, bob"));
    assert!(
        html.contains(r#"<form method="post" action="/logout">"#),
        "logout is a POST form"
    );
    let (status, _, _) = browser.get("/logout").await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "never a logout on GET"
    );

    let response = {
        let (_, html, _) = browser.get("/home").await;
        let token = csrf_token(&html);
        browser
            .client
            .post(format!("{}/logout", browser.base))
            .form(&[("csrf_token", token.as_str())])
            .send()
            .await
            .expect("logout")
    };
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).as_deref(), Some("/login"));
    assert_eq!(
        response.headers()["clear-site-data"],
        "\"cache\", \"storage\""
    );
    let (_, html, _) = browser.get("/login").await;
    assert!(html.contains("You have been signed out."));
    assert_eq!(browser.get("/home").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn unsafe_next_falls_back_to_home() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = Browser::new(&server);
    sign_up(&browser, "bob").await;
    for next in [
        "//evil.example",
        "https://evil.example/",
        "/%5Cevil.example",
        "javascript:alert(1)",
    ] {
        let encoded: String = next.bytes().map(|byte| format!("%{byte:02X}")).collect();
        let location = log_in(&browser, "bob", false, &format!("?next={encoded}")).await;
        assert_eq!(location.as_deref(), Some("/home"), "{next}");
    }
}

#[tokio::test]
async fn forms_without_the_csrf_token_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = Browser::new(&server);
    sign_up(&browser, "bob").await;

    for token in ["", "wrong", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let mut form = vec![("username", "bob"), ("password", PASSWORD)];
        if !token.is_empty() {
            form.push(("csrf_token", token));
        }
        let (status, _, _) = browser.post_form("/login", &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "login with token {token:?}");
        let (status, _, _) = browser
            .post_form(
                "/signup",
                &[
                    ("username", "eve"),
                    ("password", PASSWORD),
                    ("confirm", PASSWORD),
                    ("csrf_token", token),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_eq!(
        browser.get("/home").await.0,
        StatusCode::SEE_OTHER,
        "not logged in"
    );
    let (ok, stdout, _) = common::cli(
        &["user", "list", "--database-url", &server.database_url],
        "",
    );
    assert!(
        ok && !stdout.contains("eve"),
        "no user was created: {stdout}"
    );

    log_in(&browser, "bob", false, "").await;
    let (status, _, _) = browser
        .post_form("/logout", &[("csrf_token", "wrong")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        browser.get("/home").await.0,
        StatusCode::OK,
        "still logged in"
    );
}

#[tokio::test]
async fn json_posts_from_other_sites_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    let body = serde_json::json!({ "username": "mallory", "password": PASSWORD });
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "null"),
    ] {
        let response = client
            .post(server.url("/signup"))
            .header(name, value)
            .json(&body)
            .send()
            .await
            .expect("signup");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}: {value}");
    }
    let response = client
        .post(server.url("/signup"))
        .header("origin", format!("http://{}", server.address))
        .header("sec-fetch-site", "same-origin")
        .json(&body)
        .send()
        .await
        .expect("signup");
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn remembered_browsers_come_back_but_must_reenter_the_password_for_password_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = Browser::with_jar(&server, jar.clone());
    sign_up(&browser, "bob").await;
    log_in(&browser, "bob", true, "").await;
    let other = Browser::new(&server);
    log_in(&other, "bob", false, "").await;

    // "Restart" the browser: keep only the remember-me cookie.
    let url: reqwest::Url = server.url("/").parse().expect("url");
    let cookies = reqwest::cookie::CookieStore::cookies(&*jar, &url).expect("cookies");
    let remember = cookies
        .to_str()
        .expect("ascii")
        .split("; ")
        .find(|pair| pair.starts_with("remember="))
        .expect("remember cookie")
        .to_string();
    let restarted_jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    restarted_jar.add_cookie_str(&remember, &url);
    let restarted = Browser::with_jar(&server, restarted_jar);
    let (status, html, _) = restarted.get("/home").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Hello, bob") && html.contains("remembered on this device"));

    // Ending other sessions needs the password again too: nothing is revoked.
    let (status, _, location) = restarted
        .submit("/sessions", "/sessions/revoke-others", &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        location
            .as_deref()
            .is_some_and(|to| to.starts_with("/login?next=")),
        "{location:?}"
    );
    assert_eq!(
        other.get("/home").await.0,
        StatusCode::OK,
        "the other browser was logged out"
    );

    // Sensitive page: the password again.
    let (status, _, location) = restarted.get("/password").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/login?next=%2Fpassword"));
    assert_eq!(
        log_in(&restarted, "bob", false, "?next=%2Fpassword")
            .await
            .as_deref(),
        Some("/password")
    );

    // Wrong current password changes nothing; the right one changes it and ends the others.
    let new_password = "a brand new passphrase";
    let (status, html, _) = restarted
        .submit(
            "/password",
            "/password",
            &[
                ("current", "nope nope nope"),
                ("new", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("current password is wrong"));
    let (status, _, location) = restarted
        .submit(
            "/password",
            "/password",
            &[
                ("current", PASSWORD),
                ("new", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/home"));
    let (_, html, _) = restarted.get("/home").await;
    assert!(html.contains("Your password has been changed."));
    assert_eq!(
        other.get("/home").await.0,
        StatusCode::SEE_OTHER,
        "the other browser is logged out"
    );
    assert_eq!(
        browser.get("/home").await.0,
        StatusCode::SEE_OTHER,
        "the first browser too"
    );
}

#[tokio::test]
async fn sessions_page_lists_and_revokes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let me = Browser::new(&server);
    sign_up(&me, "bob").await;
    log_in(&me, "bob", false, "").await;
    let laptop = Browser::new(&server);
    log_in(&laptop, "bob", false, "").await;

    let (status, html, _) = me.get("/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        html.matches("<tr>").count(),
        3,
        "header + two sessions: {html}"
    );
    assert!(html.contains("this one"));
    let (status, _, location) = me.submit("/sessions", "/sessions/revoke-others", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/sessions"));
    assert_eq!(laptop.get("/home").await.0, StatusCode::SEE_OTHER);
    let (_, html, _) = me.get("/sessions").await;
    assert!(html.contains("1 other session(s) logged out."));
}

#[tokio::test]
async fn templates_can_be_overridden_from_a_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("dir");
    std::fs::write(templates.join("index.html"), "<p>Our own start page</p>").expect("write");
    let folder = templates.display().to_string();
    let server = Server::start(dir.path(), &["--templates", &folder]);
    let browser = Browser::new(&server);
    let (_, html, _) = browser.get("/").await;
    assert_eq!(html, "<p>Our own start page</p>");
    let (_, html, _) = browser.get("/login").await;
    assert!(
        html.contains("Stay logged in"),
        "other pages keep the embedded templates"
    );
}

#[tokio::test]
async fn password_managers_and_paste_are_welcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = Browser::new(&server);
    for (path, password_hint) in [("/login", "current-password"), ("/signup", "new-password")] {
        let (status, html, _) = browser.get(path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(r#"type="password""#), "{path}");
        assert!(
            html.contains(&format!(r#"autocomplete="{password_hint}""#)),
            "{path}"
        );
        assert!(html.contains(r#"autocomplete="username""#), "{path}");
        assert!(
            !html.contains("onpaste") && !html.contains(r#"autocomplete="off""#),
            "{path}"
        );
    }
}

/// ASVS 5.3.3: text a user chose is escaped wherever a page shows it, as element text
/// and inside attributes: the username (start page, home, account, the sign-up and login
/// forms given back with an error, the "not available" message), the email (account
/// page) and the browser's User-Agent (sessions page). The second-factor pages (code
/// entry, authenticator setup, recovery codes) show no text a user chose; passkey names
/// are checked in a browser (`browser.rs`), mail in `mail_flows.rs`.
#[tokio::test]
async fn what_a_user_chose_is_escaped_on_every_page_that_shows_it() {
    const NAME: &str = "\"><script>alert(1)</script>'&";
    const AGENT: &str = "\"><script>alert(2)</script>";
    const EMAIL: &str = "o'brien&co@example.com";
    /// Shown, and only escaped: no raw markup, and minijinja's escape of it.
    fn escaped(what: &str, html: &str, n: u8) {
        assert!(
            !html.contains("<script>alert"),
            "{what} renders markup a user typed: {html}"
        );
        assert!(
            html.contains(&format!(
                "&quot;&gt;&lt;script&gt;alert({n})&lt;&#x2f;script&gt;"
            )),
            "{what} does not show the escaped text: {html}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let browser = Browser::with_jar_and_agent(&server, Default::default(), AGENT);

    // The forms given back with an error keep what was typed.
    let (status, html, _) = browser
        .submit(
            "/signup",
            "/signup",
            &[
                ("username", NAME),
                ("email", EMAIL),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    escaped("the sign-up form", &html, 1);
    assert!(html.contains("o&#x27;brien&amp;co@example.com"), "{html}");
    let (status, _, _) = browser
        .submit(
            "/signup",
            "/signup",
            &[
                ("username", NAME),
                ("email", EMAIL),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, html, _) = browser
        .submit(
            "/signup",
            "/signup",
            &[
                ("username", NAME),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    escaped("\"not available\"", &html, 1);
    let (status, html, _) = browser
        .submit(
            "/login",
            "/login",
            &[("username", NAME), ("password", "wrong password")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    escaped("the login form", &html, 1);

    assert_eq!(
        log_in(&browser, NAME, false, "").await.as_deref(),
        Some("/home")
    );
    for path in ["/", "/home", "/account"] {
        let (status, html, _) = browser.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        escaped(path, &html, 1);
    }
    let (_, html, _) = browser.get("/account").await;
    assert!(
        html.contains("o&#x27;brien&amp;co@example.com") && !html.contains(EMAIL),
        "{html}"
    );
    let (status, html, _) = browser.get("/sessions").await;
    assert_eq!(status, StatusCode::OK);
    escaped("/sessions (User-Agent)", &html, 2);
}
