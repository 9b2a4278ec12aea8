//! Sign-up, login, home and logout: the paths the pages and the JSON API share.

use crate::web::headers;
use crate::web::json::JsonBody;
use crate::web::page::NextQuery;
use crate::web::state::AppState;
use crate::web::submission::{Bodiless, Submission};
use crate::web::throttling::ClientIp;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use latchkey::axum::{wants_html, BrowserCsrf, RequireLogin};
use latchkey::{AuthSession, User};

/// `POST /signup`.
pub async fn signup(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    submission: Submission<crate::login::pages::SignupForm, crate::login::api::SignupRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => crate::login::pages::signup(app, ip, auth, browser, input).await,
        Submission::Json(body) => crate::login::api::signup(app, ip, JsonBody(body))
            .await
            .into_response(),
    }
}

/// `POST /login`.
pub async fn login(
    app: State<AppState>,
    ip: ClientIp,
    auth: AuthSession<User>,
    browser: BrowserCsrf,
    query: Query<NextQuery>,
    submission: Submission<crate::login::pages::LoginForm, crate::login::api::LoginRequest>,
) -> Response {
    match submission {
        Submission::Form(input) => {
            crate::login::pages::login(app, ip, auth, browser, query, input).await
        }
        Submission::Json(body) => crate::login::api::login(app, ip, auth, JsonBody(body))
            .await
            .into_response(),
    }
}

/// `POST /logout` (a logout also asks the browser to clear its cached pages).
pub async fn logout(
    auth: AuthSession<User>,
    submission: Bodiless<crate::login::pages::CsrfForm>,
) -> Response {
    match submission {
        Bodiless::Form(_) => crate::login::pages::logout(auth).await,
        Bodiless::Json => {
            headers::clear_site_data(crate::login::api::logout(auth).await.into_response())
        }
    }
}

/// `GET|POST /home`: the greeting, as a page for browsers and JSON otherwise.
pub async fn home(visit: HomeVisit) -> Response {
    match visit {
        HomeVisit::Json(user) => crate::login::api::home(RequireLogin(user)).await,
        // Boxed: the page's future is large, and the JSON answer should not carry it.
        HomeVisit::Page(app, auth, browser) => {
            Box::pin(crate::login::pages::home_page(app, auth, browser)).await
        }
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
