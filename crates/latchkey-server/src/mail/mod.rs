//! The mail flows: password reset, email verification, sign-in by mailed code or link,
//! email change and security notices. `flows` holds the use cases, `api` the JSON
//! endpoints, `pages` the HTML ones (templates `forgot.html`, `reset.html`,
//! `email_code.html`, `confirm.html`, `account.html`, and `mail/*`).

pub mod api;
pub mod flows;
pub mod pages;
pub mod routes;

use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::{get, post};
use axum::Router;

/// The mail flows: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/account/email",
            post(limited(crate::mail::routes::change_email)),
        )
        .route(
            "/account/email/confirm",
            get(crate::mail::pages::confirm_email_change_page)
                .post(limited(crate::mail::routes::confirm_email_change)),
        )
        .route(
            "/password/forgot",
            get(crate::mail::pages::forgot_page)
                .post(limited(crate::mail::routes::forgot_password)),
        )
        .route(
            "/password/reset",
            get(crate::mail::pages::reset_page).post(limited(crate::mail::routes::reset_password)),
        )
        .route(
            "/login/email",
            post(limited(crate::mail::routes::sign_in_by_mail)),
        )
        .route(
            "/login/email/verify",
            post(limited(crate::mail::routes::sign_in_with_code)),
        )
        .route(
            "/login/email/confirm",
            get(crate::mail::pages::sign_in_link_page)
                .post(limited(crate::mail::routes::sign_in_with_link)),
        )
        .route(
            "/email/verify",
            get(crate::mail::pages::verify_page).post(limited(crate::mail::routes::verify_email)),
        )
        .route(
            "/email/verify/resend",
            post(limited(crate::mail::routes::resend_verification)),
        )
}
