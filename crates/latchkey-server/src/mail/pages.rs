//! The HTML side of the mail flows (forgot password, reset, sign-in by mail, email
//! verification, the account page's email change), over [`crate::mail::flows`]. A page
//! a mailed link opens only shows a form; sending the form redeems the link.

use crate::factors::pages::second_step_page;
use crate::mail::api::{DEAD_LINK, MAIL_ON_ITS_WAY};
use crate::mail::flows::{
    self as mail_flows, EmailChangeError, MailRequest, MailSignIn, Requested, Reset, ResetError,
};
use crate::web::page::{error_page, page, page_leading_to, Destination, NextQuery};
use crate::web::state::AppState;
use crate::web::submission::CheckedForm;
use crate::web::throttling::{too_many_message, with_retry_after, ClientIp};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey::axum::{BrowserCsrf, RequireFresh};
use latchkey::flash::{flash, FlashLevel};
use latchkey::user::tokens::TokenPurpose;
use latchkey::{AuthSession, User};
use minijinja::context;
use serde::Deserialize;

/// `?token=` of a mailed link.
#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// A form of one address.
#[derive(Deserialize)]
pub struct EmailForm {
    email: Option<String>,
}

/// A form carrying a mailed link's token.
#[derive(Deserialize)]
pub struct TokenForm {
    token: Option<String>,
}

/// The reset page's form.
#[derive(Deserialize)]
pub struct ResetForm {
    token: Option<String>,
    password: Option<String>,
    confirm: Option<String>,
}

/// The sign-in code form.
#[derive(Deserialize)]
pub struct CodeForm {
    email: Option<String>,
    code: Option<String>,
}

/// Sets a flash message and goes to `to`.
async fn flash_and_go(
    auth: &AuthSession<User>,
    level: FlashLevel,
    message: &str,
    to: &str,
) -> Response {
    match flash(auth.session(), level, message).await {
        Ok(()) => Redirect::to(to).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Where a followed link leads next: the account page for a logged-in visitor, the
/// login page otherwise.
async fn account_or_login(auth: &AuthSession<User>) -> &'static str {
    match auth.current_user().await {
        Ok(Some(_)) => "/account",
        _ => "/login",
    }
}

/// `GET /password/forgot`.
#[utoipa::path(get, path = "/password/forgot", tag = "pages", responses(
    (status = 200, description = "The forgot-password page", content_type = "text/html", body = String),
))]
pub async fn forgot_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
) -> Response {
    page(
        &app,
        &auth,
        &browser,
        StatusCode::OK,
        "forgot.html",
        context! {},
    )
    .await
}

/// The page after a form asked for mail `what`: the same for every address. A sign-in's
/// code form goes on to `next`.
async fn mail_requested_page(
    app: &AppState,
    ip: ClientIp,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    email: Option<String>,
    what: Requested,
    next: Option<&Destination>,
) -> Response {
    let template = match what {
        Requested::SignIn => "email_code.html",
        Requested::PasswordReset | Requested::Verification => "forgot.html",
    };
    let show = |status: StatusCode, extra: minijinja::Value| {
        page_leading_to(app, auth, browser, status, template, extra, next)
    };
    let email = email.unwrap_or_default();
    if email.trim().is_empty() {
        let extra = context! { error => "Please enter your email address." };
        return show(StatusCode::BAD_REQUEST, extra).await;
    }
    match mail_flows::request_mail(app, ip, &email, what).await {
        Ok(MailRequest::Accepted) => {
            let extra = context! { sent => MAIL_ON_ITS_WAY, email => email.trim() };
            show(StatusCode::OK, extra).await
        }
        Ok(MailRequest::Throttled(wait)) => {
            let extra = context! { error => too_many_message(wait), email => email.trim() };
            with_retry_after(show(StatusCode::TOO_MANY_REQUESTS, extra).await, wait)
        }
        Ok(MailRequest::Busy) => error_page(
            app,
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many requests are being worked on; try again in a moment.",
        ),
        Ok(MailRequest::NotAnAddress(reason)) => {
            let extra = context! { error => reason, email => email.trim() };
            show(StatusCode::BAD_REQUEST, extra).await
        }
        Err(error) => error.into_response(),
    }
}

/// `POST /password/forgot` (form).
pub async fn forgot(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    CheckedForm(input): CheckedForm<EmailForm>,
) -> Response {
    let what = Requested::PasswordReset;
    mail_requested_page(&app, ip, &auth, &browser, input.email, what, None).await
}

/// A page a mailed link opens: the form that redeems `token` if it is live (opening it
/// uses nothing up), the dead-link message otherwise.
async fn link_page(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    purpose: TokenPurpose,
    token: Option<String>,
    template: &str,
    extra: minijinja::Value,
) -> Response {
    let token = token.unwrap_or_default();
    let live = match mail_flows::token_is_live(app, purpose, &token).await {
        Ok(live) => live,
        Err(error) => return error.into_response(),
    };
    let extra = if live {
        context! { token => token, ..extra }
    } else {
        context! { dead => DEAD_LINK, ..extra }
    };
    page(app, auth, browser, StatusCode::OK, template, extra).await
}

