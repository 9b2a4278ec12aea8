//! The client's address behind reverse proxies: `X-Forwarded-For` or `Forwarded`
//! (RFC 7239), read from the right and believed only as far as the proxies are trusted.
//!
//! Each proxy appends the address it received the request from, so the list reads, from
//! the right: what our peer (a trusted proxy) saw, what the proxy before it saw, and so
//! on. Walking from the right, every entry that is a trusted proxy passes the walk on;
//! the first that is not is the client. Anything that does not parse as an address
//! (`unknown`, an obfuscated `_hidden` name, junk the client sent) ends the trust: the
//! request is counted under the last trusted hop, never under an entry further left,
//! which the client could have chosen.
//!
//! The `client-ip` and `axum-client-ip` crates take only the right-most entry (one
//! proxy); a chain of trusted proxies and the end-of-trust rule need the walk below.

use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// The reverse proxies whose forwarding header is believed, and which header they write.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    /// The proxies' own addresses (as this server sees them connect).
    pub addresses: Arc<[IpAddr]>,
    /// The header they write.
    pub header: ForwardedHeader,
}

impl TrustedProxies {
    /// The client behind `peer` (see [`client_ip`]).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(peer, headers, self.header, &self.addresses)
    }
}

/// Which header a trusted proxy writes. Only one is read: a proxy that writes one passes
/// the other through untouched, so the client would choose what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de facto standard).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for="[2001:db8::1]:4711"` (RFC 7239).
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            other => Err(format!(
                "unknown header {other:?}: use x-forwarded-for or forwarded"
            )),
        }
    }
}

impl ForwardedHeader {
    fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }

    /// The address in one comma-separated element of the header, if it holds one.
    fn hop(self, element: &str) -> Option<IpAddr> {
        match self {
            ForwardedHeader::XForwardedFor => parse_node(element),
            ForwardedHeader::Forwarded => element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| parse_node(unquote(value.trim())?)),
        }
    }
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy; otherwise the
/// right-most entry of `header` that is not a trusted proxy, or the last trusted hop
/// when the walk meets an entry that is not an address or runs out of entries.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    header: ForwardedHeader,
    trusted: &[IpAddr],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.contains(&canonical(*ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Several header lines are one list, in order (RFC 9110 5.3).
    let mut elements: Vec<&str> = Vec::new();
    for value in headers.get_all(header.name()) {
        let Ok(value) = value.to_str() else {
            return peer;
        };
        elements.extend(value.split(','));
    }
    let mut last_trusted = peer;
    for element in elements.iter().rev() {
        match header.hop(element) {
            Some(ip) if is_trusted(&ip) => last_trusted = ip,
            Some(ip) => return canonical(ip),
            None => return last_trusted,
        }
    }
    last_trusted
}

/// An address as compared: IPv4-mapped IPv6 as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// A node as proxies write it: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1` or
/// `[2001:db8::1]:8080`, with surrounding spaces.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address.ip());
    }
    // `[2001:db8::1]` without a port.
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// An RFC 7239 value: a token or a quoted string (no escapes are valid in an address).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('\\')),
        None => Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn through(header: ForwardedHeader, values: &[&str], trusted: &[&str]) -> IpAddr {
        let mut headers = HeaderMap::new();
        for value in values {
            if let Ok(value) = value.parse() {
                headers.append(header.name(), value);
            }
        }
        let trusted: Vec<IpAddr> = trusted.iter().map(|text| ip(text)).collect();
        client_ip(ip("10.0.0.1"), &headers, header, &trusted)
    }

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const RFC: ForwardedHeader = ForwardedHeader::Forwarded;

    #[test]
    fn a_stranger_is_its_own_address() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6".parse().expect("header"));
        assert_eq!(
            client_ip(ip("198.51.100.1"), &headers, XFF, &[ip("10.0.0.1")]),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn the_walk_goes_from_the_right_past_trusted_proxies_only() {
        let proxies = ["10.0.0.1", "10.0.0.2"];
        assert_eq!(
            through(XFF, &["6.6.6.6, 203.0.113.7, 10.0.0.2"], &proxies),
            ip("203.0.113.7")
        );
        // What the attacker found: junk in the middle used to stop a left-to-right
        // parse at the spoofed first entry.
        assert_eq!(
            through(XFF, &["6.6.6.6, junk, 203.0.113.7"], &proxies),
            ip("203.0.113.7")
        );
        // A proxy that appends a port.
        assert_eq!(
            through(XFF, &["6.6.6.6, junk, 203.0.113.7:51234"], &proxies),
            ip("203.0.113.7")
        );
        assert_eq!(
            through(XFF, &["[2001:db8::7]:443"], &proxies),
            ip("2001:db8::7")
        );
        // Split over two header lines.
        assert_eq!(
            through(XFF, &["6.6.6.6", "203.0.113.7, 10.0.0.2"], &proxies),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn anything_unparsable_ends_the_trust_at_the_last_trusted_hop() {
        let proxies = ["10.0.0.1", "10.0.0.2"];
        assert_eq!(
            through(XFF, &["6.6.6.6, 10.0.0.2, junk"], &proxies),
            ip("10.0.0.1")
        );
        assert_eq!(
            through(XFF, &["6.6.6.6, junk, 10.0.0.2"], &proxies),
            ip("10.0.0.2")
        );
        assert_eq!(through(XFF, &[""], &proxies), ip("10.0.0.1"));
        assert_eq!(through(XFF, &[], &proxies), ip("10.0.0.1"));
        // Only trusted hops: the left-most of them.
        assert_eq!(through(XFF, &["10.0.0.2"], &proxies), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_is_read_the_same_way() {
        let proxies = ["10.0.0.1"];
        assert_eq!(
            through(
                RFC,
                &["for=6.6.6.6, for=203.0.113.7;proto=https;by=10.0.0.1"],
                &proxies
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            through(RFC, &["for=\"[2001:db8:cafe::17]:4711\""], &proxies),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            through(RFC, &["For=\"203.0.113.9:80\""], &proxies),
            ip("203.0.113.9")
        );
        // Obfuscated and unknown nodes end the trust.
        assert_eq!(
            through(RFC, &["for=6.6.6.6, for=_hidden"], &proxies),
            ip("10.0.0.1")
        );
        assert_eq!(
            through(RFC, &["for=6.6.6.6, for=unknown"], &proxies),
            ip("10.0.0.1")
        );
        assert_eq!(
            through(RFC, &["for=6.6.6.6, proto=http"], &proxies),
            ip("10.0.0.1")
        );
        // Only the configured header is read.
        assert_eq!(through(XFF, &[], &proxies), ip("10.0.0.1"));
    }

    #[test]
    fn the_header_is_named_on_the_command_line() {
        assert_eq!("Forwarded".parse(), Ok(RFC));
        assert_eq!("x-forwarded-for".parse(), Ok(XFF));
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }
}
