//! Port of the Flask + Flask-Login tutorial (seed 002): users with emails in SQLite
//! (grover / imbluedabadeedabadaa), a login form by email with "Stay logged in", `next`
//! followed only when it is a safe relative path, dummy `user_data` kept in the session,
//! a personalised index page, flash messages, and logout.
//!
//! `cargo run --example flask_login_tutorial`, then open http://127.0.0.1:8080/.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use latchkey::axum::Csrf;
use latchkey::csrf::CsrfKey;
use latchkey::flash::{flash, take_flashes, FlashLevel};
use latchkey::redirect::safe_next;
use latchkey::remember::SqliteRememberStore;
use latchkey::store::{open_sqlite, SqliteStore};
use latchkey::{
    AuthBackend, AuthLayer, AuthSession, Authenticator, HashParams, NewUser, PasswordBackend,
    PasswordCredentials, PasswordHasher, SessionConfig, SessionLayer, SqliteUserStore, User,
    UserStore,
};
use minijinja::{context, Environment};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const PAGES: &[(&str, &str)] = &[
    (
        "index.html",
        r#"{% for message in flashes %}<p class="flash">{{ message }}</p>{% endfor %}
{% if user_data %}<h1>Hello, {{ user_data.username }}!</h1>
<p>Role: {{ user_data.role }} · {{ user_data.num_issues }} issues · {{ user_data.num_messages }} messages</p>
<form method="post" action="/auth/logout"><input type="hidden" name="csrf_token" value="{{ csrf }}"><button>Sign out</button></form>
{% else %}<h1>Hello, stranger!</h1><p><a href="/auth/login">Sign in</a></p>{% endif %}"#,
    ),
    (
        "login.html",
        r#"{% for message in flashes %}<p class="flash">{{ message }}</p>{% endfor %}
<form method="post" action="/auth/login{% if next %}?next={{ next|urlencode }}{% endif %}">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<label>Email <input name="email" type="email"></label>
<label>Password <input name="password" type="password"></label>
<label><input type="checkbox" name="remember_me" value="y"> Stay logged in</label>
<button>Sign in</button></form>"#,
    ),
];

#[derive(Clone)]
struct App {
    /// The users and their passwords (the login manager loads users through it too).
    users: Arc<PasswordBackend<SqliteUserStore>>,
    pages: Arc<Environment<'static>>,
}

impl App {
    async fn render(
        &self,
        auth: &AuthSession<User>,
        csrf_guard: &Csrf,
        name: &str,
        values: minijinja::Value,
    ) -> Response {
        let session = auth.session();
        let (Ok(csrf), Ok(flashes)) = (csrf_guard.token().await, take_flashes(session).await)
        else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        let messages: Vec<String> = flashes.into_iter().map(|flash| flash.message).collect();
        let html = self
            .pages
            .get_template(name)
            .and_then(|page| page.render(context! { csrf, flashes => messages, ..values }));
        match html {
            Ok(html) => {
                let mut response = Html(html).into_response();
                csrf_guard.set_cookie(&mut response);
                response
            }
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

/// `main.index`: a greeting built from `session['user_data']`.
async fn index(State(app): State<App>, auth: AuthSession<User>, csrf: Csrf) -> Response {
    let logged_in = matches!(auth.current_user().await, Ok(Some(_)));
    let user_data = match logged_in {
        true => auth.session().get_value("user_data").await.ok().flatten(),
        false => None,
    };
    app.render(
        &auth,
        &csrf,
        "index.html",
        context! { user_data => minijinja::Value::from_serialize(&user_data) },
    )
    .await
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_form(
    State(app): State<App>,
    auth: AuthSession<User>,
    csrf: Csrf,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = query.next.as_deref().and_then(safe_next);
    app.render(&auth, &csrf, "login.html", context! { next })
        .await
}

#[derive(Deserialize)]
struct LoginForm {
    csrf_token: Option<String>,
    email: String,
    password: String,
    remember_me: Option<String>,
}

/// `auth.login`: look the user up by email, verify the password, `login_user(user,
/// form.remember_me.data)`, store the dummy user data, follow a safe `next`.
async fn login(
    State(app): State<App>,
    auth: AuthSession<User>,
    csrf: Csrf,
    Query(query): Query<NextQuery>,
    Form(form): Form<LoginForm>,
) -> Response {
    if !csrf
        .verify(form.csrf_token.as_deref())
        .await
        .unwrap_or(false)
    {
        return StatusCode::FORBIDDEN.into_response();
    }
    let credentials = PasswordCredentials::new(form.email, form.password);
    let user = match app.users.authenticate(credentials).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let _ = flash(
                auth.session(),
                FlashLevel::Error,
                "Invalid username or password",
            )
            .await;
            let next = query.next.as_deref().and_then(safe_next);
            return app
                .render(&auth, &csrf, "login.html", context! { next })
                .await;
        }
        Err(error) => return error.into_response(),
    };
    let logged_in = match form.remember_me {
        Some(_) => auth.login_remembered(&user, 30).await,
        None => auth.login(&user).await,
    };
    if let Err(error) = logged_in {
        return error.into_response();
    }
    let user_data =
        json!({ "username": user.username, "role": "admin", "num_issues": 12, "num_messages": 2 });
    if let Err(error) = auth.session().insert("user_data", user_data).await {
        return error.into_response();
    }
    Redirect::to(query.next.as_deref().and_then(safe_next).unwrap_or("/")).into_response()
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf_token: Option<String>,
}

/// `auth.logout`: `logout_user()`, flash, back to the index.
async fn logout(auth: AuthSession<User>, csrf: Csrf, Form(form): Form<LogoutForm>) -> Response {
    if !csrf
        .verify(form.csrf_token.as_deref())
        .await
        .unwrap_or(false)
    {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Err(error) = auth.logout().await {
        return error.into_response();
    }
    let _ = flash(
        auth.session(),
        FlashLevel::Info,
        "You have been signed out.",
    )
    .await;
    Redirect::to("/").into_response()
}

/// The app on an in-memory database holding grover.
pub async fn app() -> Result<Router, Box<dyn std::error::Error>> {
    let pool = open_sqlite("sqlite::memory:").await?;
    let users = Arc::new(PasswordBackend::new(
        SqliteUserStore::new(pool.clone()),
        PasswordHasher::new(HashParams::default())?,
    ));
    let hash = users.hasher().hash("imbluedabadeedabadaa").await?;
    users
        .users()
        .create(NewUser::new("grover", Some("grover@example.com"), hash)?)
        .await?;
    let mut pages = Environment::new();
    for (name, source) in PAGES {
        pages.add_template(name, source)?;
    }
    let login_manager = Authenticator::new(users.clone())
        .with_login_url("/auth/login")
        .with_remember_store(SqliteRememberStore::new(pool.clone()));
    Ok(Router::new()
        .route("/", get(index))
        .route("/auth/login", get(login_form).post(login))
        .route("/auth/logout", post(logout))
        .with_state(App {
            users,
            pages: Arc::new(pages),
        })
        // Forms' CSRF tokens: a key for this process (forms do not survive a restart).
        .layer(axum::Extension(CsrfKey::generate()))
        .layer(AuthLayer::new(login_manager))
        .layer(SessionLayer::new(
            SqliteStore::new(pool),
            SessionConfig::insecure_for_local_development(),
        )))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::var("LATCHKEY_BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("Serving on http://{bind}/ (grover@example.com / imbluedabadeedabadaa)");
    axum::serve(listener, app().await?).await?;
    Ok(())
}
