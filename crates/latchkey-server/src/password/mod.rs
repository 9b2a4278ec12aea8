//! The password change (a fresh login, the current password checked under the throttle).

pub mod api;
pub mod flows;
pub mod pages;

use crate::web::kinds::form_or_json;
use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::get;
use axum::Router;

/// The password change: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/password",
        get(pages::password_page).post(limited(form_or_json(
            pages::change_password,
            api::change_password,
        ))),
    )
}
