//! RequireLogin / RequireFresh / RequireSecondFactor and the router-wide layers, over HTTP: browsers are
//! redirected to the login page with `next`, API clients get 401 JSON.

use axum::routing::{get, post};
use axum::Router;
use latchkey::axum::{
    fresh_login_required, login_required, second_factor_required, RequireFresh, RequireLogin,
    RequireSecondFactor,
};
use latchkey::store::{open_sqlite, MemoryStore};
use latchkey::{
    AuthBackend, AuthLayer, AuthSession, Authenticator, HashParams, NewUser, PasswordBackend,
    PasswordHasher, Proof, SessionConfig, SessionLayer, SqliteUserStore, User, UserStore,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An in-memory user store holding grover.
async fn users_with_grover() -> (SqliteUserStore, User) {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = SqliteUserStore::new(pool);
    let grover = users
        .create(
            NewUser::new(
                "grover",
                None,
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            )
            .expect("user"),
        )
        .await
        .expect("create");
    (users, grover)
}

async fn serve(fresh_within: Option<Duration>) -> (SocketAddr, User) {
    let (users, grover) = users_with_grover().await;
    let mut authenticator = Authenticator::new(PasswordBackend::new(
        users,
        PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
    ));
    if let Some(window) = fresh_within {
        authenticator = authenticator.with_fresh_within(window);
    }
    let login_user = grover.clone();
    let remember_user = grover.clone();
    let private = Router::new()
        .route("/private/area", get(|| async { "private" }))
        .route_layer(login_required::<User>());
    let sensitive = Router::new()
        .route("/sensitive/area", get(|| async { "sensitive" }))
        .route_layer(fresh_login_required::<User>());
    let app = Router::new()
        .route(
            "/login/password",
            post(move |auth: AuthSession<User>| {
                let user = login_user.clone();
                async move {
                    auth.sign_in(&user, Proof::password(), None)
                        .await
                        .map(|_| "ok")
                }
            }),
        )
        .route(
            "/login/remembered",
            post(move |auth: AuthSession<User>| {
                let user = remember_user.clone();
                async move {
                    auth.sign_in(&user, Proof::remembered(), None)
                        .await
                        .map(|_| "ok")
                }
            }),
        )
        .route(
            "/home",
            get(|RequireLogin(user): RequireLogin<User>| async move { user.username }),
        )
        .route(
            "/fresh",
            get(|RequireFresh(user): RequireFresh<User>| async move { user.username }),
        )
        .merge(private)
        .merge(sensitive)
        .layer(AuthLayer::new(authenticator))
        .layer(SessionLayer::new(
            MemoryStore::new(),
            SessionConfig::insecure_for_local_development(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, grover)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn get_as_browser(
    client: &reqwest::Client,
    address: SocketAddr,
    path: &str,
) -> reqwest::Response {
    client
        .get(format!("http://{address}{path}"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("request")
}

async fn get_as_api(
    client: &reqwest::Client,
    address: SocketAddr,
    path: &str,
) -> (StatusCode, Value) {
    let response = client
        .get(format!("http://{address}{path}"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn location(response: &reqwest::Response) -> &str {
    response.headers()["location"].to_str().expect("ascii")
}

#[tokio::test]
async fn anonymous_browsers_are_sent_to_login_with_next_and_apis_get_401() {
    let (address, _) = serve(None).await;
    let browser = client();
    for path in ["/home?tab=2", "/private/area", "/fresh", "/sensitive/area"] {
        let response = get_as_browser(&browser, address, path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let expected: String = form_urlencoded_encode(path);
        assert_eq!(
            location(&response),
            format!("/login?next={expected}"),
            "{path}"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");

        let (status, body) = get_as_api(&browser, address, path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body, json!({ "error": "login required" }), "{path}");
    }
}

fn form_urlencoded_encode(text: &str) -> String {
    text.replace('/', "%2F")
        .replace('?', "%3F")
        .replace('=', "%3D")
}

#[tokio::test]
async fn password_logins_are_fresh_remembered_ones_are_not() {
    let (address, _) = serve(None).await;
    let browser = client();
    let response = browser
        .post(format!("http://{address}/login/password"))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    for path in ["/home", "/fresh", "/private/area", "/sensitive/area"] {
        let response = get_as_browser(&browser, address, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }

    let remembered = client();
    let response = remembered
        .post(format!("http://{address}/login/remembered"))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        get_as_browser(&remembered, address, "/home").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_as_browser(&remembered, address, "/private/area")
            .await
            .status(),
        StatusCode::OK
    );
    for path in ["/fresh", "/sensitive/area"] {
        let response = get_as_browser(&remembered, address, path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            location(&response),
            format!("/login?next={}", form_urlencoded_encode(path))
        );
        let (status, body) = get_as_api(&remembered, address, path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, json!({ "error": "fresh login required" }));
    }
    // Entering the password again makes the session fresh.
    remembered
        .post(format!("http://{address}/login/password"))
        .send()
        .await
        .expect("login");
    assert_eq!(
        get_as_browser(&remembered, address, "/fresh")
            .await
            .status(),
        StatusCode::OK
    );
}

/// A login by POST to `login` gives a session that `check` accepts for `window` and
/// refuses after it. Wall-clock time, so measured rather than assumed: a check answered
/// within `window` of sending the login was made inside the window, however slow the
/// machine (a slower round proves nothing and is tried again); a check sent once
/// `window` has passed since the login's answer is outside it, however fast.
async fn accepted_within_then_refused(
    address: SocketAddr,
    login: &str,
    check: &str,
    window: Duration,
) -> reqwest::Client {
    let mut rounds = 0;
    let (browser, answered) = loop {
        let browser = client();
        let sent = std::time::Instant::now();
        let response = browser
            .post(format!("http://{address}{login}"))
            .send()
            .await
            .expect("login");
        assert!(response.status().is_success(), "{}", response.status());
        let answered = std::time::Instant::now();
        let status = get_as_api(&browser, address, check).await.0;
        // Timestamps are whole milliseconds: a margin for rounding.
        if sent.elapsed() + Duration::from_millis(20) < window {
            assert_eq!(status, StatusCode::OK, "{check} within the window");
            break (browser, answered);
        }
        rounds += 1;
        assert!(
            rounds < 10,
            "no login and check fit in {window:?} in ten rounds: too slow to tell"
        );
    };
    tokio::time::sleep_until((answered + window + Duration::from_millis(20)).into()).await;
    assert_eq!(
        get_as_api(&browser, address, check).await.0,
        StatusCode::UNAUTHORIZED,
        "{check} once the window has passed"
    );
    browser
}

#[tokio::test]
async fn freshness_can_be_limited_in_time() {
    let window = Duration::from_millis(800);
    let (address, _) = serve(Some(window)).await;
    let browser = accepted_within_then_refused(address, "/login/password", "/fresh", window).await;
    assert_eq!(
        get_as_api(&browser, address, "/home").await.0,
        StatusCode::OK
    );
}

/// latchkey's password backend, counting the users it loads.
struct CountingBackend {
    inner: PasswordBackend<SqliteUserStore>,
    loads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl AuthBackend for CountingBackend {
    type User = User;
    type Credentials = latchkey::PasswordCredentials;

    async fn authenticate(
        &self,
        credentials: latchkey::PasswordCredentials,
    ) -> Result<Option<User>, latchkey::AuthError> {
        self.inner.authenticate(credentials).await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<User>, latchkey::UserStoreError> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get_user(user_id).await
    }
}

/// A handler that checks the login with a guard, then asks for the user twice more and
/// for freshness: the user loader runs once for the whole request (the user cache is
/// off, so every resolution would be a load).
#[tokio::test]
async fn the_user_is_resolved_once_per_request() {
    let (users, grover) = users_with_grover().await;
    let loads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let authenticator = Authenticator::new(CountingBackend {
        inner: PasswordBackend::new(
            users,
            PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
        ),
        loads: loads.clone(),
    })
    .with_user_cache(Duration::ZERO);
    let app = Router::new()
        .route(
            "/login",
            post(move |auth: AuthSession<User>| {
                let user = grover.clone();
                async move { auth.login(&user).await.map(|_| "ok") }
            }),
        )
        .route(
            "/whoami",
            get(
                |RequireFresh(user): RequireFresh<User>, auth: AuthSession<User>| async move {
                    let again = auth.current_user().await.ok().flatten();
                    let third = auth.current_user().await.ok().flatten();
                    assert_eq!(again.as_ref(), Some(&user));
                    assert_eq!(third.as_ref(), Some(&user));
                    user.username
                },
            ),
        )
        .layer(AuthLayer::new(authenticator))
        .layer(SessionLayer::new(
            MemoryStore::new(),
            SessionConfig::insecure_for_local_development(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = client();
    let login = client
        .post(format!("http://{address}/login"))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 0);
    for request in 1..=3 {
        let answer = client
            .get(format!("http://{address}/whoami"))
            .send()
            .await
            .expect("whoami");
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.text().await.expect("body"), "grover");
        assert_eq!(
            loads.load(std::sync::atomic::Ordering::SeqCst),
            request,
            "one load per request"
        );
    }
}

/// Grover has TOTP while the flag is up.
struct Enrolled(Arc<AtomicBool>);

#[async_trait::async_trait]
impl latchkey::SecondFactorSource for Enrolled {
    async fn second_factors(&self, _: &str) -> Result<Vec<String>, latchkey::AuthError> {
        Ok(if self.0.load(Ordering::SeqCst) {
            vec!["totp".into()]
        } else {
            Vec::new()
        })
    }
}

/// A server whose `/login/password` logs grover in with a password only and
/// `/login/two-factor` with a password and TOTP; `/factors` answers the login's factors,
/// `/second` needs a second factor (extractor), `/second/area` too (layer).
async fn serve_second_factor(within: Option<Duration>) -> SocketAddr {
    let (users, grover) = users_with_grover().await;
    let mut authenticator = Authenticator::new(PasswordBackend::new(
        users,
        PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
    ));
    if let Some(window) = within {
        authenticator = authenticator.with_second_factor_within(window);
    }
    let two_factor_enrolled = Arc::new(AtomicBool::new(false));
    authenticator = authenticator.with_second_factors(Enrolled(two_factor_enrolled.clone()));
    let (password_user, two_factor_user) = (grover.clone(), grover);
    let guarded = Router::new()
        .route("/second/area", get(|| async { "guarded" }))
        .route_layer(second_factor_required::<User>());
    let app = Router::new()
        .route(
            "/login/password",
            post(move |auth: AuthSession<User>| {
                let user = password_user.clone();
                async move { auth.login(&user).await.map(|_| "ok") }
            }),
        )
        .route(
            "/login/two-factor",
            post(move |auth: AuthSession<User>| {
                let user = two_factor_user.clone();
                let two_factor_enrolled = two_factor_enrolled.clone();
                async move {
                    // Grover has TOTP while this route logs in: the gate holds the
                    // password login, and a (checked) TOTP code completes it.
                    two_factor_enrolled.store(true, Ordering::SeqCst);
                    auth.login(&user).await?;
                    let completed = auth
                        .continue_sign_in(&user.id.to_string(), Proof::totp())
                        .await;
                    two_factor_enrolled.store(false, Ordering::SeqCst);
                    completed.map(|_| "ok")
                }
            }),
        )
        .route(
            "/factors",
            get(|auth: AuthSession<User>| async move {
                let info = auth.auth_info().await.ok().flatten();
                axum::Json(json!(info.map(|info| info.methods)))
            }),
        )
        .route(
            "/second",
            get(
                |RequireSecondFactor(user): RequireSecondFactor<User>| async move { user.username },
            ),
        )
        .merge(guarded)
        .layer(AuthLayer::new(authenticator))
        .layer(SessionLayer::new(
            MemoryStore::new(),
            SessionConfig::insecure_for_local_development(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test]
async fn a_second_factor_guard_lets_only_two_factor_logins_through_and_can_expire() {
    let address = serve_second_factor(None).await;
    let password_only = client();
    password_only
        .post(format!("http://{address}/login/password"))
        .send()
        .await
        .expect("login");
    assert_eq!(
        get_as_api(&password_only, address, "/factors").await.1,
        json!(["password"])
    );
    let (status, body) = get_as_api(&password_only, address, "/second").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "second factor required" })
        )
    );
    let page = get_as_browser(&password_only, address, "/second/area").await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&page).starts_with("/login?next="),
        "{}",
        location(&page)
    );

    let two_factor = client();
    two_factor
        .post(format!("http://{address}/login/two-factor"))
        .send()
        .await
        .expect("login");
    assert_eq!(
        get_as_api(&two_factor, address, "/factors").await.1,
        json!(["password", "totp"])
    );
    assert_eq!(
        get_as_api(&two_factor, address, "/second").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get_as_api(&two_factor, address, "/second/area").await.0,
        StatusCode::OK
    );

    // "Within N minutes": here 800 ms.
    let window = Duration::from_millis(800);
    let address = serve_second_factor(Some(window)).await;
    accepted_within_then_refused(address, "/login/two-factor", "/second", window).await;
}