/// `GET /password/reset?token=…`: the new-password form (opening it changes nothing).
#[utoipa::path(get, path = "/password/reset", tag = "pages", params(
    ("token" = Option<String>, Query, description = "The token from the mailed link"),
), responses(
    (status = 200, description = "The new-password form, or the dead-link message", content_type = "text/html", body = String),
))]
pub async fn reset_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<TokenQuery>,
) -> Response {
    let extra = context! { min_password => app.policy.min_chars };
    let purpose = TokenPurpose::ResetPassword;
    link_page(
        &app,
        &auth,
        &browser,
        purpose,
        query.token,
        "reset.html",
        extra,
    )
    .await
}

/// `POST /password/reset` (form).
pub async fn reset(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    CheckedForm(input): CheckedForm<ResetForm>,
) -> Response {
    let token = input.token.unwrap_or_default();
    let again = |status: StatusCode, error: String| {
        let extra = context! { error => error, token => token.clone(), min_password => app.policy.min_chars };
        let (auth, browser) = (&auth, &browser);
        async move { page(&app, auth, browser, status, "reset.html", extra).await }
    };
    let password = input.password.unwrap_or_default();
    if input.confirm.as_deref() != Some(password.as_str()) {
        return again(
            StatusCode::BAD_REQUEST,
            "The two passwords do not match.".into(),
        )
        .await;
    }
    match mail_flows::reset_password(&app, &auth, &token, &password).await {
        Ok(Reset::LoggedIn(_)) => {
            let message = "Your password has been reset.";
            flash_and_go(&auth, FlashLevel::Success, message, "/home").await
        }
        Ok(Reset::SecondFactorRequired(_)) => {
            second_step_page(&app, &auth, &browser, StatusCode::OK, None, None).await
        }
        Ok(Reset::PasswordSet(_)) => {
            let message = "Your password has been reset. Log in with it.";
            flash_and_go(&auth, FlashLevel::Success, message, "/login").await
        }
        Err(ResetError::InvalidToken) => {
            let extra = context! { dead => DEAD_LINK };
            page(
                &app,
                &auth,
                &browser,
                StatusCode::BAD_REQUEST,
                "reset.html",
                extra,
            )
            .await
        }
        Err(ResetError::Policy(message)) => again(StatusCode::BAD_REQUEST, message).await,
        Err(ResetError::Failed(error)) => error.into_response(),
    }
}

/// `POST /login/email` (form): mails a sign-in link and code, and shows the code form,
/// which goes on to `next` (or an app's `rd`) once the code is right. (The mailed link
/// may be opened in another browser: it lands on `/home`.)
pub async fn sign_in_by_mail(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<NextQuery>,
    CheckedForm(input): CheckedForm<EmailForm>,
) -> Response {
    let next = query.destination(&app);
    let what = Requested::SignIn;
    mail_requested_page(&app, ip, &auth, &browser, input.email, what, next.as_ref()).await
}

/// `POST /login/email/verify` (form): logs in with the mailed code, then on to `next`.
pub async fn sign_in_with_code(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<NextQuery>,
    CheckedForm(input): CheckedForm<CodeForm>,
) -> Response {
    let next = query.destination(&app);
    let email = input.email.unwrap_or_default();
    let code = input.code.unwrap_or_default();
    let again = |status: StatusCode, error: String| {
        let extra = context! { error => error, email => email, sent => true };
        page_leading_to(
            &app,
            &auth,
            &browser,
            status,
            "email_code.html",
            extra,
            next.as_ref(),
        )
    };
    match mail_flows::sign_in_with_code(&app, ip, &auth, &email, &code).await {
        Ok(MailSignIn::LoggedIn(_)) => {
            Redirect::to(Destination::or_home(next.as_ref())).into_response()
        }
        Ok(MailSignIn::SecondFactorRequired(_)) => {
            second_step_page(&app, &auth, &browser, StatusCode::OK, next.as_ref(), None).await
        }
        Ok(MailSignIn::Refused) => {
            again(StatusCode::UNAUTHORIZED, "Wrong or expired code.".into()).await
        }
        Ok(MailSignIn::Throttled(wait)) => with_retry_after(
            again(StatusCode::TOO_MANY_REQUESTS, too_many_message(wait)).await,
            wait,
        ),
        Err(error) => error.into_response(),
    }
}

/// `GET /login/email/confirm?token=…`: the "Sign in" button (opening it changes nothing).
#[utoipa::path(get, path = "/login/email/confirm", tag = "pages", params(
    ("token" = Option<String>, Query, description = "The token from the mailed link"),
), responses(
    (status = 200, description = "The sign-in button, or the dead-link message", content_type = "text/html", body = String),
))]
pub async fn sign_in_link_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<TokenQuery>,
) -> Response {
    let extra =
        context! { title => "Sign in", action => "/login/email/confirm", button => "Sign in" };
    let purpose = TokenPurpose::SignIn;
    link_page(
        &app,
        &auth,
        &browser,
        purpose,
        query.token,
        "confirm.html",
        extra,
    )
    .await
}

