//! The tower layer that puts auth on top of the session layer.

use super::request::{BearerAccessToken, RememberCookie, RequestAuth};
use super::Authenticator;
use crate::access_token::{TokenRefusal, PREFIX, TOKEN_LEN};
use crate::session::layer::{append_cookie, authorization_bearer, request_cookie};
use crate::session::Session;
use crate::user::AuthUser;
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The remember-me cookie's name: `__Host-remember` over https, `remember` otherwise.
pub fn remember_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-remember"
    } else {
        "remember"
    }
}

/// Put in the extensions of an answer to a request whose bearer credential (a personal
/// access token, a bearer session's token) was refused, with the reason: what a server
/// counts toward its per-address throttle of guesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedBearer(pub TokenRefusal);

/// Gives every request the [`Authenticator`] (so [`crate::auth::AuthSession`] and the guards of
/// `latchkey::axum` work), reads the remember-me cookie, and sends it back when a login
/// issued, rotated or forgot it. Goes inside the [`crate::session::SessionLayer`]:
///
/// ```no_run
/// use latchkey::{store::MemoryStore, AuthLayer, Authenticator, SessionConfig, SessionLayer};
/// # fn app(users: latchkey::PasswordBackend<latchkey::SqliteUserStore>) -> axum::Router {
/// axum::Router::new()
///     // .route(...)
///     .layer(AuthLayer::new(Authenticator::new(users)))
///     .layer(SessionLayer::new(MemoryStore::new(), SessionConfig::default()))
/// # }
/// ```
pub struct AuthLayer<U> {
    authenticator: Authenticator<U>,
}

impl<U> Clone for AuthLayer<U> {
    fn clone(&self) -> Self {
        AuthLayer {
            authenticator: self.authenticator.clone(),
        }
    }
}

impl<U: AuthUser> AuthLayer<U> {
    /// A layer handing every request `authenticator`.
    pub fn new(authenticator: Authenticator<U>) -> Self {
        AuthLayer { authenticator }
    }
}

impl<S, U> Layer<S> for AuthLayer<U> {
    type Service = AuthService<S, U>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around an inner service.
pub struct AuthService<S, U> {
    inner: S,
    authenticator: Authenticator<U>,
}

impl<S: Clone, U> Clone for AuthService<S, U> {
    fn clone(&self) -> Self {
        AuthService {
            inner: self.inner.clone(),
            authenticator: self.authenticator.clone(),
        }
    }
}

impl<S, U, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S, U>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    U: AuthUser,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = AuthFuture<S::Future, U>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let session = request.extensions().get::<Session>().cloned();
        // Without a session layer outside, extractors refuse the request (500 naming
        // the missing layer); the secure cookie name is the safe guess meanwhile.
        let secure = session
            .as_ref()
            .is_none_or(|session| session.config().secure());
        let bearer = session.as_ref().is_some_and(Session::is_bearer);
        // A bearer request's remember-me cookie is not read: its credential is the
        // bearer token alone (the session layer refused one with a session cookie).
        let remember_in = (!bearer)
            .then(|| request_cookie(request.headers(), remember_cookie_name(secure)))
            .flatten()
            .and_then(|value| std::str::from_utf8(value).ok())
            .map(str::to_string);
        let access_token = (bearer && self.authenticator.access_token_store().is_some())
            .then(|| authorization_bearer(request.headers()))
            .flatten()
            // The shape alone tells it from a session token (43 characters).
            .filter(|token| token.len() == TOKEN_LEN && token.starts_with(PREFIX.as_bytes()))
            .map(|token| BearerAccessToken {
                text: String::from_utf8_lossy(token).into_owned(),
                method: request.method().as_str().to_string(),
                path: request.uri().path().to_string(),
            });
        let auth = Arc::new(RequestAuth::with_access_token(
            self.authenticator.clone(),
            remember_in,
            access_token,
        ));
        request.extensions_mut().insert(auth.clone());
        AuthFuture {
            inner: self.inner.call(request),
            auth,
            session,
        }
    }
}

pin_project! {
    /// The response future of [`AuthService`]: the inner answer, with the remember-me
    /// cookie the request's logins called for.
    pub struct AuthFuture<F, U> {
        #[pin]
        inner: F,
        auth: Arc<RequestAuth<U>>,
        session: Option<Session>,
    }
}

impl<F, U, B, E> Future for AuthFuture<F, U>
where
    F: Future<Output = Result<Response<B>, E>>,
    U: AuthUser,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(response)) => response,
        };
        if let Some(refusal) = this.auth.bearer_refusal() {
            response.extensions_mut().insert(RefusedBearer(refusal));
        }
        let (Some(change), Some(session)) = (this.auth.remember_cookie_out(), this.session) else {
            return Poll::Ready(Ok(response));
        };
        let config = session.config();
        let name = remember_cookie_name(config.secure());
        let cookie = match change {
            RememberCookie::Set { value, max_age } => {
                let mut cookie = config.build_cookie(name, value);
                cookie.set_max_age(cookie::time::Duration::seconds(
                    i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
                ));
                cookie
            }
            RememberCookie::Remove => {
                let mut removal = config.build_cookie(name, String::new());
                removal.make_removal();
                removal
            }
        };
        append_cookie(&mut response, cookie);
        Poll::Ready(Ok(response))
    }
}
