//! The HTML side of second factors: the login's second step, setting up an
//! authenticator app (with its QR code drawn on the server), recovery codes, removal;
//! over [`crate::factors::second_factor`].

use crate::factors::second_factor::{self, CodeCheck, SecondStep};
use crate::web::page::{error_page, page, page_leading_to, Button, Destination, NextQuery};
use crate::web::state::AppState;
use crate::web::submission::CheckedForm;
use crate::web::throttling::{too_many_message, with_retry_after, ClientIp};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey::axum::{BrowserCsrf, RequireFresh, RequireLogin};
use latchkey::flash::{flash, FlashLevel};
use latchkey::{AuthSession, User};
use minijinja::context;
use serde::Deserialize;

/// A form of one code.
#[derive(Deserialize)]
pub struct CodeForm {
    code: Option<String>,
}

/// `POST /login/second-factor` (form): completes the login and goes on to `next`.
pub async fn second_step(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<NextQuery>,
    CheckedForm(input): CheckedForm<CodeForm>,
) -> Response {
    let next = query.destination(&app);
    let code = input.code.unwrap_or_default();
    let again = |status: StatusCode, error: String| {
        let (app, auth, browser, next) = (&app, &auth, &browser, next.as_ref());
        async move { second_step_page(app, auth, browser, status, next, Some(error)).await }
    };
    match second_factor::complete(&app, ip, &auth, &code).await {
        Ok(SecondStep::LoggedIn(_)) => {
            Redirect::to(Destination::or_home(next.as_ref())).into_response()
        }
        Ok(SecondStep::Wrong) => again(StatusCode::UNAUTHORIZED, "Wrong code.".into()).await,
        Ok(SecondStep::Throttled(wait)) => with_retry_after(
            again(StatusCode::TOO_MANY_REQUESTS, too_many_message(wait)).await,
            wait,
        ),
        Ok(SecondStep::NothingPending) => {
            let _ = flash(
                auth.session(),
                FlashLevel::Error,
                "That login took too long; log in again.",
            )
            .await;
            Redirect::to("/login").into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// The QR code of `text` as inline SVG (drawn here: no image leaves the server).
fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000"))
        .light_color(qrcode::render::svg::Color("#fff"))
        .build();
    // Inline in the page: without the XML declaration.
    Some(match svg.find("<svg") {
        Some(start) => svg[start..].to_string(),
        None => svg,
    })
}

/// `POST /account/totp` (form; a fresh login is checked by the caller): the new secret
/// as a QR code and as text, and the form that confirms a code from it.
pub async fn begin_totp(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
    CheckedForm(_): CheckedForm<Button>,
) -> Response {
    match second_factor::begin_totp(&app, &user).await {
        Ok(Some(setup)) => {
            let extra = context! {
                secret => setup.secret,
                otpauth_uri => setup.otpauth_uri.clone(),
                qr_svg => qr_svg(&setup.otpauth_uri),
            };
            page(&app, &auth, &browser, StatusCode::OK, "totp.html", extra).await
        }
        Ok(None) => error_page(
            &app,
            StatusCode::CONFLICT,
            "An authenticator app is already set up; remove it first.",
        ),
        Err(error) => error.into_response(),
    }
}

/// `POST /account/totp/confirm` (form): enables the app and shows the recovery codes.
pub async fn confirm_totp(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireLogin(user): RequireLogin<User>,
    CheckedForm(input): CheckedForm<CodeForm>,
) -> Response {
    let code = input.code.unwrap_or_default();
    match second_factor::confirm_totp(&app, &auth, &user, &code).await {
        Ok(Some(codes)) => {
            let extra = context! { recovery_codes => codes, enabled => true };
            page(&app, &auth, &browser, StatusCode::OK, "recovery_codes.html", extra).await
        }
        Ok(None) => error_page(
            &app,
            StatusCode::BAD_REQUEST,
            "Wrong code. Set up the app again from your account page and type the code it shows now.",
        ),
        Err(error) => error.into_response(),
    }
}

/// `POST /account/totp/remove` (form; a fresh login and a code).
pub async fn remove_totp(
    State(app): State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    RequireFresh(user): RequireFresh<User>,
    CheckedForm(input): CheckedForm<CodeForm>,
) -> Response {
    let code = input.code.unwrap_or_default();
    let (level, message) = match second_factor::remove(&app, &auth, ip, &user, &code).await {
        Ok(CodeCheck::Right) => (FlashLevel::Success, "Two-step login is off.".to_string()),
        Ok(CodeCheck::Wrong) => (
            FlashLevel::Error,
            "Wrong code: nothing changed.".to_string(),
        ),
        Ok(CodeCheck::Throttled(wait)) => (FlashLevel::Error, too_many_message(wait)),
        Err(error) => return error.into_response(),
    };
    match flash(auth.session(), level, message).await {
        Ok(()) => Redirect::to("/account").into_response(),
        Err(error) => error.into_response(),
    }
}

/// `POST /account/recovery-codes` (form; a fresh login is checked by the caller).
pub async fn regenerate_recovery_codes(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    RequireFresh(user): RequireFresh<User>,
    CheckedForm(_): CheckedForm<Button>,
) -> Response {
    match second_factor::status(&app, user.id).await {
        Ok(status) if status.totp => {}
        Ok(_) => {
            return error_page(
                &app,
                StatusCode::CONFLICT,
                "No authenticator app is set up.",
            )
        }
        Err(error) => return error.into_response(),
    }
    match second_factor::regenerate_recovery_codes(&app, &user).await {
        Ok(codes) => {
            let extra = context! { recovery_codes => codes, enabled => false };
            page(
                &app,
                &auth,
                &browser,
                StatusCode::OK,
                "recovery_codes.html",
                extra,
            )
            .await
        }
        Err(error) => error.into_response(),
    }
}

/// `GET /login/second-factor`: the second step's page, for a login that waits for its
/// second factor or a logged-in session that lacks one (where a `two_factor` access rule
/// sends it, `rd` the app's URL). A user already past it goes on to the destination; a
/// user with no second factor to the account page to set one up; nobody logged in to
/// the login page.
#[utoipa::path(get, path = "/login/second-factor", tag = "pages", responses(
    (status = 200, description = "The second step's page (a login waits for its second factor, or the logged-in session lacks one)", content_type = "text/html", body = String),
    (status = 303, description = "Nothing to complete here: on to `rd` or `next`, to the account page (no second factor set up), or to the login page"),
    (status = 503, description = "A store is unavailable", body = crate::web::json::ErrorBody),
))]
pub async fn second_step_form(
    State(app): State<AppState>,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = query.destination(&app);
    let state = async {
        let waits = second_factor::second_step_user(&app, &auth)
            .await?
            .is_some();
        let logged_in = auth.current_user().await?.is_some();
        Ok::<_, latchkey::AuthError>((waits, logged_in, auth.has_second_factor().await?))
    };
    match state.await {
        Ok((true, _, _)) => {
            second_step_page(&app, &auth, &browser, StatusCode::OK, next.as_ref(), None).await
        }
        Ok((false, true, true)) => {
            Redirect::to(Destination::or_home(next.as_ref())).into_response()
        }
        Ok((false, true, false)) => Redirect::to("/account").into_response(),
        Ok((false, false, _)) => Redirect::to(&login_then(next.as_ref())).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The login page, going on to `next` afterwards.
fn login_then(next: Option<&Destination>) -> String {
    match next {
        Some(next) => format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(next.as_str().as_bytes()).collect::<String>()
        ),
        None => "/login".to_string(),
    }
}

/// The second-step page of a login that waits for its second factor, or of a logged-in
/// session stepping up.
pub async fn second_step_page(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    status: StatusCode,
    next: Option<&Destination>,
    error: Option<String>,
) -> Response {
    let waits_seconds = auth.authenticator().second_step_window().as_secs();
    let step_up = matches!(auth.pending_sign_in().await, Ok(None));
    let extra = context! { error => error, waits_seconds => waits_seconds, step_up => step_up };
    page_leading_to(
        app,
        auth,
        browser,
        status,
        "second_factor.html",
        extra,
        next,
    )
    .await
}
