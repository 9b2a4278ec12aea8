//! Port of Microdot's login extension (seed 001): an application-defined user type and
//! `user_loader`, a login form whose "remember me" keeps the login for 30 days (or N
//! days), `@login` (RequireLogin), `@login.fresh` (RequireFresh, which sends a
//! remembered visitor back to the login page), and logout that redirects to `/`.
//!
//! `cargo run --example microdot_login`, then open http://127.0.0.1:8080/ and log in as
//! `susan` / `hunter2hunter2`.

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use latchkey::axum::Csrf;
use latchkey::axum::{RequireFresh, RequireLogin};
use latchkey::csrf::CsrfKey;
use latchkey::redirect::next_or_home;
use latchkey::remember::MemoryRememberStore;
use latchkey::store::MemoryStore;
use latchkey::{
    AuthBackend, AuthError, AuthLayer, AuthSession, AuthUser, Authenticator, HashParams,
    PasswordCredentials, PasswordHasher, SessionConfig, SessionLayer, UserStoreError,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The application's own user type: an `id` attribute, as Microdot asks.
#[derive(Clone)]
pub struct Member {
    id: u32,
    name: String,
    password_hash: String,
}

impl AuthUser for Member {
    fn user_id(&self) -> String {
        self.id.to_string()
    }
}

/// The application's own user table, as latchkey's auth backend: `user.check_password`
/// and `database.get_user(user_id)`.
#[derive(Clone)]
struct Database {
    members: Arc<HashMap<u32, Member>>,
    hasher: PasswordHasher,
}

#[async_trait::async_trait]
impl AuthBackend for Database {
    type User = Member;
    type Credentials = PasswordCredentials;

    async fn authenticate(
        &self,
        credentials: PasswordCredentials,
    ) -> Result<Option<Member>, AuthError> {
        let member = self
            .members
            .values()
            .find(|member| member.name == credentials.login)
            .cloned();
        let matches = match &member {
            Some(member) => {
                self.hasher
                    .verify(&credentials.password, &member.password_hash)
                    .await?
            }
            // An unknown name costs one verification too.
            None => {
                self.hasher.verify_dummy(&credentials.password).await?;
                false
            }
        };
        Ok(member.filter(|_| matches))
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<Member>, UserStoreError> {
        Ok(user_id
            .parse()
            .ok()
            .and_then(|id| self.members.get(&id).cloned()))
    }
}

#[derive(Clone)]
struct App {
    database: Database,
}

fn escape(text: &str) -> String {
    minijinja::HtmlEscape(text).to_string()
}

async fn login_form(csrf: Csrf, Query(query): Query<NextQuery>) -> Response {
    let token = match csrf.token().await {
        Ok(token) => token,
        Err(error) => return error.into_response(),
    };
    let next = escape(query.next.as_deref().unwrap_or("/"));
    let mut page = Html(format!(
        r#"<form method="post" action="/login?next={next}">
<input type="hidden" name="csrf_token" value="{token}">
<input name="username" placeholder="username"> <input name="password" type="password">
<label><input type="checkbox" name="remember_me" value="30"> remember me</label>
<button>log in</button></form>"#
    ))
    .into_response();
    csrf.set_cookie(&mut page);
    page
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    csrf_token: Option<String>,
    username: String,
    password: String,
    /// "30" (the checkbox) or any number of days; absent means no remember-me.
    remember_me: Option<u32>,
}

/// `login.login_user(request, user, remember=remember_me)` after `user.check_password`.
async fn login(
    State(app): State<App>,
    auth: AuthSession<Member>,
    csrf: Csrf,
    Query(query): Query<NextQuery>,
    Form(form): Form<LoginForm>,
) -> Response {
    if !csrf
        .verify(form.csrf_token.as_deref())
        .await
        .unwrap_or(false)
    {
        return (axum::http::StatusCode::FORBIDDEN, "bad form").into_response();
    }
    let credentials = PasswordCredentials::new(form.username, form.password);
    let Ok(Some(member)) = app.database.authenticate(credentials).await else {
        return Redirect::to("/login").into_response();
    };
    let logged_in = match form.remember_me {
        Some(days) => auth.login_remembered(&member, days).await,
        None => auth.login(&member).await,
    };
    match logged_in {
        Ok(_) => Redirect::to(next_or_home(query.next.as_deref())).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `@login`.
async fn index(RequireLogin(member): RequireLogin<Member>) -> Html<String> {
    Html(format!("<p>Hello, {}!</p>", escape(&member.name)))
}

/// `@login.fresh`.
async fn fresh(RequireFresh(member): RequireFresh<Member>) -> Html<String> {
    Html(format!("<p>Fresh login, {}.</p>", escape(&member.name)))
}

/// `login.logout_user(request)` then `redirect('/')`.
async fn logout(auth: AuthSession<Member>, RequireLogin(_): RequireLogin<Member>) -> Response {
    match auth.logout().await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(error) => error.into_response(),
    }
}

/// The app, with one member: susan / hunter2hunter2.
pub async fn app() -> Result<Router, Box<dyn std::error::Error>> {
    let hasher = PasswordHasher::new(HashParams::default())?;
    let susan = Member {
        id: 1,
        name: "susan".into(),
        password_hash: hasher.hash("hunter2hunter2").await?,
    };
    let database = Database {
        members: Arc::new(HashMap::from([(susan.id, susan)])),
        hasher,
    };
    // Login(app, login_url='/login') with a user_loader and remember-me tokens.
    let login_manager = Authenticator::new(database.clone())
        .with_login_url("/login")
        .with_remember_store(MemoryRememberStore::new());
    Ok(Router::new()
        .route("/", get(index))
        .route("/fresh", get(fresh))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .with_state(App { database })
        // Forms' CSRF tokens: a key for this process (forms do not survive a restart).
        .layer(axum::Extension(CsrfKey::generate()))
        .layer(AuthLayer::new(login_manager))
        .layer(SessionLayer::new(
            MemoryStore::new(),
            SessionConfig::insecure_for_local_development(),
        )))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::var("LATCHKEY_BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("Serving on http://{bind}/ (susan / hunter2hunter2)");
    axum::serve(listener, app().await?).await?;
    Ok(())
}
