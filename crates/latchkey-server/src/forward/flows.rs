//! Forward authentication: the original request as a proxy describes it, and the rules'
//! answer for the session (or bearer token) it carries.

use crate::factors::second_factor::ServerFactors;
use crate::web::state::AppState;
use axum::http::{HeaderMap, HeaderName, Method};
use latchkey::access_rules::{normalize_path, Decision, Request, Visitor};
use latchkey::{AuthError, AuthSession, SecondFactorSource, User};

/// The request a proxy holds, as it described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The host as sent, lower case, with its port if any (for the URL sent back).
    pub authority: String,
    /// How long the host is, at the start of `authority`.
    host_len: usize,
    /// The path and query as sent.
    pub uri: String,
    /// The method, upper case.
    pub method: Method,
}

/// The headers a proxy describes the original request in (names made once: looking one
/// up by text would parse the name each time).
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");

/// A header's text, if present and readable.
fn header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

impl Original {
    /// From nginx's `X-Original-URL` (absolute) and `X-Original-Method`.
    pub fn from_nginx(headers: &HeaderMap) -> Result<Self, &'static str> {
        let url = header(headers, &X_ORIGINAL_URL).ok_or("no X-Original-URL")?;
        // nginx passes a raw `#` or backslash on to the app in `$request_uri`; the URL
        // parser would drop what follows a `#` and turn a backslash into `/`, so the rules
        // would judge another path than the app serves.
        if url.bytes().any(|byte| matches!(byte, b'#' | b'\\')) {
            return Err("X-Original-URL holds a # or a backslash");
        }
        let url = url::Url::parse(url).map_err(|_| "X-Original-URL is not an absolute URL")?;
        // `http://admin.example.com:x@status.example.com/` is the admin app to a proxy that
        // read the host from the text before the colon, and `status` to the URL parser.
        if !url.username().is_empty() || url.password().is_some() {
            return Err("X-Original-URL has a user name or password");
        }
        let method = header(headers, &X_ORIGINAL_METHOD).unwrap_or("GET");
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
        let scheme = header(headers, &X_FORWARDED_PROTO).ok_or("no X-Forwarded-Proto")?;
        let host = header(headers, &X_FORWARDED_HOST).ok_or("no X-Forwarded-Host")?;
        let uri = header(headers, &X_FORWARDED_URI).unwrap_or("/");
        let method = header(headers, &X_FORWARDED_METHOD).unwrap_or("GET");
        Self::new(scheme, host, uri, method)
    }

    fn new(scheme: &str, authority: &str, uri: &str, method: &str) -> Result<Self, &'static str> {
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            "https"
        } else if scheme.eq_ignore_ascii_case("http") {
            "http"
        } else {
            return Err("the scheme is not http or https");
        };
        let authority = authority.trim().to_ascii_lowercase();
        let host_len = host_length(&authority).ok_or("the host is not a host name and port")?;
        if !uri.starts_with('/') {
            return Err("a path that does not start with /");
        }
        // Upper case, as the rules name methods: a `post` must meet a rule about POST.
        let method = if method.bytes().any(|byte| byte.is_ascii_lowercase()) {
            Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        } else {
            Method::from_bytes(method.as_bytes())
        }
        .map_err(|_| "not a method")?;
        Ok(Original {
            scheme,
            authority,
            host_len,
            uri: uri.to_string(),
            method,
        })
    }

    /// The host, lower case, without a port.
    pub fn host(&self) -> &str {
        &self.authority[..self.host_len]
    }

    /// The URL the browser asked for.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.uri)
    }
}

/// How long the host is in `authority` (lower case): a host name of letters, digits and
/// `-` in labels joined by `.`, then perhaps `:` and a port; `None` for anything else.
/// A proxy routes on the host as it reads it, and the rules must judge the same host:
/// `admin.example.com:.example.com` would be the admin app to the proxy and match
/// `*.example.com` here, were anything but digits allowed after the colon.
fn host_length(authority: &str) -> Option<usize> {
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    };
    let port_ok = port.is_none_or(|port| {
        (1..=5).contains(&port.len())
            && port.bytes().all(|byte| byte.is_ascii_digit())
            && port.parse::<u16>().is_ok()
    });
    (host.len() <= 253 && host.split('.').all(label) && port_ok).then_some(host.len())
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
    /// A `two_factor` rule, and the user has no second factor: how to set one up.
    SetUpSecondFactor,
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
        host: original.host(),
        path: &path,
        method: original.method.as_str(),
    };
    let user = auth.current_user().await?;
    let (decision, rule) = match user {
        None => rules.decide(&request, None),
        Some(user) => {
            // A personal token goes only where its scopes let it: by the app's method
            // and path, not by this question's (always a GET to latchkey). Beyond them
            // it proves nobody: through where nobody needs a login, refused elsewhere.
            if let Some(token) = auth.access_token() {
                let allowed = auth.authenticator().token_scopes().is_some_and(|scopes| {
                    scopes.allows(&token.scopes, original.method.as_str(), &path)
                });
                if !allowed {
                    return Ok(match rules.decide(&request, None).0 {
                        Decision::Allow => Verdict::Allow(None),
                        _ => Verdict::Forbidden("this token's scopes do not allow it"),
                    });
                }
            }
            let groups = if rules.names_groups() {
                app.groups.groups_of(user.id).await?
            } else {
                Vec::new()
            };
            // Asked only where a two_factor rule may need it.
            let asks_two_factor = rules.asks_two_factor();
            let second_factor_now = asks_two_factor && auth.has_second_factor().await?;
            let has_second_factor = second_factor_now
                || (asks_two_factor
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
                return Ok(Verdict::Allow(Some((user, groups))));
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
        Decision::SetUpSecondFactor => Verdict::SetUpSecondFactor,
        Decision::Forbidden => {
            tracing::info!(target: "latchkey::audit", event = "forward_refused", host = %original.host(), rule = ?line, "forward_refused");
            Verdict::Forbidden("not allowed")
        }
    })
}
