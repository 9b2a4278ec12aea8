//! The account: who, which address, whether it is verified, since when (the page is `account.html`, with the email change and the second factors).

pub mod api;
pub mod flows;
pub mod pages;

use crate::web::kinds::html_or_json;
use crate::web::state::AppState;
use axum::routing::get;
use axum::Router;

/// The account: the paths this capability answers (mounted by `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/account",
        get(html_or_json(pages::account_page, api::account)),
    )
}
