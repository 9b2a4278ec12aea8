//! The account: the page for browsers, JSON otherwise.

use crate::web::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use latchkey::axum::{BrowserCsrf, RequireLogin, WantsHtml};
use latchkey::{AuthSession, User};

/// `GET /account`: the page for browsers, the JSON account otherwise.
pub async fn account(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    WantsHtml(html): WantsHtml,
    RequireLogin(user): RequireLogin<User>,
) -> Response {
    if html {
        return crate::account::pages::account_page(app, auth, browser, user).await;
    }
    crate::account::api::account(State(app), RequireLogin(user))
        .await
        .into_response()
}
