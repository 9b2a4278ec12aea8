//! HTML pages (sign-up, login, home, logout, sessions, password) on the same paths as
//! the JSON API: form posts and browsers get pages, JSON requests get JSON.

use crate::api::{self, ApiError, JsonBody};
use crate::app::AppState;
use crate::headers::clear_site_data;
use crate::session_cli::format_time;
use crate::throttling::{throttled_login, too_many_message, with_retry_after, Attempt, ClientIp};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use latchkey::axum::{wants_html, BrowserCsrf, RequireFresh, RequireLogin};
use latchkey::csrf::{request_origin, RequestOrigin};
use latchkey::flash::{flash, take_flashes, FlashLevel};
use latchkey::redirect::next_or_home;
use latchkey::{AuthError, AuthSession, SessionId, User};
use minijinja::{context, Environment, Value};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

/// The templates shipped in the binary.
const EMBEDDED: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("signup.html", include_str!("../templates/signup.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("sessions.html", include_str!("../templates/sessions.html")),
    ("password.html", include_str!("../templates/password.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// Jinja templates: the embedded ones, each overridable by a file of the same name in
/// the `--templates` folder.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl Templates {
    /// Templates from `folder` where present, embedded ones otherwise.
    pub fn new(folder: Option<PathBuf>) -> Self {
        let mut env = Environment::new();
        env.set_loader(move |name| {
            if let Some(folder) = &folder {
                let path = folder.join(name);
                if path.is_file() {
                    return std::fs::read_to_string(&path).map(Some).map_err(|error| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::TemplateNotFound,
                            format!("cannot read {}: {error}", path.display()),
                        )
                    });
                }
            }
            Ok(EMBEDDED
                .iter()
                .find(|(embedded, _)| *embedded == name)
                .map(|(_, source)| source.to_string()))
        });
        Templates { env: Arc::new(env) }
    }

    /// Renders `name` with `context` as an HTML response with `status`.
    pub fn render(&self, status: StatusCode, name: &str, context: Value) -> Response {
        let rendered = self
            .env
            .get_template(name)
            .and_then(|template| template.render(context));
        match rendered {
            Ok(html) => (status, Html(html)).into_response(),
            Err(error) => {
                tracing::error!(%error, template = name, "template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
            }
        }
    }
}

/// What every page needs: who is logged in, the CSRF token, pending flash messages.
/// Reads the session; writes nothing unless a flash message was waiting.
async fn base_context(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
) -> Result<Value, AuthError> {
    let user = auth.current_user().await?;
    let token = app.csrf.form_token(auth.session(), browser.nonce()).await?;
    let flashes = take_flashes(auth.session()).await?;
    Ok(context! {
        username => user.map(|user| user.username),
        csrf_token => token,
        flashes => flashes.iter().map(|flash| context! {
            level => serde_json::to_value(flash.level).ok().and_then(|level| level.as_str().map(str::to_string)),
            message => flash.message.clone(),
        }).collect::<Vec<_>>(),
    })
}

/// Renders a page with the base context merged with `extra`; gives the browser its CSRF
/// cookie if it has none yet.
async fn page(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    status: StatusCode,
    name: &str,
    extra: Value,
) -> Response {
    match base_context(app, auth, browser).await {
        Ok(base) => {
            let mut response = app
                .templates
                .render(status, name, context! { ..extra, ..base });
            browser.set_cookie(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// An error page (HTML).
fn error_page(app: &AppState, status: StatusCode, message: &str) -> Response {
    app.templates.render(
        status,
        "error.html",
        context! { status => status.as_u16(), message => message, flashes => Vec::<Value>::new() },
    )
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}

/// Refuses a JSON request sent by another site's page.
pub fn refuse_cross_site(app: &AppState, headers: &HeaderMap) -> Option<Response> {
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|value: &header::HeaderValue| value.to_str().ok())
    };
    let origin = request_origin(
        header_text("sec-fetch-site"),
        header_text(header::ORIGIN.as_str()),
        &app.public_origin,
    );
    (origin == RequestOrigin::CrossSite).then(|| {
        tracing::warn!(target: "latchkey::audit", event = "cross_site_refused", "cross_site_refused");
        ApiError::forbidden("cross-site request refused").into_response()
    })
}

/// Checks the form's CSRF token; the 403 page if it is missing or wrong.
async fn check_csrf(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    submitted: Option<&str>,
) -> Result<(), Response> {
    match app
        .csrf
        .verify(auth.session(), browser.sent(), submitted)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(target: "latchkey::audit", event = "csrf_refused", "csrf_refused");
            Err(error_page(
                app,
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this site. Go back, reload the page and try again.",
            ))
        }
        Err(error) => Err(error.into_response()),
    }
}

/// What a POST to a shared path carried.
enum Submission<F> {
    /// An HTML form whose CSRF token checked out.
    Form(F),
    /// Anything else, for the JSON API (already checked not to be cross-site).
    Api(Box<Request>),
}

/// A form field set that carries the CSRF token.
trait CsrfField {
    fn csrf_token(&self) -> Option<&str>;
}

/// Splits a POST into a CSRF-checked form or an API request from this site; the
/// rejection page or JSON error otherwise.
async fn read_submission<F: serde::de::DeserializeOwned + CsrfField>(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    request: Request,
) -> Result<Submission<F>, Response> {
    if !is_form(request.headers()) {
        if let Some(refusal) = refuse_cross_site(app, request.headers()) {
            return Err(refusal);
        }
        return Ok(Submission::Api(Box::new(request)));
    }
    let input: F = form(app, request).await?;
    check_csrf(app, auth, browser, input.csrf_token()).await?;
    Ok(Submission::Form(input))
}

async fn form<T: serde::de::DeserializeOwned>(
    app: &AppState,
    request: Request,
) -> Result<T, Response> {
    match Form::<T>::from_request(request, &()).await {
        Ok(Form(value)) => Ok(value),
        Err(rejection) => Err(error_page(
            app,
            StatusCode::BAD_REQUEST,
            &rejection.body_text(),
        )),
    }
}

async fn json<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, Response> {
    JsonBody::<T>::from_request(request, &())
        .await
        .map(|JsonBody(value)| value)
        .map_err(IntoResponse::into_response)
}

/// `GET /`.
pub async fn index(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
) -> Response {
    page(
        &app,
        &auth,
        &browser,
        StatusCode::OK,
        "index.html",
        context! {},
    )
    .await
}

/// `GET /signup`.
#[utoipa::path(get, path = "/signup", responses(
    (status = 200, description = "The sign-up page", content_type = "text/html", body = String),
))]
pub async fn signup_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
) -> Response {
    let extra = context! { min_password => app.policy.min_chars };
    page(&app, &auth, &browser, StatusCode::OK, "signup.html", extra).await
}

