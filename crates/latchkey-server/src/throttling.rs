//! The client's address (through trusted proxies only), the per-address cap on new
//! sessions, and the 429 answer; the throttled use cases themselves are in
//! [`crate::usecases`].

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::RETRY_AFTER;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request};
use axum::response::Response;
use latchkey::session::ClientInfo;
use latchkey::throttle::{Throttle, Verdict};
use latchkey::{NewSessionPolicy, StoreError};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
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
/// [`client_ip`]). Sessions record it, throttling counts it.
#[derive(Clone)]
pub struct ClientAddress<S> {
    inner: S,
    peer: SocketAddr,
    trusted: Arc<[IpAddr]>,
}

impl<S> ClientAddress<S> {
    /// `inner` for a connection from `peer`, believing `X-Forwarded-For` from `trusted`.
    pub fn new(inner: S, peer: SocketAddr, trusted: Arc<[IpAddr]>) -> Self {
        ClientAddress {
            inner,
            peer,
            trusted,
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
        let ip = client_ip(self.peer.ip(), request.headers(), &self.trusted);
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

/// The client behind `peer`: `peer` itself, unless it is a trusted proxy, in which case
/// the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries
/// further left are whatever the client chose to send).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map_while(|hop| hop.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|hop| !trusted.contains(hop))
        .unwrap_or(peer)
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

#[cfg(test)]
mod tests {
    use super::client_ip;
    use axum::http::HeaderMap;
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7, 10.0.0.2".parse().expect("header"),
        );
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        // From a stranger the header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &headers, &trusted),
            ip("198.51.100.1")
        );
        // Through the proxies: the right-most hop that is not a proxy; the spoofed
        // left-most entry is never used.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.7")
        );
        // Garbage stops the walk: the peer is used.
        headers.insert("x-forwarded-for", "not-an-ip".parse().expect("header"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("10.0.0.1")
        );
    }
}
