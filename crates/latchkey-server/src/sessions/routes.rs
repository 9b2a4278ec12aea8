//! A user's sessions: the paths the page and the JSON API share.

use crate::web::state::AppState;
use crate::web::submission::Bodiless;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use latchkey::axum::{BrowserCsrf, RequireFresh, RequireLogin, WantsHtml};
use latchkey::{AuthSession, User};

/// `GET /sessions`: the page for browsers, `{"sessions": [...]}` otherwise.
pub async fn sessions(
    app: State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    WantsHtml(html): WantsHtml,
    login: RequireLogin<User>,
) -> Response {
    if html {
        return crate::sessions::pages::sessions_page(app, auth, browser, login).await;
    }
    crate::sessions::api::sessions(auth).await.into_response()
}

/// `POST /sessions/revoke-others` (a fresh login is needed either way).
pub async fn revoke_other_sessions(
    auth: AuthSession<User>,
    RequireFresh(_): RequireFresh<User>,
    submission: Bodiless<crate::login::pages::CsrfForm>,
) -> Response {
    match submission {
        Bodiless::Form(_) => crate::sessions::pages::revoke_other_sessions(auth).await,
        Bodiless::Json => crate::sessions::api::revoke_other_sessions(auth)
            .await
            .into_response(),
    }
}
