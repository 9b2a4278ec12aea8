//! The mail flows: password reset, email verification, sign-in by mailed code or link,
//! email change. `flows` holds the use cases, `api` the JSON handlers, `pages` the
//! HTML ones (templates `forgot.html`, `reset.html`,
//! `email_code.html`, `confirm.html`, `account.html`, and `mail/*`).

pub mod api;
pub mod flows;
pub mod pages;

use crate::web::kinds::form_or_json;
use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::{get, post};
use axum::Router;

/// The mail flows: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/account/email",
            post(limited(form_or_json(
                pages::change_email,
                api::change_email,
            ))),
        )
        .route(
            "/account/email/confirm",
            get(pages::confirm_email_change_page).post(limited(form_or_json(
                pages::confirm_email_change,
                api::confirm_email_change,
            ))),
        )
        .route(
            "/password/forgot",
            get(pages::forgot_page)
                .post(limited(form_or_json(pages::forgot, api::forgot_password))),
        )
        .route(
            "/password/reset",
            get(pages::reset_page).post(limited(form_or_json(pages::reset, api::reset_password))),
        )
        .route(
            "/login/email",
            post(limited(form_or_json(
                pages::sign_in_by_mail,
                api::sign_in_by_mail,
            ))),
        )
        .route(
            "/login/email/verify",
            post(limited(form_or_json(
                pages::sign_in_with_code,
                api::sign_in_with_code,
            ))),
        )
        .route(
            "/login/email/confirm",
            get(pages::sign_in_link_page).post(limited(form_or_json(
                pages::sign_in_with_link,
                api::sign_in_with_link,
            ))),
        )
        .route(
            "/email/verify",
            get(pages::verify_page).post(limited(form_or_json(pages::verify, api::verify_email))),
        )
        .route(
            "/email/verify/resend",
            post(limited(form_or_json(
                pages::resend_verification,
                api::resend_verification,
            ))),
        )
}
