//! Second factors and passkeys: `second_factor` (the second step of a login, TOTP
//! enrolment and removal, recovery codes) and `passkeys` (registration, sign-in, the
//! passkey as a second factor) hold the use cases; `api` and `passkey_api` the JSON
//! endpoints, `pages` the HTML ones (templates `second_factor.html`, `totp.html`,
//! `recovery_codes.html`).

pub mod api;
pub mod pages;
pub mod passkey_api;
pub mod passkeys;
pub mod second_factor;

use crate::web::kinds::form_or_json;
use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::{get, patch, post};
use axum::Router;

/// Second factors and passkeys: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/account/totp",
            post(limited(form_or_json(pages::begin_totp, api::begin_totp)))
                .delete(limited(api::remove_totp)),
        )
        .route(
            "/account/totp/confirm",
            post(limited(form_or_json(
                pages::confirm_totp,
                api::confirm_totp,
            ))),
        )
        .route("/account/totp/remove", post(limited(pages::remove_totp)))
        .route(
            "/account/recovery-codes",
            post(limited(form_or_json(
                pages::regenerate_recovery_codes,
                api::regenerate_recovery_codes,
            ))),
        )
        .route(
            "/login/second-factor",
            get(pages::second_step_form)
                .post(limited(form_or_json(pages::second_step, api::second_step))),
        )
        .route("/account/passkeys", get(passkey_api::list))
        .route(
            "/account/passkeys/begin",
            post(limited(passkey_api::begin_registration)),
        )
        .route(
            "/account/passkeys/finish",
            post(limited(passkey_api::finish_registration)),
        )
        .route(
            "/account/passkeys/{id}",
            patch(limited(passkey_api::rename)).delete(limited(passkey_api::delete)),
        )
        .route(
            "/login/passkey/begin",
            post(limited(passkey_api::begin_sign_in)),
        )
        .route(
            "/login/passkey/finish",
            post(limited(passkey_api::finish_sign_in)),
        )
        .route(
            "/login/second-factor/passkey/begin",
            post(limited(passkey_api::begin_second_factor)),
        )
        .route(
            "/login/second-factor/passkey/finish",
            post(limited(passkey_api::finish_second_factor)),
        )
}