#[derive(Deserialize)]
pub struct SignupForm {
    csrf_token: Option<String>,
    username: Option<String>,
    email: Option<String>,
    password: Option<String>,
    confirm: Option<String>,
}

/// `POST /signup`: a form gets pages, JSON gets the API.
pub async fn signup(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    request: Request,
) -> Response {
    let input: SignupForm = match read_submission(&app, &auth, &browser, request).await {
        Ok(Submission::Form(input)) => input,
        Ok(Submission::Api(request)) => {
            return match json(*request).await {
                Ok(body) => api::signup(State(app), ip, JsonBody(body))
                    .await
                    .into_response(),
                Err(response) => response,
            }
        }
        Err(response) => return response,
    };
    let username = input.username.unwrap_or_default();
    let email = input.email.unwrap_or_default();
    let again = |status: StatusCode, error: String| {
        let extra = context! {
            error => error,
            form_username => username.clone(),
            form_email => email.clone(),
            min_password => app.policy.min_chars,
        };
        let (auth, browser) = (&auth, &browser);
        async move { page(&app, auth, browser, status, "signup.html", extra).await }
    };
    let password = input.password.unwrap_or_default();
    if username.trim().is_empty() || password.is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            "Username or Password cannot be empty".into(),
        )
        .await;
    }
    if input.confirm.as_deref() != Some(password.as_str()) {
        return again(
            StatusCode::BAD_REQUEST,
            "The two passwords do not match.".into(),
        )
        .await;
    }
    match api::create_user(&app, ip, &username, Some(email.as_str()), &password).await {
        Ok(_) => {
            if let Err(error) = flash(
                auth.session(),
                FlashLevel::Success,
                "User account has been created.",
            )
            .await
            {
                return error.into_response();
            }
            Redirect::to("/login").into_response()
        }
        Err(api::CreateError::Invalid(_, message)) => again(StatusCode::BAD_REQUEST, message).await,
        Err(api::CreateError::Taken(message)) => again(StatusCode::CONFLICT, message).await,
        Err(api::CreateError::Throttled(wait)) => with_retry_after(
            again(StatusCode::TOO_MANY_REQUESTS, too_many_message(wait)).await,
            wait,
        ),
        Err(api::CreateError::Failed(error)) => error.into_response(),
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
#[utoipa::path(get, path = "/login", responses(
    (status = 200, description = "The login page", content_type = "text/html", body = String),
))]
pub async fn login_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = query
        .next
        .as_deref()
        .and_then(latchkey::redirect::safe_next);
    page(
        &app,
        &auth,
        &browser,
        StatusCode::OK,
        "login.html",
        context! { next => next },
    )
    .await
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf_token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    remember: Option<String>,
}

