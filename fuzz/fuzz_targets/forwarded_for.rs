//! `X-Forwarded-For` and `Forwarded` from a trusted proxy: whatever the header holds,
//! the client is the peer or an address the header names, and a stranger's header is
//! never believed.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use latchkey_server::web::forwarded::{client_ip, ForwardedHeader};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

fuzz_target!(|input: (&[u8], bool)| {
    let (bytes, rfc) = input;
    let header = if rfc {
        ForwardedHeader::Forwarded
    } else {
        ForwardedHeader::XForwardedFor
    };
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(if rfc { "forwarded" } else { "x-forwarded-for" }, value);
    let proxy = IpAddr::from([10, 0, 0, 1]);
    let stranger = IpAddr::from([198, 51, 100, 1]);
    assert_eq!(client_ip(stranger, &headers, header, &[proxy]), stranger);
    let client = client_ip(proxy, &headers, header, &[proxy]);
    if client != proxy {
        // The client is an address written in the header, never one made up.
        let text = String::from_utf8_lossy(bytes);
        let named = text
            .split(|c: char| matches!(c, ',' | ';' | '"' | '=' | ' ' | '\t'))
            .filter_map(|token| {
                let bare = token.trim_start_matches('[').trim_end_matches(']');
                token
                    .parse::<std::net::SocketAddr>()
                    .map(|address| address.ip())
                    .or_else(|_| bare.parse::<IpAddr>())
                    .ok()
            })
            .any(|ip| ip == client || ip.to_canonical() == client);
        assert!(named, "{client} not in {text:?}");
    }
});
