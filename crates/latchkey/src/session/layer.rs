//! The tower layer that gives every request a lazily loaded [`Session`] and saves it
//! after the handler ran.

use super::config::SessionConfig;
use super::handle::{ClientInfo, CookieChange, Session, SessionContext, SessionError};
use super::storage::{ServerSide, SessionStorage};
use super::store::{NewSessionPolicy, SessionStore};
use axum::extract::ConnectInfo;
use cookie::Cookie;
use http::header::{COOKIE, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Adds a [`Session`] to every request's extensions and saves it once the inner service
/// has answered: compare-and-swap when data changed, a throttled idle-expiry refresh
/// otherwise, and `Set-Cookie` only when the cookie must change.
///
/// ```no_run
/// use latchkey::{store::MemoryStore, SessionConfig, SessionLayer};
/// let app: axum::Router = axum::Router::new()
///     .layer(SessionLayer::new(MemoryStore::new(), SessionConfig::insecure_for_local_development()));
/// ```
///
/// Logins sit on top of it: see [`crate::AuthLayer`].
#[derive(Clone)]
pub struct SessionLayer {
    /// What every request's session shares, behind one pointer: each request clones the
    /// layer once.
    context: Arc<SessionContext>,
}

impl SessionLayer {
    /// A layer over the server-side `store` with `config`: the cookie holds a token.
    pub fn new(store: impl SessionStore, config: SessionConfig) -> Self {
        Self::from_arc(Arc::new(store), config)
    }

    /// A layer over a server-side store that is already shared.
    pub fn from_arc(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self::with_storage(ServerSide(store), config)
    }

    /// A layer over any [`SessionStorage`]: for example the encrypted cookie store
    /// (`latchkey::store::CookieStore`), which keeps each session in its cookie.
    pub fn with_storage(storage: impl SessionStorage, config: SessionConfig) -> Self {
        SessionLayer {
            context: Arc::new(SessionContext::new(Arc::new(storage), Arc::new(config))),
        }
    }

    /// Asks `policy` before storing any new session (for example a cap per client
    /// address); a refusal answers 429 with `Retry-After`.
    pub fn with_new_session_policy(self, policy: impl NewSessionPolicy) -> Self {
        let mut context =
            SessionContext::new(self.context.storage.clone(), self.context.config.clone());
        context.admission = Some(Arc::new(policy));
        SessionLayer {
            context: Arc::new(context),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an inner service.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SessionFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let context = &self.layer.context;
        let cookie = request_cookie(request.headers(), &context.cookie_name);
        let bearer = context
            .config
            .bearer_tokens()
            .then(|| authorization_bearer(request.headers()))
            .flatten();
        let client = client_info(&request);
        let (token, is_bearer) = match (cookie, bearer) {
            (Some(_), Some(_)) => {
                // Two credentials: which one is meant cannot be guessed safely.
                let session = Session::with_context(context.clone(), None, client, false);
                return SessionFuture {
                    inner: None,
                    session,
                    committing: None,
                    refused: Some(json_answer(StatusCode::BAD_REQUEST, BOTH_CREDENTIALS)),
                };
            }
            (None, Some(bearer)) => (Some(bearer), true),
            (cookie, None) => (cookie, false),
        };
        let session = Session::with_context(context.clone(), token, client, is_bearer);
        request.extensions_mut().insert(session.clone());
        SessionFuture {
            inner: Some(self.inner.call(request)),
            session,
            committing: None,
            refused: None,
        }
    }
}

/// A commit in progress: the response waits for the store write.
type Committing<B> = (
    Response<B>,
    Pin<Box<dyn Future<Output = Result<CookieChange, SessionError>> + Send>>,
);

pin_project! {
    /// The response future of [`SessionService`]: runs the inner service, then commits
    /// the session. A request that changed nothing finishes without another await or
    /// allocation; only a store write is boxed.
    pub struct SessionFuture<F, B> {
        #[pin]
        inner: Option<F>,
        session: Session,
        committing: Option<Committing<B>>,
        // The answer when the request was refused before the inner service saw it.
        refused: Option<Response<B>>,
    }
}

impl<F, B, E> Future for SessionFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(refused) = this.refused.take() {
            return Poll::Ready(Ok(refused));
        }
        loop {
            if let Some((response, mut commit)) = this.committing.take() {
                return match commit.as_mut().poll(cx) {
                    Poll::Pending => {
                        *this.committing = Some((response, commit));
                        Poll::Pending
                    }
                    Poll::Ready(Ok(change)) => {
                        Poll::Ready(Ok(with_cookie(this.session, response, change)))
                    }
                    Poll::Ready(Err(error)) => Poll::Ready(Ok(store_failure_response(&error))),
                };
            }
            let Some(inner) = this.inner.as_mut().as_pin_mut() else {
                // Refused above, and answered: never polled again.
                return Poll::Pending;
            };
            let response = match inner.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(response)) => response,
            };
            // A failed handler's half-done changes are not saved.
            let settled = if response.status().is_server_error() {
                Some(this.session.cookie_state())
            } else {
                this.session.settled()
            };
            if let Some(change) = settled {
                // The common answer: no cookie to send.
                if change == CookieChange::Keep {
                    return Poll::Ready(Ok(response));
                }
                return Poll::Ready(Ok(with_cookie(this.session, response, change)));
            }
            // The store must be written: poll the commit next, and never the inner
            // future again.
            let session = this.session.clone();
            *this.committing = Some((response, Box::pin(async move { session.commit().await })));
        }
    }
}