/// `POST /login`: a form logs in and redirects to `next` (if safe) or `/home`; JSON
/// gets the API.
pub async fn login(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<NextQuery>,
    request: Request,
) -> Response {
    let input: LoginForm = match read_submission(&app, &auth, &browser, request).await {
        Ok(Submission::Form(input)) => input,
        Ok(Submission::Api(request)) => {
            return match json(*request).await {
                Ok(body) => api::login(State(app), ip, auth, JsonBody(body))
                    .await
                    .into_response(),
                Err(response) => response,
            }
        }
        Err(response) => return response,
    };
    let username = input.username.unwrap_or_default();
    let password = input.password.unwrap_or_default();
    let next = query
        .next
        .as_deref()
        .and_then(latchkey::redirect::safe_next);
    let fail = |status: StatusCode, error: &'static str| {
        let extra = context! { error => error, form_username => username.clone(), next => next };
        let (auth, browser) = (&auth, &browser);
        async move { page(&app, auth, browser, status, "login.html", extra).await }
    };
    if username.trim().is_empty() || password.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "Username or Password cannot be empty.",
        )
        .await;
    }
    let user = match throttled_login(&app, ip, &username, &password).await {
        Ok(Attempt::Checked(Some(user))) => user,
        Ok(Attempt::Checked(None)) => {
            return fail(StatusCode::UNAUTHORIZED, "Invalid username or password").await;
        }
        Ok(Attempt::Throttled(wait)) => {
            let message = too_many_message(wait);
            let extra =
                context! { error => message, form_username => username.clone(), next => next };
            let page = page(
                &app,
                &auth,
                &browser,
                StatusCode::TOO_MANY_REQUESTS,
                "login.html",
                extra,
            )
            .await;
            return with_retry_after(page, wait);
        }
        Err(error) => return error.into_response(),
    };
    let logged_in = if input.remember.is_some() {
        auth.login_remembered(&user, latchkey::remember::DEFAULT_REMEMBER_DAYS)
            .await
    } else {
        auth.login(&user).await
    };
    if let Err(error) = logged_in {
        return error.into_response();
    }
    Redirect::to(next_or_home(next)).into_response()
}

/// `GET|POST /home`: the greeting, as a page for browsers and JSON otherwise.
pub async fn home(visit: HomeVisit) -> Response {
    match visit {
        HomeVisit::Json(user) => api::home(RequireLogin(user)).await.into_response(),
        // Boxed: the page's future is large, and the JSON answer should not carry it.
        HomeVisit::Page(app, auth, browser) => Box::pin(home_page(app, auth, browser)).await,
    }
}

/// What `/home` needs, read by one extractor: the handler is then called with the
/// request's parts split once, and the JSON answer (the hot path) takes no handle on
/// the session or the server's state.
pub enum HomeVisit {
    /// A logged-in client that wants JSON: the user to greet.
    Json(User),
    /// A logged-in browser: what the page is made from.
    Page(AppState, AuthSession<User>, BrowserCsrf),
}

impl FromRequestParts<AppState> for HomeVisit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let RequireLogin(user) = RequireLogin::<User>::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        if !wants_html(&parts.headers) {
            return Ok(HomeVisit::Json(user));
        }
        let auth = AuthSession::<User>::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let browser = BrowserCsrf::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(HomeVisit::Page(*app, auth, browser))
    }
}

async fn home_page(app: AppState, auth: AuthSession<User>, browser: BrowserCsrf) -> Response {
    let fresh = auth.is_fresh().await.unwrap_or(false);
    page(
        &app,
        &auth,
        &browser,
        StatusCode::OK,
        "home.html",
        context! { fresh => fresh },
    )
    .await
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf_token: Option<String>,
}