/// `POST /login/email/confirm` (form): logs in with the link's token.
pub async fn sign_in_with_link(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    CheckedForm(input): CheckedForm<TokenForm>,
) -> Response {
    let token = input.token.unwrap_or_default();
    match mail_flows::sign_in_with_link(&app, &auth, &token).await {
        Ok(MailSignIn::LoggedIn(_)) => Redirect::to("/home").into_response(),
        Ok(MailSignIn::SecondFactorRequired(_)) => {
            second_step_page(&app, &auth, &browser, StatusCode::OK, None, None).await
        }
        Ok(_) => error_page(&app, StatusCode::BAD_REQUEST, DEAD_LINK),
        Err(error) => error.into_response(),
    }
}

/// `GET /email/verify?token=…`: the "Verify" button (opening it changes nothing).
#[utoipa::path(get, path = "/email/verify", tag = "pages", params(
    ("token" = Option<String>, Query, description = "The token from the mailed link"),
), responses(
    (status = 200, description = "The verify button, or the dead-link message", content_type = "text/html", body = String),
))]
pub async fn verify_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<TokenQuery>,
) -> Response {
    let extra = context! { title => "Verify your email address", action => "/email/verify", button => "Verify" };
    let purpose = TokenPurpose::VerifyEmail;
    link_page(
        &app,
        &auth,
        &browser,
        purpose,
        query.token,
        "confirm.html",
        extra,
    )
    .await
}

/// `POST /email/verify` (form).
pub async fn verify(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    CheckedForm(input): CheckedForm<TokenForm>,
) -> Response {
    match mail_flows::verify_email(&app, &auth, &input.token.unwrap_or_default()).await {
        Ok(Some(_)) => {
            let to = account_or_login(&auth).await;
            flash_and_go(
                &auth,
                FlashLevel::Success,
                "Your email address is verified.",
                to,
            )
            .await
        }
        Ok(None) => error_page(&app, StatusCode::BAD_REQUEST, DEAD_LINK),
        Err(error) => error.into_response(),
    }
}

/// `POST /email/verify/resend` (form): mails the verification link again.
pub async fn resend_verification(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    CheckedForm(input): CheckedForm<EmailForm>,
) -> Response {
    let what = Requested::Verification;
    mail_requested_page(&app, ip, &auth, &browser, input.email, what, None).await
}

/// `POST /account/email` (form; a fresh login is needed).
pub async fn change_email(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    RequireFresh(user): RequireFresh<User>,
    CheckedForm(input): CheckedForm<EmailForm>,
) -> Response {
    let email = input.email.unwrap_or_default();
    match mail_flows::request_email_change(&app, ip, &user, &email).await {
        Ok(email) => {
            let message = format!("A confirmation link was sent to {email}.");
            flash_and_go(&auth, FlashLevel::Info, &message, "/account").await
        }
        Err(error) => email_change_failed(&app, &auth, error).await,
    }
}

/// `GET /account/email/confirm?token=…`: the confirm button (opening it changes nothing).
#[utoipa::path(get, path = "/account/email/confirm", tag = "pages", params(
    ("token" = Option<String>, Query, description = "The token from the mailed link"),
), responses(
    (status = 200, description = "The confirm button, or the dead-link message", content_type = "text/html", body = String),
))]
pub async fn confirm_email_change_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<TokenQuery>,
) -> Response {
    let extra = context! { title => "Confirm your new email address", action => "/account/email/confirm", button => "Use this address" };
    let purpose = TokenPurpose::ChangeEmail;
    link_page(
        &app,
        &auth,
        &browser,
        purpose,
        query.token,
        "confirm.html",
        extra,
    )
    .await
}

/// `POST /account/email/confirm` (form).
pub async fn confirm_email_change(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    CheckedForm(input): CheckedForm<TokenForm>,
) -> Response {
    match mail_flows::confirm_email_change(&app, &auth, &input.token.unwrap_or_default()).await {
        Ok(user) => {
            let message = format!(
                "Your email address is now {}.",
                user.email.unwrap_or_default()
            );
            let to = account_or_login(&auth).await;
            flash_and_go(&auth, FlashLevel::Success, &message, to).await
        }
        Err(error) => email_change_failed(&app, &auth, error).await,
    }
}

/// The page after a failed email change.
async fn email_change_failed(
    app: &AppState,
    auth: &AuthSession<User>,
    error: EmailChangeError,
) -> Response {
    match error {
        EmailChangeError::Invalid(message) => {
            flash_and_go(auth, FlashLevel::Error, &message, "/account").await
        }
        EmailChangeError::InvalidToken => error_page(app, StatusCode::BAD_REQUEST, DEAD_LINK),
        EmailChangeError::Taken(message) => error_page(app, StatusCode::CONFLICT, &message),
        EmailChangeError::Throttled(wait) => {
            let message = too_many_message(wait);
            let page = flash_and_go(auth, FlashLevel::Error, &message, "/account").await;
            with_retry_after(page, wait)
        }
        EmailChangeError::Failed(error) => error.into_response(),
    }
}
