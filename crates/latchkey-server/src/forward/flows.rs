//! Forward authentication: the original request as a proxy describes it, and the rules'
//! answer for the session (or bearer token) it carries.

use crate::factors::second_factor::ServerFactors;
use crate::web::state::AppState;
use axum::http::HeaderMap;
use latchkey::access_rules::{normalize_path, Decision, Request, Visitor};
use latchkey::{AuthError, AuthSession, SecondFactorSource, User};

/// The request a proxy holds, as it described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// `http` or `https`.
    pub scheme: String,
    /// The host, lower case, without a port.
    pub host: String,
    /// The host as sent, with its port if any (for the URL sent back).
    pub authority: String,
    /// The path and query as sent.
    pub uri: String,
    /// The method, upper case.
    pub method: String,
}

/// A header's text, if present and readable.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

impl Original {
    /// From nginx's `X-Original-URL` (absolute) and `X-Original-Method`.
    pub fn from_nginx(headers: &HeaderMap) -> Result<Self, &'static str> {
        let url = header(headers, "x-original-url").ok_or("no X-Original-URL")?;
        let url = url::Url::parse(url).map_err(|_| "X-Original-URL is not an absolute URL")?;
        let method = header(headers, "x-original-method").unwrap_or("GET");
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let mut uri = url.path().to_string();
        if let Some(query) = url.query() {
            uri.push('?');
            uri.push_str(query);
        }
        Self::new(url.scheme(), &authority, &uri, method)
    }

    /// From `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri` (Caddy, Traefik).
    pub fn from_forwarded(headers: &HeaderMap) -> Result<Self, &'static str> {
        let scheme = header(headers, "x-forwarded-proto").ok_or("no X-Forwarded-Proto")?;
        let host = header(headers, "x-forwarded-host").ok_or("no X-Forwarded-Host")?;
        let uri = header(headers, "x-forwarded-uri").unwrap_or("/");
        let method = header(headers, "x-forwarded-method").unwrap_or("GET");
        Self::new(scheme, host, uri, method)
    }

    fn new(scheme: &str, authority: &str, uri: &str, method: &str) -> Result<Self, &'static str> {
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err("the scheme is not http or https");
        }
        let authority = authority.trim().to_ascii_lowercase();
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => host,
            _ => authority.as_str(),
        }
        .to_string();
        if host.is_empty() || !uri.starts_with('/') {
            return Err("no host, or a path that does not start with /");
        }
        Ok(Original {
            scheme,
            host,
            authority,
            uri: uri.to_string(),
            method: method.to_ascii_uppercase(),
        })
    }

    /// The URL the browser asked for.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.uri)
    }
}

/// The rules' answer.
pub enum Verdict {
    /// Through, as this user (with their groups); `None` for a bypass nobody logged in to.
    Allow(Option<(User, Vec<String>)>),
    /// Nobody is logged in and the rule needs someone: the login page with `rd`.
    LogIn,
    /// The rule needs a second factor this session's login lacks and the user has one:
    /// the second step's page with `rd`.
    SecondStep,
    /// Refused: why, for the page or the log.
    Forbidden(&'static str),
}

/// What the rules say of `original`, for the session (or bearer token) of `auth`.
pub async fn check(
    app: &AppState,
    auth: &AuthSession<User>,
    original: &Original,
) -> Result<Verdict, AuthError> {
    let Some(forward) = &app.forward else {
        return Ok(Verdict::Forbidden(
            "forward authentication is not configured",
        ));
    };
    let rules = forward.rules();
    let Some(path) = normalize_path(&original.uri) else {
        return Ok(Verdict::Forbidden("an ambiguous path"));
    };
    let request = Request {
        host: &original.host,
        path: &path,
        method: &original.method,
    };
    let user = auth.current_user().await?;
    let (decision, rule) = match &user {
        None => rules.decide(&request, None),
        Some(user) => {
            let groups = if rules.names_groups() {
                app.groups.groups_of(user.id).await?
            } else {
                Vec::new()
            };
            let second_factor_now = auth.has_second_factor().await?;
            // Asked of the store only where a two_factor rule may need it.
            let has_second_factor = second_factor_now
                || (rules.asks_two_factor()
                    && !ServerFactors(*app)
                        .second_factors(&user.id.to_string())
                        .await?
                        .is_empty());
            let visitor = Visitor {
                username: &user.username,
                groups: &groups,
                second_factor_now,
                has_second_factor,
            };
            let (decision, rule) = rules.decide(&request, Some(&visitor));
            if decision == Decision::Allow {
                return Ok(Verdict::Allow(Some((user.clone(), groups))));
            }
            (decision, rule)
        }
    };
    let line = rule.map(|rule| rule.line());
    Ok(match decision {
        Decision::Allow => Verdict::Allow(None),
        Decision::LogIn => Verdict::LogIn,
        Decision::SecondStep if auth.access_token().is_some() => Verdict::Forbidden(
            "this app needs a login completed with a second factor, which a token is not",
        ),
        Decision::SecondStep => Verdict::SecondStep,
        Decision::SetUpSecondFactor => Verdict::Forbidden(
            "this app needs two-step login: set up an authenticator app or a passkey on your account page",
        ),
        Decision::Forbidden => {
            tracing::info!(target: "latchkey::audit", event = "forward_refused", host = %original.host, rule = ?line, "forward_refused");
            Verdict::Forbidden("not allowed")
        }
    })
}
