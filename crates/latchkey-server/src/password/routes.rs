//! The password change: the path the page and the JSON API share.

use crate::web::json::JsonBody;
use crate::web::state::AppState;
use crate::web::submission::Submission;
use crate::web::throttling::ClientIp;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use latchkey::axum::{BrowserCsrf, RequireFresh};
use latchkey::{AuthSession, User};

/// `POST /password` (a fresh login is needed either way).
pub async fn change_password(
    app: State<AppState>,
    auth: AuthSession<User>,
    ip: ClientIp,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
    submission: Submission<
        crate::password::pages::PasswordForm,
        crate::password::api::PasswordChange,
    >,
) -> Response {
    match submission {
        Submission::Form(input) => {
            crate::password::pages::change_password(app, auth, ip, browser, user, input).await
        }
        Submission::Json(body) => {
            crate::password::api::change_password(app, auth, ip, RequireFresh(user), JsonBody(body))
                .await
                .into_response()
        }
    }
}
