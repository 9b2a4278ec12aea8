//! HTML pages (sign-up, login, home, logout, sessions, password) over the use cases in
//! `usecases`. The paths they share with the JSON API are dispatched in
//! `routes`: form posts come here, JSON goes to `api`.

use crate::factors::pages::second_step_page;
use crate::usecases::{self, LogIn, PasswordChangeError, SignUpError};
use crate::web::headers::clear_site_data;
use crate::web::page::{error_page, page, CsrfField, NextQuery};
use crate::web::state::AppState;
use crate::web::submission::CheckedForm;
use crate::web::throttling::{too_many_message, with_retry_after, ClientIp};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey::axum::{BrowserCsrf, RequireFresh, RequireLogin};
use latchkey::flash::{flash, FlashLevel};
use latchkey::redirect::next_or_home;
use latchkey::{AuthSession, User};
use minijinja::{context, Value};
use serde::Deserialize;

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

/// `POST /signup` (form): creates the user and goes to the login page.
pub async fn signup(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    input: SignupForm,
) -> Response {
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
    match usecases::sign_up(&app, ip, &username, Some(email.as_str()), &password).await {
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
        Err(SignUpError::Invalid(_, message)) => again(StatusCode::BAD_REQUEST, message).await,
        Err(SignUpError::Taken(message)) => again(StatusCode::CONFLICT, message).await,
        Err(SignUpError::Throttled(wait)) => with_retry_after(
            again(StatusCode::TOO_MANY_REQUESTS, too_many_message(wait)).await,
            wait,
        ),
        Err(SignUpError::Failed(error)) => error.into_response(),
    }
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
    let next = query.next();
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

/// `POST /login` (form): logs in and redirects to `next` (if safe) or `/home`.
pub async fn login(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<NextQuery>,
    input: LoginForm,
) -> Response {
    let username = input.username.unwrap_or_default();
    let password = input.password.unwrap_or_default();
    let next = query.next();
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
    let remember = input.remember.is_some();
    match usecases::log_in(&app, ip, &auth, &username, &password, remember).await {
        Ok(LogIn::LoggedIn(_)) => Redirect::to(next_or_home(next)).into_response(),
        Ok(LogIn::Refused) => fail(StatusCode::UNAUTHORIZED, "Invalid username or password").await,
        Ok(LogIn::SecondFactorRequired(_)) => {
            second_step_page(&app, &auth, &browser, StatusCode::OK, next, None).await
        }
        Ok(LogIn::Unverified) => {
            let extra = context! {
                error => "Please verify your email address first: follow the link we mailed you, or send it again below.",
                unverified => true,
                form_username => username.clone(),
                next => next,
            };
            page(
                &app,
                &auth,
                &browser,
                StatusCode::FORBIDDEN,
                "login.html",
                extra,
            )
            .await
        }
        Ok(LogIn::Throttled(wait)) => {
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
            with_retry_after(page, wait)
        }
        Err(error) => error.into_response(),
    }
}

/// The `/home` page of a logged-in browser.
pub async fn home_page(app: AppState, auth: AuthSession<User>, browser: BrowserCsrf) -> Response {
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

/// `POST /logout` (form): logs out and goes back to `/login`.
pub async fn logout(auth: AuthSession<User>) -> Response {
    let logged_out = usecases::log_out(&auth).await;
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
    let sessions = match usecases::sessions(&auth).await {
        Ok(sessions) => sessions,
        Err(error) => return error.into_response(),
    };
    let rows: Vec<Value> = sessions
        .into_iter()
        .map(|session| {
            context! {
                id => session.id,
                current => session.current,
                created => session.created_at,
                last_active => session.last_active_at,
                ip => session.client_ip.unwrap_or_else(|| "-".into()),
                user_agent => session.user_agent.unwrap_or_else(|| "-".into()),
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
    RequireFresh(_): RequireFresh<User>,
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<CsrfForm>,
) -> Response {
    match usecases::revoke_session(&auth, &id).await {
        Ok(true) => {
            let _ = flash(auth.session(), FlashLevel::Success, "Session revoked.").await;
            Redirect::to("/sessions").into_response()
        }
        Ok(false) => error_page(&app, StatusCode::NOT_FOUND, "No such session."),
        Err(error) => error.into_response(),
    }
}

/// `POST /sessions/revoke-others` (form; a fresh login is checked by the caller).
pub async fn revoke_other_sessions(auth: AuthSession<User>) -> Response {
    match usecases::revoke_other_sessions(&auth).await {
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
#[utoipa::path(get, path = "/password", responses(
    (status = 200, description = "The password change page (a fresh login is needed)", content_type = "text/html", body = String),
    (status = 303, description = "A browser that must log in (again) is sent to the login page"),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn password_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    _fresh: RequireFresh<User>,
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

/// `POST /password` (form, for the freshly logged-in `user`): checks the current
/// password, sets the new one, ends every other session and remembered device.
pub async fn change_password(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    ip: ClientIp,
    browser: BrowserCsrf,
    user: User,
    input: PasswordForm,
) -> Response {
    let again = |status: StatusCode, error: String| {
        let extra = context! { error => error, min_password => app.policy.min_chars };
        let (auth, browser) = (&auth, &browser);
        async move { page(&app, auth, browser, status, "password.html", extra).await }
    };
    let current = input.current.unwrap_or_default();
    let new = input.new.unwrap_or_default();
    if input.confirm.as_deref() != Some(new.as_str()) {
        return again(
            StatusCode::BAD_REQUEST,
            "The two passwords do not match.".into(),
        )
        .await;
    }
    match usecases::change_password(&app, &auth, ip, &user, &current, &new).await {
        Ok(()) => {}
        Err(PasswordChangeError::Throttled(wait)) => {
            return with_retry_after(
                again(StatusCode::TOO_MANY_REQUESTS, too_many_message(wait)).await,
                wait,
            )
        }
        Err(PasswordChangeError::WrongCurrent) => {
            return again(
                StatusCode::FORBIDDEN,
                "The current password is wrong.".into(),
            )
            .await
        }
        Err(PasswordChangeError::Policy(message)) => {
            return again(StatusCode::BAD_REQUEST, message).await
        }
        Err(PasswordChangeError::Failed(error)) => return error.into_response(),
    }
    let _ = flash(
        auth.session(),
        FlashLevel::Success,
        "Your password has been changed.",
    )
    .await;
    Redirect::to("/home").into_response()
}

/// The "no page here" page.
pub fn not_found_page(app: &AppState) -> Response {
    error_page(app, StatusCode::NOT_FOUND, "There is no page here.")
}

impl CsrfField for PasswordForm {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}
