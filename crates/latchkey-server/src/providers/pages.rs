//! Sign-in with other identity providers: the browser's side. The login page's buttons
//! lead to `GET /login/oidc/{name}`, which sends the browser to the provider with the
//! flow cookie; the provider sends it back to `GET /login/oidc/{name}/callback`. The
//! account page connects (`POST /account/identities/{name}/connect`) and disconnects
//! (`POST /account/identities/{name}/disconnect`) providers.

use crate::factors::pages::second_step_page;
use crate::providers::flows::{self, Arrival, DisconnectError};
use crate::web::page::{error_page, Button, Destination, NextQuery};
use crate::web::state::AppState;
use crate::web::submission::CheckedForm;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey::axum::{BrowserCsrf, RequireFresh};
use latchkey::flash::{flash, FlashLevel};
use latchkey::oidc::{Callback, OidcError, FLOW_LIFETIME};
use latchkey::session::request_cookie;
use latchkey::{AuthSession, User};

/// The flow cookie: the sealed state of one sign-in, between the two steps.
const FLOW_COOKIE: &str = "latchkey_oidc";

/// The flow cookie's path: the callbacks are under it.
const FLOW_PATH: &str = "/login/oidc";

/// `Set-Cookie` for the flow `value` (empty and expired: the cookie cleared).
fn flow_cookie(app: &AppState, value: Option<&str>) -> HeaderValue {
    let secure = if app.mail.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let (value, max_age) = match value {
        Some(value) => (value, FLOW_LIFETIME.as_secs()),
        None => ("", 0),
    };
    let cookie = format!(
        "{FLOW_COOKIE}={value}; Path={FLOW_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    );
    // The sealed value is base64url and the rest is ours: a valid header value.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A 303 to `location` with the flow cookie set to `flow` (or cleared).
fn go(app: &AppState, location: &str, flow: Option<&str>) -> Response {
    let mut response = Redirect::to(location).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, flow_cookie(app, flow));
    response
}

/// `GET /login/oidc/{name}`: to the provider, with where to go afterwards (a safe `next`,
/// or an app's `rd` the access rules allow) kept for the return.
pub async fn start(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<NextQuery>,
) -> Response {
    let Some(provider) = app.providers.get(&name) else {
        return error_page(&app, StatusCode::NOT_FOUND, "No such sign-in provider.");
    };
    let next = query.destination(&app);
    match provider
        .client
        .begin(next.as_ref().map(Destination::as_str), None)
    {
        Ok(begun) => go(&app, &begun.authorize_url, Some(&begun.flow)),
        Err(error) => {
            tracing::error!(provider = %name, %error, "sign-in could not start");
            error_page(
                &app,
                StatusCode::SERVICE_UNAVAILABLE,
                "This provider cannot be used right now.",
            )
        }
    }
}

/// `POST /account/identities/{name}/connect` (form; a fresh login is needed): to the
/// provider, to connect it to this account.
pub async fn connect(
    State(app): State<AppState>,
    RequireFresh(user): RequireFresh<User>,
    Path(name): Path<String>,
    CheckedForm(_): CheckedForm<Button>,
) -> Response {
    let Some(provider) = app.providers.get(&name) else {
        return error_page(&app, StatusCode::NOT_FOUND, "No such sign-in provider.");
    };
    match provider
        .client
        .begin(Some("/account"), Some(&user.id.to_string()))
    {
        Ok(begun) => go(&app, &begun.authorize_url, Some(&begun.flow)),
        Err(error) => {
            tracing::error!(provider = %name, %error, "connection could not start");
            error_page(
                &app,
                StatusCode::SERVICE_UNAVAILABLE,
                "This provider cannot be used right now.",
            )
        }
    }
}

/// What a person reads when a callback fails.
fn failure_message(provider: &str, error: &OidcError) -> String {
    match error {
        OidcError::Refused(_) => format!("{provider} did not sign you in."),
        OidcError::Expired | OidcError::NoFlow => {
            "The sign-in took too long or was started in another browser: try again.".into()
        }
        OidcError::Mismatch(_) | OidcError::Invalid(_) => {
            format!("The answer from {provider} could not be checked: try again.")
        }
        OidcError::Unavailable(_) | OidcError::Misconfigured(_) => {
            format!("{provider} cannot be reached right now: try again later.")
        }
    }
}

/// `GET /login/oidc/{name}/callback`: the provider's answer, checked against this
/// browser's flow; then the sign-in, the second step, or the connection.
pub async fn callback(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Path(name): Path<String>,
    Query(answer): Query<Callback>,
    headers: HeaderMap,
) -> Response {
    let Some(provider) = app.providers.get(&name) else {
        return error_page(&app, StatusCode::NOT_FOUND, "No such sign-in provider.");
    };
    let flow =
        request_cookie(&headers, FLOW_COOKIE).and_then(|value| std::str::from_utf8(value).ok());
    let identity = match provider.client.finish(flow, &answer).await {
        Ok(identity) => identity,
        Err(error) => {
            tracing::warn!(target: "latchkey::audit", event = "provider_sign_in_refused", provider = %name, %error, "provider_sign_in_refused");
            let message = failure_message(&provider.label, &error);
            return flash_and_go(&app, &auth, FlashLevel::Error, &message, "/login").await;
        }
    };
    let arrival = match flows::arrive(&app, &auth, identity).await {
        Ok(arrival) => arrival,
        Err(error) => return error.into_response(),
    };
    match arrival {
        Arrival::LoggedIn { next } => {
            let next = next
                .as_deref()
                .and_then(|next| Destination::checked(&app, next));
            go(&app, Destination::or_home(next.as_ref()), None)
        }
        Arrival::SecondFactorRequired { next } => {
            let next = next
                .as_deref()
                .and_then(|next| Destination::checked(&app, next));
            let mut page =
                second_step_page(&app, &auth, &browser, StatusCode::OK, next.as_ref(), None).await;
            page.headers_mut()
                .append(header::SET_COOKIE, flow_cookie(&app, None));
            page
        }
        Arrival::Connected => {
            let message = format!("{} is connected: it can sign you in.", provider.label);
            flash_and_go(&app, &auth, FlashLevel::Success, &message, "/account").await
        }
        Arrival::Refused(message) => {
            let to = if auth.current_user().await.ok().flatten().is_some() {
                "/account"
            } else {
                "/login"
            };
            flash_and_go(&app, &auth, FlashLevel::Error, &message, to).await
        }
    }
}

/// A flash message, then a 303 to `to`; the flow cookie cleared.
async fn flash_and_go(
    app: &AppState,
    auth: &AuthSession<User>,
    level: FlashLevel,
    message: &str,
    to: &str,
) -> Response {
    if let Err(error) = flash(auth.session(), level, message).await {
        return error.into_response();
    }
    go(app, to, None)
}

/// `POST /account/identities/{name}/disconnect` (form; a fresh login is needed).
pub async fn disconnect(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    RequireFresh(user): RequireFresh<User>,
    Path(name): Path<String>,
    CheckedForm(_): CheckedForm<Button>,
) -> Response {
    let (level, message) = match flows::disconnect(&app, &auth, &user, &name).await {
        Ok(()) => (FlashLevel::Success, format!("{name} is disconnected.")),
        Err(DisconnectError::NotConnected) => {
            (FlashLevel::Error, format!("{name} is not connected."))
        }
        Err(DisconnectError::LastWayIn) => (
            FlashLevel::Error,
            format!("{name} is your only way to sign in: set a password or add a passkey first."),
        ),
        Err(DisconnectError::Failed(error)) => return error.into_response(),
    };
    flash_and_go(&app, &auth, level, &message, "/account").await
}
