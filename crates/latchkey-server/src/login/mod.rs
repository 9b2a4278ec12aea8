//! Sign-up, login, home and logout: the seed's "full authentication example" as a capability (use cases, JSON endpoints, pages, the shared paths).

pub mod api;
pub mod flows;
pub mod pages;
pub mod routes;

use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::{get, post};
use axum::Router;

/// Sign-up, login, home and logout: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(crate::login::pages::index))
        .route(
            "/signup",
            get(crate::login::pages::signup_page).post(limited(crate::login::routes::signup)),
        )
        .route(
            "/login",
            get(crate::login::pages::login_page).post(limited(crate::login::routes::login)),
        )
        .route(
            "/home",
            post(crate::login::routes::home).get(crate::login::routes::home),
        )
        .route("/logout", post(limited(crate::login::routes::logout)))
}
