//! The paths the pages and the JSON API share: each reads its submission one way
//! ([`Submission`]: a form with its CSRF token checked, or JSON after the cross-site
//! check) and answers in the kind it was asked, a page for a form and JSON for JSON; a
//! `GET` goes by `Accept`. The only module that knows both, so neither ever calls the
//! other.

use crate::pages;
use crate::web::json::JsonBody;
use crate::web::page::NextQuery;
use crate::web::state::AppState;
use crate::web::submission::{Bodiless, SameSiteJson, Submission};
use crate::web::throttling::ClientIp;
use crate::{
    api, factors::api as factor_api, factors::pages as factor_pages, factors::passkey_api,
    mail::api as mail_api, mail::pages as mail_pages, web::headers,
};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use latchkey::axum::{wants_html, BrowserCsrf, RequireFresh, RequireLogin, WantsHtml};
use latchkey::{AuthSession, User};

/// `POST /signup`.
pub async fn signup(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<pages::SignupForm, api::SignupRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => pages::signup(app, ip, auth, browser, input).await,
        Submission::Json(body) => api::signup(app, ip, JsonBody(body)).await.into_response(),
    }
}

/// `POST /login`.
pub async fn login(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    query: Query<NextQuery>,
    submission: Submission<pages::LoginForm, api::LoginRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => pages::login(app, ip, auth, browser, query, input).await,
        Submission::Json(body) => api::login(app, ip, auth, JsonBody(body))
            .await
            .into_response(),
    }
}

/// `POST /logout` (a logout also asks the browser to clear its cached pages).
pub async fn logout(auth: AuthSession<User>, submission: Bodiless<pages::CsrfForm>) -> Response {
    match submission {
        Bodiless::Form(_) => pages::logout(auth).await,
        Bodiless::Json => headers::clear_site_data(api::logout(auth).await.into_response()),
    }
}

/// `GET|POST /home`: the greeting, as a page for browsers and JSON otherwise.
pub async fn home(visit: HomeVisit) -> Response {
    match visit {
        HomeVisit::Json(user) => api::home(RequireLogin(user)).await,
        // Boxed: the page's future is large, and the JSON answer should not carry it.
        HomeVisit::Page(app, auth, browser) => Box::pin(pages::home_page(app, auth, browser)).await,
    }
}

/// What `/home` needs, read by one extractor: the JSON answer (the hot path) takes no
/// handle on the server's state or the CSRF cookie.
pub enum HomeVisit {
    /// A logged-in client that wants JSON: the user to greet.
    Json(User),
    /// A logged-in browser: what the page is made from.
    Page(AppState, AuthSession<User>, BrowserCsrf),
}

impl FromRequestParts<AppState> for HomeVisit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let RequireLogin(user) = RequireLogin::<User>::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        if !wants_html(&parts.headers) {
            return Ok(HomeVisit::Json(user));
        }
        let auth = AuthSession::<User>::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let browser = BrowserCsrf::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(HomeVisit::Page(*app, auth, browser))
    }
}

/// `GET /sessions`: the page for browsers, `{"sessions": [...]}` otherwise.
pub async fn sessions(
    app: State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    WantsHtml(html): WantsHtml,
    login: RequireLogin<User>,
) -> Response {
    if html {
        return pages::sessions_page(app, auth, browser, login).await;
    }
    api::sessions(auth).await.into_response()
}

/// `POST /sessions/revoke-others` (a fresh login is needed either way).
pub async fn revoke_other_sessions(
    auth: AuthSession<User>,
    RequireFresh(_): RequireFresh<User>,
    submission: Bodiless<pages::CsrfForm>,
) -> Response {
    match submission {
        Bodiless::Form(_) => pages::revoke_other_sessions(auth).await,
        Bodiless::Json => api::revoke_other_sessions(auth).await.into_response(),
    }
}