/// The `error` of the 400 for a request with both a session cookie and a bearer token.
pub(crate) const BOTH_CREDENTIALS: &str =
    "send a session cookie or an Authorization bearer token, not both";

/// The token of the request's `Authorization: Bearer <token>` header (the scheme in any
/// letter case), as bytes: any value after the scheme counts, readable or not, so that
/// every reader of the header (the session layer, a cross-site check) agrees on whether
/// a request carries a bearer token. A session token or an access token is ASCII; any
/// other value is refused as a token, never taken for no token.
pub fn authorization_bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    let token = value[7..].trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// The `error` of a 429 for a refused new session.
pub(crate) const REFUSED_MESSAGE: &str = "too many new sessions from this address, try again later";

/// Adds the `Set-Cookie` header the session cookie calls for: the value the storage
/// gave (a token, or with the cookie store the sealed session), or its removal.
fn with_cookie<B>(
    session: &Session,
    mut response: Response<B>,
    change: CookieChange,
) -> Response<B> {
    // A bearer session's token travels in answers' bodies, never in a cookie.
    if session.is_bearer() {
        return response;
    }
    let context = session.context();
    match change {
        CookieChange::Keep => {}
        CookieChange::Set(value) => {
            append_cookie(&mut response, context.config.session_cookie(value))
        }
        CookieChange::Remove => {
            let mut removal = context.config.session_cookie(String::new());
            removal.make_removal();
            append_cookie(&mut response, removal)
        }
    }
    response
}

/// The value of the first cookie named `name` in the `Cookie` headers, without its
/// optional double quotes. Bytes, not text: a session token is checked character by
/// character as it is decoded anyway.
///
/// Read here rather than with the `cookie` crate's `Cookie::split_parse` (which builds
/// the `Set-Cookie` headers): the crate trims names, so `id =x` would read as the
/// session cookie, and on `GET /home` it cost 29,007 instructions a request against
/// 26,554 with this reader (callgrind, `bench/callgrind.sh`, 2026-12-06).
pub fn request_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    for header in headers.get_all(COOKIE) {
        let mut rest = header.as_bytes();
        while !rest.is_empty() {
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            let pair = rest[..end].trim_ascii();
            rest = rest.get(end + 1..).unwrap_or_default();
            let Some(equals) = memchr::memchr(b'=', pair) else {
                continue;
            };
            if &pair[..equals] == name.as_bytes() {
                return Some(unquoted(&pair[equals + 1..]));
            }
        }
    }
    None
}

/// A cookie value without its optional double quotes.
fn unquoted(value: &[u8]) -> &[u8] {
    value
        .strip_prefix(b"\"")
        .and_then(|inner| inner.strip_suffix(b"\""))
        .unwrap_or(value)
}

/// The peer (axum's `ConnectInfo`, if the server records it) and user agent.
fn client_info<B>(request: &Request<B>) -> ClientInfo {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| *address);
    ClientInfo {
        ip: peer.map(|address| address.ip()),
        user_agent: request
            .headers()
            .get(USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(str::to_string),
    }
}

/// Appends `Set-Cookie: cookie` to the response.
pub(crate) fn append_cookie<B>(response: &mut Response<B>, cookie: Cookie<'static>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.encoded().to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// 503 when the store is down or too contended, 429 when the new-session policy said
/// no, 413 when the session would be too large, 500 for anything else; never a panic, never a half-saved login.
fn store_failure_response<B: From<String>>(error: &SessionError) -> Response<B> {
    if let SessionError::Refused(wait) = error {
        let mut response = json_answer(StatusCode::TOO_MANY_REQUESTS, REFUSED_MESSAGE);
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return response;
    }
    let (status, message) = if error.is_unavailable() {
        tracing::warn!(%error, "session store unavailable");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "session store unavailable, try again shortly",
        )
    } else if error.is_too_large() {
        tracing::warn!(%error, "session too large to save");
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "session data too large to save",
        )
    } else {
        tracing::error!(%error, "session save failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "session could not be saved",
        )
    };
    json_answer(status, message)
}

/// A JSON answer `{"error": message}` with `status`.
fn json_answer<B: From<String>>(status: StatusCode, message: &str) -> Response<B> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::request_cookie;
    use http::HeaderMap;

    fn text(value: &[u8]) -> String {
        String::from_utf8_lossy(value).into_owned()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(http::header::COOKIE, value.parse().expect("header"));
        }
        headers
    }

    #[test]
    fn finds_the_named_cookie_only() {
        let found = |values: &[&str]| request_cookie(&headers(values), "id").map(text);
        assert_eq!(found(&["id=abc"]), Some("abc".into()));
        assert_eq!(found(&["xid=1; id2=2;  id=abc ; z=3"]), Some("abc".into()));
        assert_eq!(found(&["a=1", "b=2; id=\"abc\""]), Some("abc".into()));
        assert_eq!(found(&["id=first; id=second"]), Some("first".into()));
        assert_eq!(found(&["id=a=b"]), Some("a=b".into()));
        assert_eq!(found(&["xid=1; id2=2; id =3"]), None);
        assert_eq!(found(&["other; ;; =2"]), None);
        assert_eq!(found(&[]), None);
    }
}
