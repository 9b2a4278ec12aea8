//! The client's address (through trusted proxies only), the per-address cap on new
//! sessions, and the 429 answer; the throttled use cases themselves are in
//! [`crate::usecases`].

use crate::forwarded::TrustedProxies;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::RETRY_AFTER;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use latchkey::session::ClientInfo;
use latchkey::throttle::{Throttle, Verdict};
use latchkey::{NewSessionPolicy, StoreError};
use std::convert::Infallible;
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

/// One connection's service: gives every request `ConnectInfo` with the client's
/// address, which is the TCP peer, unless the peer is a trusted proxy (then see
/// [`crate::forwarded`]). Sessions record it, throttling counts it.
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
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, self.peer.port())));
        self.inner.call(request)
    }
}

/// The session layer's [`NewSessionPolicy`]: new stored sessions per client address and
/// hour, counted in the throttle store every server process shares.
pub struct NewSessionCap(pub Throttle);

#[async_trait::async_trait]
impl NewSessionPolicy for NewSessionCap {
    async fn admit(&self, client: &ClientInfo) -> Result<Option<Duration>, StoreError> {
        Ok(match self.0.new_session(client.ip).await? {
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
