//! Sign-up, login, home and logout: the seed's "full authentication example" as a capability (use cases in `flows`, JSON handlers in `api`, page handlers in `pages`).

pub mod api;
pub mod flows;
pub mod pages;

use crate::web::kinds::{form_or_json, html_or_json};
use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::{get, post};
use axum::Router;

/// Sign-up, login, home and logout: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::index))
        .route(
            "/signup",
            get(pages::signup_page).post(limited(form_or_json(pages::signup, api::signup))),
        )
        .route(
            "/login",
            get(pages::login_page).post(limited(form_or_json(pages::login, api::login))),
        )
        .route(
            "/home",
            get(html_or_json(pages::home_page, api::home))
                .post(html_or_json(pages::home_page, api::home)),
        )
        .route(
            "/logout",
            post(limited(form_or_json(pages::logout, api::logout))),
        )
}
