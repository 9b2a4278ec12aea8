//! A user's sessions: list them, revoke one, revoke all others (a fresh login).

pub mod api;
pub mod flows;
pub mod pages;
pub mod routes;

use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::{delete, get, post};
use axum::Router;

/// A user's sessions: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(crate::sessions::routes::sessions))
        .route(
            "/sessions/{id}",
            delete(crate::sessions::api::revoke_session),
        )
        .route(
            "/sessions/revoke-others",
            post(limited(crate::sessions::routes::revoke_other_sessions)),
        )
        .route(
            "/sessions/{id}/revoke",
            post(limited(crate::sessions::pages::revoke_session)),
        )
}
