//! What every page stands on: rendering a template with who is logged in, the CSRF token
//! and the flash messages; the error page; reading a form with its CSRF token checked;
//! the `?next=` of the login pages.

use crate::web::headers::FormLeadsTo;
use crate::web::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey::axum::BrowserCsrf;
use latchkey::flash::take_flashes;
use latchkey::{AuthError, AuthSession, User};
use minijinja::{context, Value};
use serde::de::DeserializeOwned;
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
        providers => app.providers.list.iter().map(|provider| context! {
            name => provider.client.name(),
            label => provider.label.clone(),
        }).collect::<Vec<_>>(),
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
    page_leading_to(app, auth, browser, status, name, extra, None).await
}

/// [`page`] for a page whose form goes on to `next` after its submission (a login
/// page): `next` is in the context, and when it is an app, the answer's
/// Content-Security-Policy lets the form lead there.
pub async fn page_leading_to(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    status: StatusCode,
    name: &str,
    extra: Value,
    next: Option<&Destination>,
) -> Response {
    match base_context(app, auth, browser).await {
        Ok(base) => {
            let context = match next {
                Some(next) => {
                    let next = context! { next => next.as_str() };
                    context! { ..next, ..extra, ..base }
                }
                None => context! { ..extra, ..base },
            };
            let mut response = app.templates.render(status, name, context);
            browser.set_cookie(&mut response);
            if let Some(leads_to) = next.and_then(Destination::form_leads_to) {
                response.extensions_mut().insert(leads_to);
            }
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

/// The form of a POST whose CSRF token checked out; the rejection page otherwise. The
/// token is read from the same body as the fields `F` (which need not name it): a
/// malformed body is a 400, a missing or wrong token a 403, before `F` is used.
pub async fn read_form<F: DeserializeOwned>(
    app: &AppState,
    auth: &AuthSession<User>,
    browser: &BrowserCsrf,
    request: Request,
) -> Result<F, Response> {
    if !is_form(request.headers()) {
        let message = "Form requests must have `Content-Type: application/x-www-form-urlencoded`";
        return Err(error_page(app, StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
    }
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| error_page(app, rejection.status(), &rejection.body_text()))?;
    let malformed = |error: serde_urlencoded::de::Error| {
        let message = format!("Failed to deserialize form body: {error}");
        error_page(app, StatusCode::BAD_REQUEST, &message)
    };
    let fields: F = serde_urlencoded::from_bytes(&body).map_err(malformed)?;
    let CsrfToken { csrf_token } = serde_urlencoded::from_bytes(&body).map_err(malformed)?;
    check_csrf(app, auth, browser, csrf_token.as_deref()).await?;
    Ok(fields)
}

/// The CSRF token field every form of this site's pages carries.
#[derive(Deserialize)]
struct CsrfToken {
    csrf_token: Option<String>,
}

/// The fields of a form that submits nothing but its CSRF token: a button.
#[derive(Deserialize)]
pub struct Button {}

/// `?next=` of the login pages, or `?rd=` (what forward authentication sends a browser
/// to the login page with: the URL of the app it wanted).
#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    rd: Option<String>,
}

impl NextQuery {
    /// The path to go to after the login, if it is a safe one (same site).
    pub fn next(&self) -> Option<&str> {
        self.next.as_deref().and_then(latchkey::redirect::safe_next)
    }

    /// Where to go after the login: a safe path of this site, or the URL of an app the
    /// access rules protect, over a scheme they name (`rd`, or a `next` carrying one
    /// through the second step); `None`: `/home`.
    pub fn destination(&self, app: &AppState) -> Option<Destination> {
        if let Some(next) = self.next() {
            return Some(Destination(Place::Here(next.to_string())));
        }
        Destination::checked(app, self.rd.as_deref().or(self.next.as_deref())?)
    }
}

/// Where a login goes on to: only what [`NextQuery::destination`] or
/// [`Destination::here`] allowed (it cannot be made otherwise).
#[derive(Debug, Clone)]
pub struct Destination(Place);

#[derive(Debug, Clone)]
enum Place {
    /// A path of this site.
    Here(String),
    /// The URL of an app the access rules protect.
    App(url::Url),
}

impl Destination {
    /// `next`, if it is a safe path of this site.
    pub fn here(next: &str) -> Option<Destination> {
        let path = latchkey::redirect::safe_next(next)?;
        Some(Destination(Place::Here(path.to_string())))
    }

    /// `wanted`, if it is a safe path of this site or the URL of an app the access rules
    /// protect, over a scheme they name (checked again where a destination comes back
    /// from elsewhere: a provider's sign-in carries it through the provider).
    pub fn checked(app: &AppState, wanted: &str) -> Option<Destination> {
        if let Some(here) = Destination::here(wanted) {
            return Some(here);
        }
        let forward = app.forward.as_ref()?;
        let allowed = latchkey::access_rules::return_to(wanted, &forward.rules())?;
        let app_url = url::Url::parse(&allowed).ok()?;
        Some(Destination(Place::App(app_url)))
    }

    /// The path or URL, for a redirect or a form's `next`.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Place::Here(path) => path,
            Place::App(url) => url.as_str(),
        }
    }

    /// Where to go: this, else `/home`.
    pub fn or_home(destination: Option<&Destination>) -> &str {
        destination.map_or(latchkey::redirect::DEFAULT_AFTER_LOGIN, Destination::as_str)
    }

    /// The origin a form must be allowed to lead to for the browser to follow it here:
    /// an app's (a scheme, a host name and a port, checked again as it goes into a
    /// header); `None` for a path of this site.
    fn form_leads_to(&self) -> Option<FormLeadsTo> {
        let Place::App(url) = &self.0 else {
            return None;
        };
        let origin = url.origin().ascii_serialization();
        let plain = origin
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-.:/".contains(&byte));
        (url.origin().is_tuple() && plain).then_some(FormLeadsTo(origin))
    }
}