/// `POST /password` (a fresh login is needed either way).
pub async fn change_password(
    app: State<AppState>,
    auth: AuthSession<User>,
    ip: ClientIp,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
    submission: Submission<pages::PasswordForm, api::PasswordChange>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            pages::change_password(app, auth, ip, browser, user, input).await
        }
        Submission::Json(body) => {
            api::change_password(app, auth, ip, RequireFresh(user), JsonBody(body))
                .await
                .into_response()
        }
    }
}

/// Unknown paths: a page for browsers, JSON otherwise.
pub async fn not_found(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        return pages::not_found_page(&app);
    }
    api::not_found().await.into_response()
}

/// `POST /password/forgot`.
pub async fn forgot_password(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::EmailForm, mail_api::EmailRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::forgot(app, ip, auth, browser, input).await,
        Submission::Json(body) => answer(mail_api::forgot_password(app, ip, JsonBody(body)).await),
    }
}

/// `POST /password/reset`.
pub async fn reset_password(
    app: State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::ResetForm, mail_api::ResetRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::reset(app, auth, browser, input).await,
        Submission::Json(body) => answer(mail_api::reset_password(app, auth, JsonBody(body)).await),
    }
}

/// `POST /login/email`.
pub async fn sign_in_by_mail(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::EmailForm, mail_api::EmailRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::sign_in_by_mail(app, ip, auth, browser, input).await,
        Submission::Json(body) => answer(mail_api::sign_in_by_mail(app, ip, JsonBody(body)).await),
    }
}

/// `POST /login/email/verify`.
pub async fn sign_in_with_code(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::CodeForm, mail_api::CodeRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            mail_pages::sign_in_with_code(app, ip, auth, browser, input).await
        }
        Submission::Json(body) => {
            answer(mail_api::sign_in_with_code(app, ip, auth, JsonBody(body)).await)
        }
    }
}

/// `POST /login/email/confirm`.
pub async fn sign_in_with_link(
    app: State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::TokenForm, mail_api::TokenRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::sign_in_with_link(app, auth, browser, input).await,
        Submission::Json(body) => {
            answer(mail_api::sign_in_with_link(app, auth, JsonBody(body)).await)
        }
    }
}

/// `POST /email/verify`.
pub async fn verify_email(
    app: State<AppState>,
    auth: AuthSession<User>,
    submission: Submission<mail_pages::TokenForm, mail_api::TokenRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::verify(app, auth, input).await,
        Submission::Json(body) => answer(mail_api::verify_email(app, auth, JsonBody(body)).await),
    }
}

/// `POST /email/verify/resend`.
pub async fn resend_verification(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<mail_pages::EmailForm, mail_api::EmailRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            mail_pages::resend_verification(app, ip, auth, browser, input).await
        }
        Submission::Json(body) => {
            answer(mail_api::resend_verification(app, ip, JsonBody(body)).await)
        }
    }
}

/// `GET /account`: the page for browsers, the JSON account otherwise.
pub async fn account(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    WantsHtml(html): WantsHtml,
    RequireLogin(user): RequireLogin<User>,
) -> Response {
    if html {
        return mail_pages::account_page(app, auth, browser, user).await;
    }
    api::account(State(app), RequireLogin(user))
        .await
        .into_response()
}

/// `POST /account/email` (a fresh login is needed either way).
pub async fn change_email(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    RequireFresh(user): RequireFresh<User>,
    submission: Submission<mail_pages::EmailForm, mail_api::EmailRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            mail_pages::change_email(app, ip, auth, RequireFresh(user), input).await
        }
        Submission::Json(body) => {
            answer(mail_api::change_email(app, ip, RequireFresh(user), JsonBody(body)).await)
        }
    }
}

/// `POST /account/email/confirm`.
pub async fn confirm_email_change(
    app: State<AppState>,
    auth: AuthSession<User>,
    submission: Submission<mail_pages::TokenForm, mail_api::TokenRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => mail_pages::confirm_email_change(app, auth, input).await,
        Submission::Json(body) => {
            answer(mail_api::confirm_email_change(app, auth, JsonBody(body)).await)
        }
    }
}

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

/// A JSON handler's outcome as a response.
fn answer(outcome: Result<Response, crate::web::json::HandlerError>) -> Response {
    outcome.into_response()
}
