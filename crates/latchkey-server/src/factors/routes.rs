//! The second factors' and passkeys' paths the pages and the JSON API share, and the JSON-only ones.

use crate::web::json::{answer, JsonBody};
use crate::web::page::NextQuery;
use crate::web::state::AppState;
use crate::web::submission::{Bodiless, SameSiteJson, Submission};
use crate::web::throttling::ClientIp;
use crate::{factors::api as factor_api, factors::pages as factor_pages, factors::passkey_api};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use latchkey::axum::{BrowserCsrf, RequireFresh, RequireLogin};
use latchkey::{AuthSession, User};

/// `POST /login/second-factor`.
pub async fn second_step(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    query: Query<NextQuery>,
    submission: Submission<factor_pages::CodeForm, factor_api::CodeBody>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            factor_pages::second_step(app, ip, auth, browser, query, input).await
        }
        Submission::Json(body) => {
            answer(factor_api::second_step(app, ip, auth, JsonBody(body)).await)
        }
    }
}

/// `POST /account/totp` (a fresh login is needed either way).
pub async fn begin_totp(
    app: State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
    headers: HeaderMap,
    submission: Bodiless<factor_pages::EmptyForm>,
) -> Response {
    match submission {
        Bodiless::Form(_) => factor_pages::begin_totp(app, auth, browser, RequireFresh(user)).await,
        Bodiless::Json => answer(factor_api::begin_totp(app, headers, RequireFresh(user)).await),
    }
}

/// `POST /account/totp/confirm`.
pub async fn confirm_totp(
    app: State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireLogin(user): RequireLogin<User>,
    submission: Submission<factor_pages::CodeForm, factor_api::CodeBody>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            factor_pages::confirm_totp(app, auth, browser, RequireLogin(user), input).await
        }
        Submission::Json(body) => {
            answer(factor_api::confirm_totp(app, auth, RequireLogin(user), JsonBody(body)).await)
        }
    }
}

/// `DELETE /account/totp` (JSON; forms use `POST /account/totp/remove`).
pub async fn remove_totp(
    app: State<AppState>,
    auth: AuthSession<User>,
    ip: ClientIp,
    fresh: RequireFresh<User>,
    SameSiteJson(body): SameSiteJson<factor_api::CodeBody>,
) -> Response {
    answer(factor_api::remove_totp(app, auth, ip, fresh, JsonBody(body)).await)
}

/// `POST /account/recovery-codes` (a fresh login is needed either way).
pub async fn regenerate_recovery_codes(
    app: State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
    headers: HeaderMap,
    submission: Bodiless<factor_pages::EmptyForm>,
) -> Response {
    match submission {
        Bodiless::Form(_) => {
            factor_pages::regenerate_recovery_codes(app, auth, browser, RequireFresh(user)).await
        }
        Bodiless::Json => {
            answer(factor_api::regenerate_recovery_codes(app, headers, RequireFresh(user)).await)
        }
    }
}

/// `POST /account/passkeys/finish` (JSON, after the cross-site check).
pub async fn finish_passkey_registration(
    app: State<AppState>,
    auth: AuthSession<User>,
    login: RequireLogin<User>,
    SameSiteJson(body): SameSiteJson<passkey_api::RegisterBody>,
) -> Response {
    answer(passkey_api::finish_registration(app, auth, login, JsonBody(body)).await)
}

/// `PATCH /account/passkeys/{id}` (JSON, after the cross-site check).
pub async fn rename_passkey(
    app: State<AppState>,
    login: RequireLogin<User>,
    id: axum::extract::Path<String>,
    SameSiteJson(body): SameSiteJson<passkey_api::RenameBody>,
) -> Response {
    answer(passkey_api::rename(app, login, id, JsonBody(body)).await)
}

/// `POST /login/passkey/finish` (JSON, after the cross-site check).
pub async fn finish_passkey_sign_in(
    app: State<AppState>,
    auth: AuthSession<User>,
    SameSiteJson(body): SameSiteJson<passkey_api::AssertionBody>,
) -> Response {
    answer(passkey_api::finish_sign_in(app, auth, JsonBody(body)).await)
}

/// `POST /login/second-factor/passkey/finish` (JSON, after the cross-site check).
pub async fn finish_passkey_second_factor(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    SameSiteJson(body): SameSiteJson<passkey_api::AssertionBody>,
) -> Response {
    answer(passkey_api::finish_second_factor(app, ip, auth, JsonBody(body)).await)
}
