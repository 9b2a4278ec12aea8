//! The password change (a fresh login, the current password checked under the throttle).

pub mod api;
pub mod flows;
pub mod pages;
pub mod routes;

use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::get;
use axum::Router;

/// The password change: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/password",
        get(crate::password::pages::password_page)
            .post(limited(crate::password::routes::change_password)),
    )
}
