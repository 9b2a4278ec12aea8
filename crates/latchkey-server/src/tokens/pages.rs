//! Personal access tokens: the page (template `tokens.html`), where a new token is
//! shown once with a copy button.

use crate::tokens::flows::{self, TokenRequest};
use crate::web::page::{error_page, page, Button};
use crate::web::state::AppState;
use crate::web::submission::CheckedForm;
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey::axum::{BrowserCsrf, RequireFresh, RequireLogin};
use latchkey::flash::{flash, FlashLevel};
use latchkey::{AuthSession, User};
use minijinja::{context, Value};
use serde::Deserialize;

/// The new-token form.
#[derive(Deserialize)]
pub struct CreateTokenForm {
    /// Its name.
    pub name: String,
    /// `read` or `write` (write includes read).
    pub access: String,
    /// Days it lives.
    pub expires_in_days: u32,
}

/// The page, with `created` (a token just made) or the form's error and input.
async fn render(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    user: &User,
    status: StatusCode,
    extra: Value,
) -> Response {
    let tokens = match flows::tokens(app, user).await {
        Ok(tokens) => tokens,
        Err(error) => return error.into_response(),
    };
    let fresh = match auth.is_fresh().await {
        Ok(fresh) => fresh,
        Err(error) => return error.into_response(),
    };
    let mut response = page(
        app,
        auth,
        browser,
        status,
        "tokens.html",
        context! { tokens => tokens, fresh => fresh, ..extra },
    )
    .await;
    // A page that may show a token is never kept by a cache.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /account/tokens`: the user's tokens, and a form to make one.
pub async fn tokens_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireLogin(user): RequireLogin<User>,
) -> Response {
    render(&app, &auth, &browser, &user, StatusCode::OK, context! {}).await
}

/// `POST /account/tokens` (form): makes a token and shows it once.
pub async fn create_token(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
    CheckedForm(form): CheckedForm<CreateTokenForm>,
) -> Response {
    let scopes = match form.access.as_str() {
        "write" => vec!["read".to_string(), "write".to_string()],
        _ => vec!["read".to_string()],
    };
    let request = TokenRequest {
        name: form.name.clone(),
        scopes,
        expires_in_days: Some(form.expires_in_days),
        never_expires: false,
    };
    match flows::create(&app, &user, request).await {
        Ok(Ok(created)) => {
            let extra = context! { created => created };
            render(&app, &auth, &browser, &user, StatusCode::CREATED, extra).await
        }
        Ok(Err((_, message))) => {
            let extra = context! { error => message, name => form.name };
            render(&app, &auth, &browser, &user, StatusCode::BAD_REQUEST, extra).await
        }
        Err(error) => error.into_response(),
    }
}

/// `POST /account/tokens/{id}/revoke` (form).
pub async fn revoke_token(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    RequireFresh(user): RequireFresh<User>,
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<Button>,
) -> Response {
    match flows::revoke(&app, &user, &id).await {
        Ok(true) => {
            let _ = flash(auth.session(), FlashLevel::Success, "Token revoked.").await;
            Redirect::to("/account/tokens").into_response()
        }
        Ok(false) => error_page(&app, StatusCode::NOT_FOUND, "No such token."),
        Err(error) => error.into_response(),
    }
}
