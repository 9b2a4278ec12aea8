//! The one way an endpoint reads what a client submitted: a page handler takes a
//! [`CheckedForm`] (urlencoded, its CSRF token checked), a JSON handler a [`SameSiteJson`]
//! body or, with no body, [`SameSite`] (refused when another site sent it, or when it is
//! not JSON). [`crate::web::kinds`] picks which of an endpoint's two handlers reads it.

use crate::web::json::{refuse_cross_site_or_not_json, JsonBody};
use crate::web::page::read_form;
use crate::web::state::{AppState, MAX_BODY_BYTES};
use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use latchkey::axum::BrowserCsrf;
use latchkey::{AuthSession, User};
use serde::de::DeserializeOwned;

/// A JSON request that submits no body (or a JSON one it does not read), not sent by
/// another site: the JSON 403 or 415 otherwise. What a bodiless JSON endpoint
/// (`POST /logout`, say) checks before it changes anything.
pub struct SameSite;

impl FromRequestParts<AppState> for SameSite {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        match refuse_cross_site_or_not_json(app, &parts.headers) {
            Some(refused) => Err(refused),
            None => Ok(SameSite),
        }
    }
}

/// A JSON body, after the cross-site and content-type checks; the JSON 4xx otherwise.
pub struct SameSiteJson<J>(pub J);

impl<J: DeserializeOwned + Send> FromRequest<AppState> for SameSiteJson<J> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Response> {
        same_site_json(request, app).await.map(SameSiteJson)
    }
}

/// A form from one of this site's pages, its CSRF token checked; the rejection page
/// otherwise.
pub struct CheckedForm<F>(pub F);

impl<F: DeserializeOwned + Send> FromRequest<AppState> for CheckedForm<F> {
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
    F: DeserializeOwned + Send,
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
