//! The password change: the page (template `password.html`).

use crate::password::flows::PasswordChangeError;
use crate::web::page::page;
use crate::web::state::AppState;
use crate::web::submission::CheckedForm;
use crate::web::throttling::{too_many_message, with_retry_after, ClientIp};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey::axum::{BrowserCsrf, RequireFresh};
use latchkey::flash::{flash, FlashLevel};
use latchkey::{AuthSession, User};
use minijinja::context;
use serde::Deserialize;

/// `GET /password` (fresh login required).
#[utoipa::path(get, path = "/password", tag = "pages", responses(
    (status = 200, description = "The password change page (a fresh login is needed)", content_type = "text/html", body = String),
    (status = 303, description = "A browser that must log in (again) is sent to the login page"),
    (status = 401, description = "Not logged in, or the login is not fresh", body = crate::web::json::ErrorBody),
    (status = 403, description = "Asked with a bearer token (no token changes a password)", body = crate::web::json::ErrorBody),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn password_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
) -> Response {
    let extra =
        context! { min_password => app.policy.min_chars, has_password => user.has_password() };
    page(
        &app,
        &auth,
        &browser,
        StatusCode::OK,
        "password.html",
        extra,
    )
    .await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: Option<String>,
    new: Option<String>,
    confirm: Option<String>,
}

/// `POST /password` (form; a fresh login is needed): checks the current
/// password, sets the new one, ends every other session and remembered device.
pub async fn change_password(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    ip: ClientIp,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
    CheckedForm(input): CheckedForm<PasswordForm>,
) -> Response {
    let again = |status: StatusCode, error: String| {
        let extra = context! {
            error => error,
            min_password => app.policy.min_chars,
            has_password => user.has_password(),
        };
        let (auth, browser) = (&auth, &browser);
        async move { page(&app, auth, browser, status, "password.html", extra).await }
    };
    let current = input.current.unwrap_or_default();
    let new = input.new.unwrap_or_default();
    if input.confirm.as_deref() != Some(new.as_str()) {
        return again(
            StatusCode::BAD_REQUEST,
            "The two passwords do not match.".into(),
        )
        .await;
    }
    match crate::password::flows::change_password(&app, &auth, ip, &user, &current, &new).await {
        Ok(()) => {}
        Err(PasswordChangeError::Throttled(wait)) => {
            return with_retry_after(
                again(StatusCode::TOO_MANY_REQUESTS, too_many_message(wait)).await,
                wait,
            )
        }
        Err(PasswordChangeError::WrongCurrent) => {
            return again(
                StatusCode::FORBIDDEN,
                "The current password is wrong.".into(),
            )
            .await
        }
        Err(PasswordChangeError::Policy(message)) => {
            return again(StatusCode::BAD_REQUEST, message).await
        }
        Err(PasswordChangeError::Failed(error)) => return error.into_response(),
    }
    let _ = flash(
        auth.session(),
        FlashLevel::Success,
        "Your password has been changed.",
    )
    .await;
    Redirect::to("/home").into_response()
}
