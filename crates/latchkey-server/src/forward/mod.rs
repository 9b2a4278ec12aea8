//! Forward authentication: latchkey in front of any app. nginx's `auth_request` asks
//! `/auth/nginx`, Caddy's `forward_auth` and Traefik's `forwardAuth` ask `/auth/forward`,
//! whether the request they hold may reach the app; the access rules
//! (`--access-rules`, `latchkey::access_rules`) decide, on the session (or bearer token)
//! the request carries. Only the trusted proxies (`--trusted-proxy`) may ask.

pub mod api;
pub mod flows;

use crate::web::state::AppState;
use axum::routing::any;
use axum::Router;

/// Forward authentication: the paths this capability answers (mounted by `app::router`
/// when `--access-rules` is given).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/nginx", any(api::nginx))
        .route("/auth/forward", any(api::forward))
}
