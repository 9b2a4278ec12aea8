//! The client's address for throttling (through trusted proxies only) and the 429
//! answer; the throttled use cases themselves are in [`crate::usecases`].

use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::RETRY_AFTER;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The client's IP address: the TCP peer, unless the peer is a configured trusted proxy,
/// in which case the right-most `X-Forwarded-For` entry that is not itself a trusted
/// proxy (entries further left are whatever the client chose to send).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Infallible> {
        // The connection's peer, as the server (or axum's
        // `into_make_service_with_connect_info`) records it on every request: no
        // session layer is needed.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        Ok(ClientIp(peer.map(|peer| {
            client_ip(peer, &parts.headers, &app.trusted_proxies)
        })))
    }
}

/// See [`ClientIp`].
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
