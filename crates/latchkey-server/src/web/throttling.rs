//! The client's address (through trusted proxies only), the per-address cap on new
//! sessions, the one throttled step every secret check goes through ([`throttled`]),
//! and the 429 answer.

use crate::web::forwarded::TrustedProxies;
use crate::web::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::RETRY_AFTER;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use latchkey::session::ClientInfo;
use latchkey::throttle::ThrottleStoreError;
use latchkey::throttle::{self, Admission, Throttle, Verdict};
use latchkey::{AuthError, NewSessionPolicy, StoreError};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};
use std::time::Duration;

/// The client's IP address, as [`ClientAddress`] put it in the request's `ConnectInfo`
/// (or axum's `into_make_service_with_connect_info`, which records the TCP peer): read
/// from the connection, never from the session.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip()),
        ))
    }
}

/// The TCP peer of a request's connection (a proxy's address when one forwards it), as
/// [`ClientAddress`] puts it in the request's extensions; `None` when the server is
/// driven without one.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<Peer>().copied();
        Ok(peer.unwrap_or(Peer(SocketAddr::from(([0, 0, 0, 0], 0)))))
    }
}

/// One connection's service: gives every request `ConnectInfo` with the client's
/// address, which is the TCP peer, unless the peer is a trusted proxy (then see
/// [`crate::web::forwarded`]). Sessions record it, throttling counts it.
#[derive(Clone)]
pub struct ClientAddress<S> {
    inner: S,
    peer: SocketAddr,
    proxies: TrustedProxies,
}

impl<S> ClientAddress<S> {
    /// `inner` for a connection from `peer`, believing the forwarding header of `proxies`.
    pub fn new(inner: S, peer: SocketAddr, proxies: TrustedProxies) -> Self {
        ClientAddress {
            inner,
            peer,
            proxies,
        }
    }
}

impl<S, B> tower::Service<Request<B>> for ClientAddress<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let ip = self.proxies.client_ip(self.peer.ip(), request.headers());
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(SocketAddr::new(ip, self.peer.port())));
        extensions.insert(Peer(self.peer));
        self.inner.call(request)
    }
}

/// The session layer's [`NewSessionPolicy`]: new stored sessions per client address and
/// hour, counted in the throttle store every server process shares.
pub struct NewSessionCap(pub Throttle);

#[async_trait::async_trait]
impl NewSessionPolicy for NewSessionCap {
    async fn admit(&self, client: &ClientInfo) -> Result<Option<Duration>, StoreError> {
        // The session layer's policy answers in the session store's terms: a throttle
        // store that failed leaves the new session unserved (503).
        let verdict = self
            .0
            .new_session(client.ip)
            .await
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        Ok(match verdict {
            Verdict::Allow => None,
            Verdict::Wait(wait) => Some(wait),
        })
    }
}

/// Adds `Retry-After` (whole seconds) to a 429 answer.
pub fn with_retry_after(mut response: Response, wait: Duration) -> Response {
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
    response
}

/// The message of a 429.
pub fn too_many_message(wait: Duration) -> String {
    format!(
        "Too many attempts. Try again in {} seconds.",
        wait.as_secs().max(1)
    )
}

/// The outcome of a throttled secret check (a password, a second-factor code).
pub enum Attempt<T> {
    /// The password was right: what it unlocked.
    Passed(T),
    /// The password was wrong; with the lockout this failure started, when it is the
    /// first past the free failures.
    Failed { lockout_started: Option<Duration> },
    /// Refused before checking; try again after this long.
    Throttled(Duration),
}

/// Runs the password check `check` for `account` from `ip` under the throttle: the
/// attempt takes one of the account's check slots before the check (so a burst gets
/// exactly the allowance, and the rest wait for a slot), then is settled by the
/// outcome. A throttled attempt never reaches the check, so a correct password is
/// refused too.
pub async fn throttled<T>(
    app: &AppState,
    account: throttle::Account<'_>,
    ip: ClientIp,
    check: impl Future<Output = Result<Option<T>, AuthError>>,
) -> Result<Attempt<T>, AuthError> {
    let throttle = &app.throttle;
    let reservation = match throttle.reserve(account, ip.0).await? {
        Admission::Admitted(reservation) => reservation,
        Admission::Refused(wait) => return Ok(Attempt::Throttled(wait)),
        // Right passwords are never refused for racing; only a queue that does not move
        // for seconds is, and as a busy service (503), not a throttled client.
        Admission::Busy => {
            tracing::warn!(waited = ?throttle::SLOT_WAIT, "an account's password checks stayed busy; answering 503");
            let busy = "the account's password checks are busy";
            return Err(ThrottleStoreError::Unavailable(busy.into()).into());
        }
    };
    let checked = check.await;
    let (settled, lockout_started) = match &checked {
        Ok(Some(_)) => (throttle.succeeded(reservation).await, None),
        Ok(None) => match throttle.failed(reservation).await {
            Ok(lockout) => (Ok(()), lockout),
            Err(error) => (Err(error), None),
        },
        Err(_) => {
            throttle.abandon(reservation).await;
            (Ok(()), None)
        }
    };
    let checked = checked?;
    settled?;
    Ok(match checked {
        Some(unlocked) => Attempt::Passed(unlocked),
        None => Attempt::Failed { lockout_started },
    })
}
