//! A user's sessions: the page (template `sessions.html`).

use crate::web::page::{error_page, page, Button};
use crate::web::state::AppState;
use crate::web::submission::CheckedForm;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey::axum::{BrowserCsrf, RequireFresh, RequireLogin};
use latchkey::flash::{flash, FlashLevel};
use latchkey::{AuthSession, User};
use minijinja::{context, Value};

/// `GET /sessions`: the user's sessions with revoke buttons.
pub async fn sessions_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireLogin(_): RequireLogin<User>,
) -> Response {
    let sessions = match crate::sessions::flows::sessions(&auth).await {
        Ok(sessions) => sessions,
        Err(error) => return error.into_response(),
    };
    let rows: Vec<Value> = sessions
        .into_iter()
        .map(|session| {
            context! {
                id => session.id,
                current => session.current,
                created => session.created_at,
                last_active => session.last_active_at,
                ip => session.client_ip.unwrap_or_else(|| "-".into()),
                user_agent => session.user_agent.unwrap_or_else(|| "-".into()),
            }
        })
        .collect();
    page(
        &app,
        &auth,
        &browser,
        StatusCode::OK,
        "sessions.html",
        context! { sessions => rows },
    )
    .await
}

/// `POST /sessions/{id}/revoke`.
pub async fn revoke_session(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    RequireFresh(_): RequireFresh<User>,
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<Button>,
) -> Response {
    match crate::sessions::flows::revoke_session(&auth, &id).await {
        Ok(true) => {
            let _ = flash(auth.session(), FlashLevel::Success, "Session revoked.").await;
            Redirect::to("/sessions").into_response()
        }
        Ok(false) => error_page(&app, StatusCode::NOT_FOUND, "No such session."),
        Err(error) => error.into_response(),
    }
}

/// `POST /sessions/revoke-others` (form; a fresh login is checked by the caller).
pub async fn revoke_other_sessions(
    auth: AuthSession<User>,
    RequireFresh(_): RequireFresh<User>,
    CheckedForm(_): CheckedForm<Button>,
) -> Response {
    match crate::sessions::flows::revoke_other_sessions(&auth).await {
        Ok(count) => {
            let _ = flash(
                auth.session(),
                FlashLevel::Success,
                format!("{count} other session(s) logged out."),
            )
            .await;
            Redirect::to("/sessions").into_response()
        }
        Err(error) => error.into_response(),
    }
}
