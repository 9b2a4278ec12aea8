//! The one way an endpoint reads what a client submitted: an HTML form (urlencoded, its
//! CSRF token checked) or a JSON body (refused when sent by another site, or not JSON),
//! the content type deciding. The endpoint gets the parsed form or body, and answers
//! in the kind it was asked: a page for a form, JSON for JSON.

use crate::web::json::{refuse_cross_site_or_not_json, JsonBody};
use crate::web::page::{is_form, read_form, CsrfField};
use crate::web::state::{AppState, MAX_BODY_BYTES};
use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use latchkey::axum::BrowserCsrf;
use latchkey::{AuthSession, User};
use serde::de::DeserializeOwned;

/// A submission to an endpoint that takes both a form `F` and a JSON body `J`. Its
/// rejection is the answer already: the 403 page for a form without a good CSRF token,
/// the JSON 4xx for a cross-site, non-JSON or malformed body.
pub enum Submission<F, J> {
    /// A form from one of this site's pages, its CSRF token checked.
    Form(F),
    /// A JSON body, after the cross-site and content-type checks.
    Json(J),
}

impl<F, J> FromRequest<AppState> for Submission<F, J>
where
    F: DeserializeOwned + CsrfField + Send,
    J: DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Response> {
        if is_form(request.headers()) {
            return checked_form(request, app).await.map(Submission::Form);
        }
        same_site_json(request, app).await.map(Submission::Json)
    }
}

/// A submission to an endpoint that needs no fields: a form `F` (its CSRF token
/// checked), or a request for JSON with no body (or a JSON one), not sent by another
/// site.
pub enum Bodiless<F> {
    /// A form from one of this site's pages, its CSRF token checked.
    Form(F),
    /// A JSON request, after the cross-site and content-type checks.
    Json,
}

impl<F> FromRequest<AppState> for Bodiless<F>
where
    F: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Response> {
        if is_form(request.headers()) {
            return checked_form(request, app).await.map(Bodiless::Form);
        }
        match refuse_cross_site_or_not_json(app, request.headers()) {
            Some(refused) => Err(refused),
            None => Ok(Bodiless::Json),
        }
    }
}

/// A JSON body for an endpoint that takes JSON only, after the cross-site and
/// content-type checks; the JSON 4xx otherwise.
pub struct SameSiteJson<J>(pub J);

impl<J: DeserializeOwned + Send> FromRequest<AppState> for SameSiteJson<J> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Response> {
        same_site_json(request, app).await.map(SameSiteJson)
    }
}

/// A form for an endpoint that takes forms only, its CSRF token checked; the rejection
/// page otherwise.
pub struct CheckedForm<F>(pub F);

impl<F: DeserializeOwned + CsrfField + Send> FromRequest<AppState> for CheckedForm<F> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Response> {
        checked_form(request, app).await.map(CheckedForm)
    }
}

/// The JSON body of `request` after the cross-site and content-type checks; the JSON
/// 4xx otherwise.
async fn same_site_json<J: DeserializeOwned>(
    request: Request,
    app: &AppState,
) -> Result<J, Response> {
    if let Some(refused) = refuse_cross_site_or_not_json(app, request.headers()) {
        return Err(refused);
    }
    JsonBody::<J>::from_request(request, app)
        .await
        .map(|JsonBody(body)| body)
        .map_err(IntoResponse::into_response)
}

/// The form of `request`, its CSRF token checked against the session or the browser's
/// cookie; the rejection page otherwise.
async fn checked_form<F>(request: Request, app: &AppState) -> Result<F, Response>
where
    F: DeserializeOwned + CsrfField + Send,
{
    let (mut parts, body) = request.into_parts();
    let auth = AuthSession::<User>::from_request_parts(&mut parts, app)
        .await
        .map_err(IntoResponse::into_response)?;
    let browser = BrowserCsrf::from_request_parts(&mut parts, app)
        .await
        .map_err(IntoResponse::into_response)?;
    read_form(app, &auth, &browser, Request::from_parts(parts, body)).await
}

/// `handler` with the request body limit ([`MAX_BODY_BYTES`]): only the routes that
/// read a body carry it.
pub fn limited<H, T>(handler: H) -> impl Handler<T, AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    handler.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
