//! Personal access tokens: a user makes, lists and revokes their own (a fresh login in
//! a browser; no token can make a token). Scripts send them as `Authorization: Bearer
//! lk_…`, checked by the library's auth layer through the gate.

pub mod api;
pub mod flows;
pub mod pages;

use crate::web::kinds::{form_or_json, html_or_json};
use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::{delete, get, post};
use axum::Router;

/// Personal access tokens: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/account/tokens",
            get(html_or_json(pages::tokens_page, api::tokens)).post(limited(form_or_json(
                pages::create_token,
                api::create_token,
            ))),
        )
        .route("/account/tokens/{id}", delete(api::revoke_token))
        .route(
            "/account/tokens/{id}/revoke",
            post(limited(pages::revoke_token)),
        )
}
