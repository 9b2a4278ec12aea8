//! A user's sessions: list them, revoke one, revoke all others (a fresh login).

pub mod api;
pub mod flows;
pub mod pages;

use crate::web::kinds::{form_or_json, html_or_json};
use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::{delete, get, post};
use axum::Router;

/// A user's sessions: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/sessions",
            get(html_or_json(pages::sessions_page, api::sessions)),
        )
        .route("/sessions/{id}", delete(api::revoke_session))
        .route(
            "/sessions/revoke-others",
            post(limited(form_or_json(
                pages::revoke_other_sessions,
                api::revoke_other_sessions,
            ))),
        )
        .route(
            "/sessions/{id}/revoke",
            post(limited(pages::revoke_session)),
        )
}
