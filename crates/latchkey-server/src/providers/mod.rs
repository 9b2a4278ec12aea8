//! Sign-in with other identity providers (OpenID Connect): `flows` (what a verified
//! identity means here: a sign-in, a new account, a link, or a refusal; connecting and
//! disconnecting), `pages` (the redirect to the provider, the callback, the account
//! page's forms), `api` (the account's connections as JSON).

pub mod api;
pub mod flows;
pub mod pages;

use crate::web::state::AppState;
use crate::web::submission::limited;
use axum::routing::{delete, get, post};
use axum::Router;

/// Sign-in with other providers: the paths this capability answers (mounted by
/// `app::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login/oidc/{name}", get(pages::start))
        .route("/login/oidc/{name}/callback", get(pages::callback))
        .route("/account/identities", get(api::list))
        .route("/account/identities/{name}", delete(api::disconnect))
        .route(
            "/account/identities/{name}/connect",
            post(limited(pages::connect)),
        )
        .route(
            "/account/identities/{name}/disconnect",
            post(limited(pages::disconnect)),
        )
}
