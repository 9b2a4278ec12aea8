//! Sign-in with another identity provider, over HTTP against the real binary and a real
//! OpenID provider (panva's `oidc-provider`, `tests/common/oidc.rs`): a new identity
//! makes an account and signs in again; linking by address only when both sides
//! verified it; connecting and disconnecting from the account, the last way in kept;
//! and the attacks: state swapped between browsers, no flow cookie, a code replayed,
//! one provider's answer sent to another's callback, the provider's refusal, a `next`
//! pointing away.

mod common;

use common::flows::{enable_totp, login_status, now_secs, post, sign_up, PASSWORD};
use common::oidc::{self, Provider};
use common::pages::csrf_token;
use common::{cli, database_url, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A server with the providers `names` (each its own real provider) configured.
struct Setup {
    providers: Vec<Provider>,
    server: Server,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start(names: &[&str]) -> Setup {
        Setup::start_with(names, tempfile::tempdir().expect("tempdir"), &[]).await
    }

    /// The server with `extra` arguments, in `dir`.
    async fn start_with(names: &[&str], dir: tempfile::TempDir, extra: &[&str]) -> Setup {
        let address = common::free_address();
        // The public URL is the address the test's browser uses, so the callback the
        // provider redirects to carries the browser's cookies.
        let base = format!("http://{address}");
        let mut providers = Vec::new();
        let mut args: Vec<String> = vec!["--public-url".into(), base.clone()];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let mut env: Vec<(String, String)> = Vec::new();
        for name in names {
            let provider = Provider::start();
            let redirect = format!("{base}/login/oidc/{name}/callback");
            let (id, secret) = provider.register_client(&redirect).await;
            args.push("--oidc-provider".into());
            args.push(format!("{name}={}", provider.issuer));
            let upper = name.to_ascii_uppercase();
            env.push((format!("LATCHKEY_OIDC_{upper}_CLIENT_ID"), id));
            env.push((format!("LATCHKEY_OIDC_{upper}_CLIENT_SECRET"), secret));
            providers.push(provider);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let server = Server::start_at_with_env(dir.path(), address, &args, &env);
        Setup {
            providers,
            server,
            dir,
        }
    }

    fn provider(&self) -> &Provider {
        &self.providers[0]
    }

    /// `GET /login/oidc/{name}{query}` in `browser`: the authorization URL it sends to.
    async fn begin(&self, browser: &reqwest::Client, name: &str, query: &str) -> String {
        let response = browser
            .get(self.server.url(&format!("/login/oidc/{name}{query}")))
            .send()
            .await
            .expect("start");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        location(&response)
    }

    /// A whole sign-in at the first provider as `sub` in `browser`: the callback's answer.
    async fn sign_in(&self, browser: &reqwest::Client, sub: &str) -> reqwest::Response {
        let authorize = self.begin(browser, "corp", "").await;
        let callback = self.provider().log_in(&authorize, sub).await;
        browser.get(&callback).send().await.expect("callback")
    }
}

/// From `browser`'s account page, connects the first provider as `sub`: the callback's
/// answer.
async fn connect(setup: &Setup, browser: &reqwest::Client, sub: &str) -> reqwest::Response {
    let account = browser
        .get(setup.server.url("/account"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("account")
        .text()
        .await
        .expect("html");
    assert!(account.contains("Connect corp"), "{account}");
    let connect = browser
        .post(setup.server.url("/account/identities/corp/connect"))
        .form(&[("csrf_token", csrf_token(&account))])
        .send()
        .await
        .expect("connect");
    assert_eq!(connect.status(), StatusCode::SEE_OTHER);
    let callback = setup.provider().log_in(&location(&connect), sub).await;
    browser.get(&callback).send().await.expect("callback")
}

/// The providers connected to `browser`'s account (`GET /account/identities`).
async fn identities(browser: &reqwest::Client, server: &Server) -> Value {
    browser
        .get(server.url("/account/identities"))
        .send()
        .await
        .expect("identities")
        .json::<Value>()
        .await
        .expect("json")["identities"]
        .clone()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .expect("a Location")
        .to_str()
        .expect("text")
        .to_string()
}

/// `GET /home` as JSON in `browser`: the status and the greeting.
async fn greeting(browser: &reqwest::Client, server: &Server) -> (StatusCode, Value) {
    let response = browser
        .get(server.url("/home"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("home");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The flash message the login page shows next.
async fn login_page_text(browser: &reqwest::Client, server: &Server) -> String {
    browser
        .get(server.url("/login"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("html")
}

/// The methods of the current session.
async fn methods(browser: &reqwest::Client, server: &Server) -> String {
    let sessions: Value = browser
        .get(server.url("/sessions"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("sessions")
        .json()
        .await
        .expect("json");
    sessions["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|session| session["current"] == json!(true))
        .and_then(|session| session["method"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_new_identity_makes_an_account_and_signs_in_again_for_one_token_request() {
    if !oidc::available() {
        return;
    }
    let setup = Setup::start(&["corp"]).await;
    let (server, provider) = (&setup.server, setup.provider());
    provider
        .set_account("alice-sub", Some("alice@example.com"), true, "alice")
        .await;
    // The login page offers the provider.
    let page = login_page_text(&oidc::browser(), server).await;
    assert!(page.contains("Sign in with corp"), "{page}");

    let browser = oidc::browser();
    let answer = setup.sign_in(&browser, "alice-sub").await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), "/home");
    let (status, body) = greeting(&browser, server).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "message": "Hello, alice" }));
    assert_eq!(methods(&browser, server).await, "provider:corp");

    // The account has the provider's verified address and no password.
    let account: Value = browser
        .get(server.url("/account"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("account")
        .json()
        .await
        .expect("json");
    assert_eq!(account["email"], "alice@example.com", "{account}");
    assert_eq!(account["email_verified"], true, "{account}");
    for password in ["", "x", PASSWORD] {
        assert_eq!(
            login_status(&oidc::browser(), server, "alice", password).await,
            if password.is_empty() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNAUTHORIZED
            }
        );
    }
    let (ok, listed, _) = cli(
        &[
            "user",
            "list",
            "--database-url",
            &database_url(setup.dir.path()),
        ],
        "",
    );
    assert!(ok);
    let row = listed
        .lines()
        .find(|line| line.contains("alice@example.com"))
        .expect("alice listed");
    // ID, USERNAME, EMAIL, STATUS, PROVIDERS, GROUPS.
    assert_eq!(row.split_whitespace().nth(4), Some("corp"), "{row}");

    // Again, in another browser: the same account, and discovery and the keys are
    // cached: the provider serves the token request and nothing else of the server's.
    provider.reset_requests().await;
    let again = oidc::browser();
    let answer = setup.sign_in(&again, "alice-sub").await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        greeting(&again, server).await.1,
        json!({ "message": "Hello, alice" })
    );
    let counts = provider.requests().await;
    assert_eq!(counts["token"], 1, "{counts}");
    assert_eq!(counts["discovery"], 0, "{counts}");
    assert_eq!(counts["jwks"], 0, "{counts}");
    assert_eq!(counts["userinfo"], 0, "{counts}");
}

#[tokio::test]
async fn an_address_links_only_when_both_sides_verified_it() {
    if !oidc::available() {
        return;
    }
    let setup = Setup::start(&["corp"]).await;
    let (server, provider) = (&setup.server, setup.provider());
    let url = database_url(setup.dir.path());
    // Bob's address is verified here and at the provider: linked.
    sign_up(server, "bob", "bob@example.com").await;
    let (ok, _, stderr) = cli(&["user", "verify", "bob", "--database-url", &url], "");
    assert!(ok, "{stderr}");
    provider
        .set_account("bob-sub", Some("bob@example.com"), true, "bobby")
        .await;
    let browser = oidc::browser();
    setup.sign_in(&browser, "bob-sub").await;
    assert_eq!(
        greeting(&browser, server).await.1,
        json!({ "message": "Hello, bob" })
    );

    // Carol never verified her address here (a squatter could have signed up with it):
    // no session, and the page says what to do.
    sign_up(server, "carol", "carol@example.com").await;
    provider
        .set_account("carol-sub", Some("carol@example.com"), true, "carol")
        .await;
    let browser = oidc::browser();
    let answer = setup.sign_in(&browser, "carol-sub").await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), "/login");
    assert_eq!(greeting(&browser, server).await.0, StatusCode::UNAUTHORIZED);
    let page = login_page_text(&browser, server).await;
    assert!(
        page.contains("An account already uses this address: sign in to it, then connect corp from your account page."),
        "{page}"
    );

    // Dave's is verified here, but the provider does not say it verified it: refused.
    sign_up(server, "dave", "dave@example.com").await;
    let (ok, _, stderr) = cli(&["user", "verify", "dave", "--database-url", &url], "");
    assert!(ok, "{stderr}");
    provider
        .set_account("dave-sub", Some("dave@example.com"), false, "dave")
        .await;
    let browser = oidc::browser();
    setup.sign_in(&browser, "dave-sub").await;
    assert_eq!(greeting(&browser, server).await.0, StatusCode::UNAUTHORIZED);

    // The identity is (issuer, subject): a later address change at the provider moves
    // nobody into Bob's account, and Bob's own identity keeps working.
    provider
        .set_account("eve-sub", Some("eve@example.com"), true, "eve")
        .await;
    let eve = oidc::browser();
    setup.sign_in(&eve, "eve-sub").await;
    assert_eq!(
        greeting(&eve, server).await.1,
        json!({ "message": "Hello, eve" })
    );
    provider
        .set_account("eve-sub", Some("bob@example.com"), true, "eve")
        .await;
    let eve = oidc::browser();
    setup.sign_in(&eve, "eve-sub").await;
    assert_eq!(
        greeting(&eve, server).await.1,
        json!({ "message": "Hello, eve" })
    );
    // A new identity whose address nobody here verified-owns gets a new account
    // without that address (the owner can still sign up with it).
    provider
        .set_account("frank-sub", Some("frank@example.com"), false, "frank")
        .await;
    let frank = oidc::browser();
    setup.sign_in(&frank, "frank-sub").await;
    assert_eq!(
        greeting(&frank, server).await.1,
        json!({ "message": "Hello, frank" })
    );
    let account: Value = frank
        .get(server.url("/account"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("account")
        .json()
        .await
        .expect("json");
    assert_eq!(account["email"], Value::Null, "{account}");
}

#[tokio::test]
async fn a_user_with_a_second_factor_gets_the_second_step() {
    if !oidc::available() {
        return;
    }
    let setup = Setup::start(&["corp"]).await;
    let (server, provider) = (&setup.server, setup.provider());
    let url = database_url(setup.dir.path());
    let browser = sign_up(server, "grace", "grace@example.com").await;
    let (ok, _, stderr) = cli(&["user", "verify", "grace", "--database-url", &url], "");
    assert!(ok, "{stderr}");
    let app = enable_totp(&browser, server, "grace").await;

    provider
        .set_account("grace-sub", Some("grace@example.com"), true, "grace")
        .await;
    let other = oidc::browser();
    let answer = setup.sign_in(&other, "grace-sub").await;
    assert_eq!(answer.status(), StatusCode::OK, "the second step's page");
    let page = answer.text().await.expect("html");
    assert!(page.contains("second-factor"), "{page}");
    assert_eq!(greeting(&other, server).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = post(
        &other,
        server,
        "/login/second-factor",
        json!({ "code": app.code_at(now_secs() + 30) }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        greeting(&other, server).await.1,
        json!({ "message": "Hello, grace" })
    );
    assert_eq!(methods(&other, server).await, "provider:corp+totp");
}

#[tokio::test]
async fn a_callback_that_is_not_this_browsers_flow_logs_nobody_in() {
    if !oidc::available() {
        return;
    }
    let setup = Setup::start(&["corp", "other"]).await;
    let (server, provider) = (&setup.server, setup.provider());
    provider
        .set_account("ivan-sub", Some("ivan@example.com"), true, "ivan")
        .await;

    // State swapped between two browsers: the victim's callback in the attacker's browser.
    let victim = oidc::browser();
    let attacker = oidc::browser();
    let authorize = setup.begin(&victim, "corp", "").await;
    setup.begin(&attacker, "corp", "").await;
    let callback = provider.log_in(&authorize, "ivan-sub").await;
    let answer = attacker.get(&callback).send().await.expect("callback");
    assert_eq!(location(&answer), "/login");
    assert_eq!(
        greeting(&attacker, server).await.0,
        StatusCode::UNAUTHORIZED
    );
    // No flow cookie at all.
    let stranger = oidc::browser();
    let answer = stranger.get(&callback).send().await.expect("callback");
    assert_eq!(location(&answer), "/login");
    assert_eq!(
        greeting(&stranger, server).await.0,
        StatusCode::UNAUTHORIZED
    );
    // One provider's answer at the other's callback (the mix-up attack), in the browser
    // whose flow it is.
    let mixed = callback.replace("/login/oidc/corp/callback", "/login/oidc/other/callback");
    let answer = victim.get(&mixed).send().await.expect("callback");
    assert_eq!(location(&answer), "/login");
    assert_eq!(greeting(&victim, server).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_code_is_used_once_and_the_flow_cookie_dies_with_it() {
    if !oidc::available() {
        return;
    }
    let setup = Setup::start(&["corp"]).await;
    let (server, provider) = (&setup.server, setup.provider());
    provider
        .set_account("judy-sub", Some("judy@example.com"), true, "judy")
        .await;
    let browser = oidc::browser();
    let start = browser
        .get(server.url("/login/oidc/corp"))
        .send()
        .await
        .expect("start");
    let flow = start
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("latchkey_oidc="))
        .expect("the flow cookie")
        .to_string();
    assert!(
        flow.contains("HttpOnly") && flow.contains("SameSite=Lax"),
        "{flow}"
    );
    assert!(flow.contains("Max-Age=600"), "{flow}");
    let flow_value = common::cookie_value(&flow);
    let callback = provider.log_in(&location(&start), "judy-sub").await;
    let answer = browser.get(&callback).send().await.expect("callback");
    assert_eq!(location(&answer), "/home");
    assert_eq!(greeting(&browser, server).await.0, StatusCode::OK);

    // The same callback with the same flow cookie, replayed from elsewhere: it passes
    // the flow's checks (the cookie is the real one) and reaches the provider, which
    // refuses the spent code; nobody is logged in.
    provider.reset_requests().await;
    let replay = oidc::browser();
    let answer = replay
        .get(&callback)
        .header("cookie", format!("latchkey_oidc={flow_value}"))
        .send()
        .await
        .expect("replay");
    assert_eq!(location(&answer), "/login");
    assert_eq!(greeting(&replay, server).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(provider.requests().await["token"], 1);
}

#[tokio::test]
async fn the_providers_refusal_and_a_next_pointing_away_go_nowhere_else() {
    if !oidc::available() {
        return;
    }
    let setup = Setup::start(&["corp"]).await;
    let (server, provider) = (&setup.server, setup.provider());
    provider
        .set_account("kim-sub", Some("kim@example.com"), true, "kim")
        .await;
    // The provider says no (the person declined): the login page says so.
    let browser = oidc::browser();
    let authorize = setup.begin(&browser, "corp", "").await;
    let state = reqwest::Url::parse(&authorize)
        .expect("URL")
        .query_pairs()
        .find(|(name, _)| name == "state")
        .map(|(_, value)| value.into_owned())
        .expect("state");
    let refused = format!(
        "{}?error=access_denied&state={state}&iss={}",
        server.url("/login/oidc/corp/callback"),
        provider.issuer
    );
    let answer = browser.get(&refused).send().await.expect("callback");
    assert_eq!(location(&answer), "/login");
    assert!(login_page_text(&browser, server)
        .await
        .contains("corp did not sign you in."));
    assert_eq!(greeting(&browser, server).await.0, StatusCode::UNAUTHORIZED);

    // `next` to another site: the sign-in lands on /home; a path here is kept.
    for (next, landing) in [
        ("https://evil.example/", "/home"),
        ("//evil.example/", "/home"),
        ("/account", "/account"),
    ] {
        let browser = oidc::browser();
        let query = format!("?next={}", urlencode(next));
        let authorize = setup.begin(&browser, "corp", &query).await;
        let callback = provider.log_in(&authorize, "kim-sub").await;
        let answer = browser.get(&callback).send().await.expect("callback");
        assert_eq!(location(&answer), landing, "{next}");
    }
}

#[tokio::test]
async fn a_provider_sign_in_goes_back_to_the_app_the_rules_protect() {
    if !oidc::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = common::guarding_one_app(dir.path());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let setup = Setup::start_with(&["corp"], dir, &extra).await;
    setup
        .provider()
        .set_account("lee-sub", Some("lee@example.com"), true, "lee")
        .await;
    let app = "http://wiki.apps.localhost/page?x=1";
    // The login page's provider link carries the app as `next`; the proxy's `rd` works
    // too; an app no rule protects, or another scheme, lands on /home.
    for (query, landing) in [
        (format!("?next={}", urlencode(app)), app),
        (format!("?rd={}", urlencode(app)), app),
        (
            format!("?rd={}", urlencode("http://evil.localhost/")),
            "/home",
        ),
        (
            format!("?rd={}", urlencode("https://wiki.apps.localhost/")),
            "/home",
        ),
    ] {
        let browser = oidc::browser();
        let authorize = setup.begin(&browser, "corp", &query).await;
        let callback = setup.provider().log_in(&authorize, "lee-sub").await;
        let answer = browser.get(&callback).send().await.expect("callback");
        assert_eq!(location(&answer), landing, "{query}");
    }
    // The login page links to the provider with the app to go back to (as a browser
    // reads the link).
    let browser = oidc::browser();
    let page = browser
        .get(setup.server.url(&format!("/login?rd={}", urlencode(app))))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("html")
        .replace("&#x2f;", "/");
    let link = "/login/oidc/corp?next=http%3A//wiki.apps.localhost/page%3Fx%3D1";
    assert!(page.contains(link), "{page}");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn connecting_and_disconnecting_keep_a_way_in() {
    if !oidc::available() {
        return;
    }
    let setup = Setup::start(&["corp"]).await;
    let (server, provider) = (&setup.server, setup.provider());
    // Leo has a password; he connects the provider from his account page, whatever
    // address the provider gives.
    let browser = oidc::browser();
    let (status, _) = post(
        &browser,
        server,
        "/signup",
        json!({ "username": "leo", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        login_status(&browser, server, "leo", PASSWORD).await,
        StatusCode::OK
    );
    provider
        .set_account("leo-sub", Some("someone@example.com"), false, "leo")
        .await;
    let answer = connect(&setup, &browser, "leo-sub").await;
    assert_eq!(location(&answer), "/account");
    let connected = identities(&browser, server).await;
    assert_eq!(connected[0]["provider"], "corp", "{connected}");
    assert_eq!(connected[0]["subject"], "leo-sub");
    // The provider now signs Leo in.
    let elsewhere = oidc::browser();
    setup.sign_in(&elsewhere, "leo-sub").await;
    assert_eq!(
        greeting(&elsewhere, server).await.1,
        json!({ "message": "Hello, leo" })
    );
    // Another account cannot take the same identity.
    let browser_two = oidc::browser();
    post(
        &browser_two,
        server,
        "/signup",
        json!({ "username": "mia", "password": PASSWORD }),
    )
    .await;
    login_status(&browser_two, server, "mia", PASSWORD).await;
    connect(&setup, &browser_two, "leo-sub").await;
    assert_eq!(identities(&browser_two, server).await, json!([]));

    // Leo disconnects (he keeps his password); the provider is then no way into Leo's
    // account (it makes a new one).
    let gone = browser
        .delete(server.url("/account/identities/corp"))
        .send()
        .await
        .expect("disconnect");
    assert_eq!(gone.status(), StatusCode::OK);
    let again = browser
        .delete(server.url("/account/identities/corp"))
        .send()
        .await
        .expect("disconnect");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // An account the provider made has no other way in: disconnecting is refused (409)
    // until it sets a password, which its fresh provider sign-in allows.
    provider
        .set_account("nina-sub", Some("nina@example.com"), true, "nina")
        .await;
    let nina = oidc::browser();
    setup.sign_in(&nina, "nina-sub").await;
    let refused = nina
        .delete(server.url("/account/identities/corp"))
        .send()
        .await
        .expect("disconnect");
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let (status, body) = post(
        &nina,
        server,
        "/password",
        json!({ "new": "a long new password for nina 42" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let gone = nina
        .delete(server.url("/account/identities/corp"))
        .send()
        .await
        .expect("disconnect");
    assert_eq!(gone.status(), StatusCode::OK);
    assert_eq!(
        login_status(
            &oidc::browser(),
            server,
            "nina",
            "a long new password for nina 42"
        )
        .await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn github_is_offered_and_its_sign_in_starts_at_github_with_state_and_pkce() {
    // GitHub itself is not reachable from the tests: this drives the real binary up to
    // the redirect to github.com, and the callback's own checks, which come before any
    // request to GitHub.
    let dir = tempfile::tempdir().expect("tempdir");
    let address = common::free_address();
    let base = format!("http://{address}");
    let server = Server::start_at_with_env(
        dir.path(),
        address,
        &["--public-url", &base, "--oidc-provider", "github"],
        &[
            ("LATCHKEY_OIDC_GITHUB_CLIENT_ID", "gh-client"),
            ("LATCHKEY_OIDC_GITHUB_CLIENT_SECRET", "gh-secret"),
            ("LATCHKEY_OIDC_GITHUB_LABEL", "GitHub"),
        ],
    );
    let browser = oidc::browser();
    assert!(login_page_text(&browser, &server)
        .await
        .contains("Sign in with GitHub"));
    let start = browser
        .get(server.url("/login/oidc/github?next=/account"))
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = reqwest::Url::parse(&location(&start)).expect("URL");
    assert_eq!(
        authorize.as_str().split('?').next(),
        Some("https://github.com/login/oauth/authorize")
    );
    let query: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], "gh-client");
    assert_eq!(query["scope"], "read:user user:email");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(
        query["redirect_uri"],
        format!("{base}/login/oidc/github/callback")
    );
    assert!(query["state"].len() >= 16, "{query:?}");
    // A callback with another state, or GitHub's refusal (each for a live flow of this
    // browser), logs nobody in and asks nothing of GitHub.
    for refusal in [false, true] {
        let start = browser
            .get(server.url("/login/oidc/github"))
            .send()
            .await
            .expect("start");
        let state = reqwest::Url::parse(&location(&start))
            .expect("URL")
            .query_pairs()
            .find(|(name, _)| name == "state")
            .map(|(_, value)| value.into_owned())
            .expect("state");
        let answer = if refusal {
            format!("error=access_denied&state={state}")
        } else {
            format!("code=x&state=not-{state}")
        };
        let callback = browser
            .get(server.url(&format!("/login/oidc/github/callback?{answer}")))
            .send()
            .await
            .expect("callback");
        assert_eq!(location(&callback), "/login", "{answer}");
        assert_eq!(
            greeting(&browser, &server).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}