impl CsrfField for CsrfForm {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

impl CsrfField for SignupForm {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

impl CsrfField for LoginForm {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// `POST /logout`: a form logs out and goes back to `/login`; JSON gets the API.
pub async fn logout(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    request: Request,
) -> Response {
    match read_submission::<CsrfForm>(&app, &auth, &browser, request).await {
        Ok(Submission::Form(_)) => {}
        Ok(Submission::Api(_)) => return clear_site_data(api::logout(auth).await.into_response()),
        Err(response) => return response,
    }
    let logged_out = auth.logout().await;
    if let Err(error) = logged_out {
        return error.into_response();
    }
    // The logout ended the session; the notice lives in a new, anonymous one.
    if let Err(error) = flash(
        auth.session(),
        FlashLevel::Info,
        "You have been signed out.",
    )
    .await
    {
        return error.into_response();
    }
    clear_site_data(Redirect::to("/login").into_response())
}

/// `GET /sessions`: the user's sessions with revoke buttons.
pub async fn sessions_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireLogin(_): RequireLogin<User>,
) -> Response {
    let sessions = match auth.sessions().await {
        Ok(sessions) => sessions,
        Err(error) => return error.into_response(),
    };
    let rows: Vec<Value> = sessions
        .iter()
        .map(|session| {
            context! {
                id => session.id.to_hex(),
                current => session.current,
                created => format_time(session.created_at),
                last_active => format_time(session.last_active_at),
                ip => session.client_ip.clone().unwrap_or_else(|| "-".into()),
                user_agent => session.user_agent.clone().unwrap_or_else(|| "-".into()),
            }
        })
        .collect();
    page(
        &app,
        &auth,
        &browser,
        StatusCode::OK,
        "sessions.html",
        context! { sessions => rows },
    )
    .await
}

/// `POST /sessions/{id}/revoke`.
pub async fn revoke_session(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(_): RequireFresh<User>,
    Path(id): Path<String>,
    Form(input): Form<CsrfForm>,
) -> Response {
    if let Err(response) = check_csrf(&app, &auth, &browser, input.csrf_token.as_deref()).await {
        return response;
    }
    let Some(id) = SessionId::from_hex(&id) else {
        return error_page(&app, StatusCode::NOT_FOUND, "No such session.");
    };
    match auth.revoke_session(&id).await {
        Ok(true) => {
            let _ = flash(auth.session(), FlashLevel::Success, "Session revoked.").await;
            Redirect::to("/sessions").into_response()
        }
        Ok(false) => error_page(&app, StatusCode::NOT_FOUND, "No such session."),
        Err(error) => error.into_response(),
    }
}

/// `POST /sessions/revoke-others`.
pub async fn revoke_other_sessions(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(_): RequireFresh<User>,
    Form(input): Form<CsrfForm>,
) -> Response {
    if let Err(response) = check_csrf(&app, &auth, &browser, input.csrf_token.as_deref()).await {
        return response;
    }
    match auth.revoke_other_sessions().await {
        Ok(count) => {
            let _ = flash(
                auth.session(),
                FlashLevel::Success,
                format!("{count} other session(s) logged out."),
            )
            .await;
            Redirect::to("/sessions").into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// `GET /password` (fresh login required).
pub async fn password_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(_): RequireFresh<User>,
) -> Response {
    page(
        &app,
        &auth,
        &browser,
        StatusCode::OK,
        "password.html",
        context! { min_password => app.policy.min_chars },
    )
    .await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf_token: Option<String>,
    current: Option<String>,
    new: Option<String>,
    confirm: Option<String>,
}

/// `POST /password`: checks the current password, sets the new one, ends every other
/// session and remembered device.
pub async fn change_password(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
    Form(input): Form<PasswordForm>,
) -> Response {
    if let Err(response) = check_csrf(&app, &auth, &browser, input.csrf_token.as_deref()).await {
        return response;
    }
    let again = |status: StatusCode, error: String| {
        let extra = context! { error => error, min_password => app.policy.min_chars };
        let (auth, browser) = (&auth, &browser);
        async move { page(&app, auth, browser, status, "password.html", extra).await }
    };
    let current = input.current.unwrap_or_default();
    let new = input.new.unwrap_or_default();
    match app
        .backend
        .hasher()
        .verify(&current, user.password_hash())
        .await
    {
        Ok(true) => {}
        Ok(false) | Err(latchkey::PasswordError::TooLong) => {
            return again(
                StatusCode::FORBIDDEN,
                "The current password is wrong.".into(),
            )
            .await
        }
        Err(error) => return AuthError::from(error).into_response(),
    }
    if input.confirm.as_deref() != Some(new.as_str()) {
        return again(
            StatusCode::BAD_REQUEST,
            "The two passwords do not match.".into(),
        )
        .await;
    }
    if let Err(error) = app.policy.check(&new) {
        return again(StatusCode::BAD_REQUEST, error.to_string()).await;
    }
    let updated = match app.backend.hasher().hash(&new).await {
        Ok(hash) => app.backend.users().set_password_hash(user.id, &hash).await,
        Err(error) => return AuthError::from(error).into_response(),
    };
    let updated = match updated {
        Ok(updated) => updated,
        Err(error) => return AuthError::from(error).into_response(),
    };
    if let Err(error) = auth.password_changed(&updated).await {
        return error.into_response();
    }
    let _ = flash(
        auth.session(),
        FlashLevel::Success,
        "Your password has been changed.",
    )
    .await;
    Redirect::to("/home").into_response()
}

/// Unknown paths: a page for browsers, JSON otherwise.
pub async fn not_found(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        return error_page(&app, StatusCode::NOT_FOUND, "There is no page here.");
    }
    api::not_found().await.into_response()
}
