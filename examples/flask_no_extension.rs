//! Port of "User Login in Flask without Login Extensions" (seed 003): a SQLite user
//! database (`auth.db`), a sign-up form (salted password hashes, "Username X is not
//! available."), a login form, a user home page "Hello <Username>" that answers 401
//! to anyone but that user, and logout — with latchkey doing the session work.
//!
//! `cargo run --example flask_no_extension` (database `auth.db` in the working directory,
//! or `LATCHKEY_DATABASE_URL`), then open http://127.0.0.1:8080/signup/.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use latchkey::axum::{BrowserCsrf, RequireLogin};
use latchkey::csrf::CsrfKey;
use latchkey::flash::{flash, take_flashes, FlashLevel};
use latchkey::store::{open_sqlite, SqliteStore};
use latchkey::{
    AuthBackend, AuthLayer, AuthSession, Authenticator, HashParams, NewUser, PasswordBackend,
    PasswordCredentials, PasswordHasher, SessionConfig, SessionLayer, SqliteUserStore, User,
    UserStore, UserStoreError,
};
use minijinja::{context, Environment};
use serde::Deserialize;
use std::sync::Arc;

const PAGE: &str = r#"{% for message in flashes %}<p class="flash">{{ message }}</p>{% endfor %}
{% if form %}<h1>{{ title }}</h1>
<form method="post" action="{{ action }}">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
Username : <input name="username"><br>Password : <input name="password" type="password"><br>
<button>{{ title }}</button></form>
{% else %}<h2>Hello {{ username|title }}</h2>
<form method="post" action="/logout/"><input type="hidden" name="csrf_token" value="{{ csrf }}"><button>Logout</button></form>{% endif %}"#;

#[derive(Clone)]
struct App {
    /// The users and their passwords (the authenticator loads users through it too).
    users: Arc<PasswordBackend<SqliteUserStore>>,
    pages: Arc<Environment<'static>>,
    /// Forms' CSRF tokens (a key for this process: forms do not survive a restart).
    csrf: CsrfKey,
}

