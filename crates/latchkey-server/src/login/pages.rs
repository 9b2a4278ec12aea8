//! Sign-up, login, home and logout: the pages (templates `index.html`, `signup.html`, `login.html`, `home.html`).

use crate::factors::pages::second_step_page;
use crate::login::flows::LogIn;
use crate::login::flows::SignUpError;
use crate::web::headers::clear_site_data;
use crate::web::page::{page, page_leading_to, Button, Destination, NextQuery};
use crate::web::state::AppState;
use crate::web::submission::CheckedForm;
use crate::web::throttling::{too_many_message, with_retry_after, ClientIp};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey::axum::{BrowserCsrf, RequireLogin};
use latchkey::flash::{flash, FlashLevel};
use latchkey::{AuthSession, User};
use minijinja::context;
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
#[utoipa::path(get, path = "/signup", tag = "pages", responses(
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
    CheckedForm(input): CheckedForm<SignupForm>,
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
    match crate::login::flows::sign_up(&app, ip, &username, Some(email.as_str()), &password).await {
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
#[utoipa::path(get, path = "/login", tag = "pages", responses(
    (status = 200, description = "The login page", content_type = "text/html", body = String),
))]
pub async fn login_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = query.destination(&app);
    page_leading_to(
        &app,
        &auth,
        &browser,
        StatusCode::OK,
        "login.html",
        context! {},
        next.as_ref(),
    )
    .await
}

#[derive(Deserialize)]
pub struct LoginForm {
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
    CheckedForm(input): CheckedForm<LoginForm>,
) -> Response {
    let username = input.username.unwrap_or_default();
    let password = input.password.unwrap_or_default();
    let next = query.destination(&app);
    let fail = |status: StatusCode, error: &'static str| {
        let extra = context! { error => error, form_username => username.clone() };
        let (auth, browser, next) = (&auth, &browser, next.as_ref());
        async move { page_leading_to(&app, auth, browser, status, "login.html", extra, next).await }
    };
    if username.trim().is_empty() || password.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "Username or Password cannot be empty.",
        )
        .await;
    }
    let remember = input.remember.is_some();
    match crate::login::flows::log_in(&app, ip, &auth, &username, &password, remember).await {
        Ok(LogIn::LoggedIn(_)) => Redirect::to(Destination::or_home(next.as_ref())).into_response(),
        Ok(LogIn::Refused) => fail(StatusCode::UNAUTHORIZED, "Invalid username or password").await,
        Ok(LogIn::SecondFactorRequired(_)) => {
            second_step_page(&app, &auth, &browser, StatusCode::OK, next.as_ref(), None).await
        }
        Ok(LogIn::Unverified) => {
            let extra = context! {
                error => "Please verify your email address first: follow the link we mailed you, or send it again below.",
                unverified => true,
                form_username => username.clone(),
            };
            page_leading_to(
                &app,
                &auth,
                &browser,
                StatusCode::FORBIDDEN,
                "login.html",
                extra,
                next.as_ref(),
            )
            .await
        }
        Ok(LogIn::Throttled(wait)) => {
            let message = too_many_message(wait);
            let extra = context! { error => message, form_username => username.clone() };
            let page = page_leading_to(
                &app,
                &auth,
                &browser,
                StatusCode::TOO_MANY_REQUESTS,
                "login.html",
                extra,
                next.as_ref(),
            )
            .await;
            with_retry_after(page, wait)
        }
        Err(error) => error.into_response(),
    }
}

/// `GET|POST /home` (page): the greeting of a logged-in browser.
pub async fn home_page(
    RequireLogin(_): RequireLogin<User>,
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
) -> Response {
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

/// `POST /logout` (form): logs out and goes back to `/login` (a logout also asks the
/// browser to clear its cached pages).
pub async fn logout(auth: AuthSession<User>, CheckedForm(_): CheckedForm<Button>) -> Response {
    let logged_out = crate::login::flows::log_out(&auth).await;
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
