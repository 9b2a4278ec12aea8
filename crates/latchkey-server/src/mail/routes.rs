//! The mail flows' paths the pages and the JSON API share.

use crate::web::json::{answer, JsonBody};
use crate::web::state::AppState;
use crate::web::submission::Submission;
use crate::web::throttling::ClientIp;
use crate::{mail::api as mail_api, mail::pages as mail_pages};
use axum::extract::State;
use axum::response::Response;
use latchkey::axum::{BrowserCsrf, RequireFresh};
use latchkey::{AuthSession, User};

/// `POST /password/forgot`.
pub async fn forgot_password(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::EmailForm, mail_api::EmailRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::forgot(app, ip, auth, browser, input).await,
        Submission::Json(body) => answer(mail_api::forgot_password(app, ip, JsonBody(body)).await),
    }
}

/// `POST /password/reset`.
pub async fn reset_password(
    app: State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::ResetForm, mail_api::ResetRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::reset(app, auth, browser, input).await,
        Submission::Json(body) => answer(mail_api::reset_password(app, auth, JsonBody(body)).await),
    }
}

/// `POST /login/email`.
pub async fn sign_in_by_mail(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::EmailForm, mail_api::EmailRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::sign_in_by_mail(app, ip, auth, browser, input).await,
        Submission::Json(body) => answer(mail_api::sign_in_by_mail(app, ip, JsonBody(body)).await),
    }
}

/// `POST /login/email/verify`.
pub async fn sign_in_with_code(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::CodeForm, mail_api::CodeRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            mail_pages::sign_in_with_code(app, ip, auth, browser, input).await
        }
        Submission::Json(body) => {
            answer(mail_api::sign_in_with_code(app, ip, auth, JsonBody(body)).await)
        }
    }
}

/// `POST /login/email/confirm`.
pub async fn sign_in_with_link(
    app: State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::TokenForm, mail_api::TokenRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::sign_in_with_link(app, auth, browser, input).await,
        Submission::Json(body) => {
            answer(mail_api::sign_in_with_link(app, auth, JsonBody(body)).await)
        }
    }
}

/// `POST /email/verify`.
pub async fn verify_email(
    app: State<AppState>,
    auth: AuthSession<User>,
    submission: Submission<mail_pages::TokenForm, mail_api::TokenRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::verify(app, auth, input).await,
        Submission::Json(body) => answer(mail_api::verify_email(app, auth, JsonBody(body)).await),
    }
}

/// `POST /email/verify/resend`.
pub async fn resend_verification(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::EmailForm, mail_api::EmailRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            mail_pages::resend_verification(app, ip, auth, browser, input).await
        }
        Submission::Json(body) => {
            answer(mail_api::resend_verification(app, ip, JsonBody(body)).await)
        }
    }
}

/// `POST /account/email` (a fresh login is needed either way).
pub async fn change_email(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    RequireFresh(user): RequireFresh<User>,
    submission: Submission<mail_pages::EmailForm, mail_api::EmailRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            mail_pages::change_email(app, ip, auth, RequireFresh(user), input).await
        }
        Submission::Json(body) => {
            answer(mail_api::change_email(app, ip, RequireFresh(user), JsonBody(body)).await)
        }
    }
}

/// `POST /account/email/confirm`.
pub async fn confirm_email_change(
    app: State<AppState>,
    auth: AuthSession<User>,
    submission: Submission<mail_pages::TokenForm, mail_api::TokenRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::confirm_email_change(app, auth, input).await,
        Submission::Json(body) => {
            answer(mail_api::confirm_email_change(app, auth, JsonBody(body)).await)
        }
    }
}
