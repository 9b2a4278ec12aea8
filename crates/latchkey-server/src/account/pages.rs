//! The account page (template `account.html`: the address and its change form, the
//! second factors, the passkeys).

use crate::web::page::page;
use crate::web::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey::axum::{BrowserCsrf, RequireLogin};
use latchkey::{AuthSession, User};
use minijinja::context;

/// `GET /account` (browser): the account, its address and the email change form.
pub async fn account_page(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireLogin(user): RequireLogin<User>,
) -> Response {
    let account = match crate::account::flows::account(&app, &user).await {
        Ok(account) => account,
        Err(error) => return error.into_response(),
    };
    let passkeys: Vec<minijinja::Value> = match crate::factors::passkeys::list(&app, user.id).await
    {
        Ok(passkeys) => passkeys
            .into_iter()
            .map(|stored| {
                context! {
                    id => stored.id,
                    name => stored.name,
                    created_at => crate::web::for_people::rfc3339(stored.created_at),
                    last_used_at => stored.last_used_at.map(crate::web::for_people::rfc3339),
                }
            })
            .collect(),
        Err(crate::factors::passkeys::PasskeyError::Failed(error)) => return error.into_response(),
        Err(_) => Vec::new(),
    };
    let connected: Vec<String> = match crate::providers::flows::identities(&app, &user).await {
        Ok(identities) => identities
            .into_iter()
            .map(|identity| identity.provider)
            .collect(),
        Err(error) => return error.into_response(),
    };
    let fresh = auth.is_fresh().await.unwrap_or(false);
    let extra = context! {
        email => account.email,
        email_verified => account.email_verified,
        created_at => account.created_at,
        fresh => fresh,
        totp => account.second_factors.contains(&"totp"),
        passkeys => passkeys,
        recovery_codes_left => account.recovery_codes_left,
        groups => account.groups,
        connected => connected,
    };
    page(&app, &auth, &browser, StatusCode::OK, "account.html", extra).await
}