impl App {
    /// Renders the page with the session's flashes and CSRF token.
    async fn render(
        &self,
        auth: &AuthSession<User>,
        browser: &BrowserCsrf,
        status: StatusCode,
        values: minijinja::Value,
    ) -> Response {
        let session = auth.session();
        let (Ok(csrf), Ok(flashes)) = (
            self.csrf.form_token(session, browser.nonce()).await,
            take_flashes(session).await,
        ) else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        let messages: Vec<String> = flashes.into_iter().map(|flash| flash.message).collect();
        let html = self
            .pages
            .get_template("page.html")
            .and_then(|page| page.render(context! { csrf, flashes => messages, ..values }));
        match html {
            Ok(html) => {
                let mut response = (status, Html(html)).into_response();
                browser.set_cookie(&mut response);
                response
            }
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

#[derive(Deserialize)]
struct Credentials {
    csrf_token: Option<String>,
    username: String,
    password: String,
}

async fn note(auth: &AuthSession<User>, message: String) {
    let _ = flash(auth.session(), FlashLevel::Info, message).await;
}

/// Whether the form carried a CSRF token of this session or browser.
async fn csrf_ok(
    app: &App,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    token: Option<&str>,
) -> bool {
    app.csrf
        .verify(auth.session(), browser.sent(), token)
        .await
        .unwrap_or(false)
}

/// The trimmed username and password of a form that passed the CSRF check; a 403, or
/// the flashed `empty` message and a redirect to `back`, otherwise.
async fn checked<'f>(
    app: &App,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    form: &'f Credentials,
    empty: &str,
    back: &str,
) -> Result<(&'f str, &'f str), Response> {
    if !csrf_ok(app, auth, browser, form.csrf_token.as_deref()).await {
        return Err(StatusCode::FORBIDDEN.into_response());
    }
    let (username, password) = (form.username.trim(), form.password.trim());
    if username.is_empty() || password.is_empty() {
        note(auth, empty.to_string()).await;
        return Err(Redirect::to(back).into_response());
    }
    Ok((username, password))
}

async fn signup_form(
    State(app): State<App>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
) -> Response {
    app.render(
        &auth,
        &browser,
        StatusCode::OK,
        context! { form => true, title => "Sign up", action => "/signup/" },
    )
    .await
}

/// `signup()`: empty fields and taken names flash a message and redirect back.
async fn signup(
    State(app): State<App>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Form(form): Form<Credentials>,
) -> Response {
    let (username, password) = match checked(
        &app,
        &auth,
        &browser,
        &form,
        "Username or Password cannot be empty",
        "/signup/",
    )
    .await
    {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let Ok(hash) = app.users.hasher().hash(password).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let created = match NewUser::new(username, None, hash) {
        Ok(user) => app.users.users().create(user).await,
        Err(error) => Err(error),
    };
    match created {
        Ok(_) => {
            note(&auth, "User account has been created.".into()).await;
            Redirect::to("/login/").into_response()
        }
        Err(UserStoreError::UsernameTaken(name)) => {
            note(&auth, format!("Username {name} is not available.")).await;
            Redirect::to("/signup/").into_response()
        }
        Err(error) => {
            note(&auth, error.to_string()).await;
            Redirect::to("/signup/").into_response()
        }
    }
}

async fn login_form(
    State(app): State<App>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
) -> Response {
    app.render(
        &auth,
        &browser,
        StatusCode::OK,
        context! { form => true, title => "Login", action => "/login/" },
    )
    .await
}

/// `login()`: on success go to the user's home page.
async fn login(
    State(app): State<App>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Form(form): Form<Credentials>,
) -> Response {
    let (username, password) = match checked(
        &app,
        &auth,
        &browser,
        &form,
        "Username or Password cannot be empty.",
        "/login/",
    )
    .await
    {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    match app
        .users
        .authenticate(PasswordCredentials::new(username, password))
        .await
    {
        Ok(Some(user)) if auth.login(&user).await.is_ok() => {
            Redirect::to(&format!("/user/{}/", user.username)).into_response()
        }
        Ok(_) => {
            note(&auth, "Invalid username or password.".into()).await;
            app.render(
                &auth,
                &browser,
                StatusCode::UNAUTHORIZED,
                context! { form => true, title => "Login", action => "/login/" },
            )
            .await
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// `user_home(username)`: 401 unless this session belongs to `username`.
async fn user_home(
    State(app): State<App>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Path(username): Path<String>,
) -> Response {
    match auth.current_user().await {
        Ok(Some(user)) if user.username == username => {
            app.render(
                &auth,
                &browser,
                StatusCode::OK,
                context! { form => false, username },
            )
            .await
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// `logout()`: a POST here (logging out on GET would let any page log you out).
async fn logout(
    State(app): State<App>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireLogin(_): RequireLogin<User>,
    Form(form): Form<LogoutForm>,
) -> Response {
    if !csrf_ok(&app, &auth, &browser, form.csrf_token.as_deref()).await {
        return StatusCode::FORBIDDEN.into_response();
    }
    let _ = auth.logout().await;
    note(&auth, "successfully logged out.".into()).await;
    Redirect::to("/login/").into_response()
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf_token: Option<String>,
}

/// The app over the SQLite database at `database_url`.
pub async fn app(database_url: &str) -> Result<Router, Box<dyn std::error::Error>> {
    let pool = open_sqlite(database_url).await?;
    let mut pages = Environment::new();
    pages.add_template("page.html", PAGE)?;
    let app = App {
        users: Arc::new(PasswordBackend::new(
            SqliteUserStore::new(pool.clone()),
            PasswordHasher::new(HashParams::default())?,
        )),
        pages: Arc::new(pages),
        csrf: CsrfKey::generate(),
    };
    Ok(Router::new()
        .route("/signup/", get(signup_form).post(signup))
        .route("/login/", get(login_form).post(login))
        .route("/user/{username}/", get(user_home))
        .route("/logout/", post(logout))
        .layer(AuthLayer::new(Authenticator::new(app.users.clone())))
        .with_state(app)
        .layer(SessionLayer::new(
            SqliteStore::new(pool.clone()),
            SessionConfig::insecure_for_local_development(),
        )))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::var("LATCHKEY_BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let url = std::env::var("LATCHKEY_DATABASE_URL").unwrap_or_else(|_| "sqlite://auth.db".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("Serving on http://{bind}/signup/");
    axum::serve(listener, app(&url).await?).await?;
    Ok(())
}
