//! What every page stands on: rendering a template with who is logged in, the CSRF token
//! and the flash messages; the error page; reading a form with its CSRF token checked;
//! the `?next=` of the login pages.

use crate::web::state::AppState;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use latchkey::axum::BrowserCsrf;
use latchkey::flash::take_flashes;
use latchkey::{AuthError, AuthSession, User};
use minijinja::{context, Value};
use serde::Deserialize;

/// What every page needs: who is logged in, the CSRF token, pending flash messages.
/// Reads the session; writes nothing unless a flash message was waiting.
async fn base_context(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
) -> Result<Value, AuthError> {
    let user = auth.current_user().await?;
    let token = app.csrf.form_token(auth.session(), browser.nonce()).await?;
    let flashes = take_flashes(auth.session()).await?;
    Ok(context! {
        username => user.map(|user| user.username),
        csrf_token => token,
        passkeys_on => app.passkeys.is_some(),
        flashes => flashes.iter().map(|flash| context! {
            level => serde_json::to_value(flash.level).ok().and_then(|level| level.as_str().map(str::to_string)),
            message => flash.message.clone(),
        }).collect::<Vec<_>>(),
    })
}

/// Renders a page with the base context merged with `extra`; gives the browser its CSRF
/// cookie if it has none yet.
pub async fn page(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    status: StatusCode,
    name: &str,
    extra: Value,
) -> Response {
    match base_context(app, auth, browser).await {
        Ok(base) => {
            let mut response = app
                .templates
                .render(status, name, context! { ..extra, ..base });
            browser.set_cookie(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// An error page (HTML).
pub fn error_page(app: &AppState, status: StatusCode, message: &str) -> Response {
    app.templates.render(
        status,
        "error.html",
        context! { status => status.as_u16(), message => message, flashes => Vec::<Value>::new() },
    )
}

/// Whether the request body is an HTML form (urlencoded).
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}

/// Checks the form's CSRF token; the 403 page if it is missing or wrong.
async fn check_csrf(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    submitted: Option<&str>,
) -> Result<(), Response> {
    match app
        .csrf
        .verify(auth.session(), browser.sent(), submitted)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => {
            latchkey::audit_refusal!("csrf_refused");
            Err(error_page(
                app,
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this site. Go back, reload the page and try again.",
            ))
        }
        Err(error) => Err(error.into_response()),
    }
}

/// A form field set that carries the CSRF token.
pub trait CsrfField {
    /// The submitted token.
    fn csrf_token(&self) -> Option<&str>;
}

/// The form of a POST whose CSRF token checked out; the rejection page otherwise.
pub async fn read_form<F: serde::de::DeserializeOwned + CsrfField>(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    request: Request,
) -> Result<F, Response> {
    let input: F = form(app, request).await?;
    check_csrf(app, auth, browser, input.csrf_token()).await?;
    Ok(input)
}

async fn form<T: serde::de::DeserializeOwned>(
    app: &AppState,
    request: Request,
) -> Result<T, Response> {
    match Form::<T>::from_request(request, &()).await {
        Ok(Form(value)) => Ok(value),
        Err(rejection) => Err(error_page(
            app,
            StatusCode::BAD_REQUEST,
            &rejection.body_text(),
        )),
    }
}

/// `?next=` of the login pages.
#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

impl NextQuery {
    /// The path to go to after the login, if it is a safe one (same site).
    pub fn next(&self) -> Option<&str> {
        self.next.as_deref().and_then(latchkey::redirect::safe_next)
    }
}
