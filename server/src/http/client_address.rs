//! Who a request comes from: the connection's peer, or, when that peer is
//! a proxy this server trusts (`PADDOCK_TRUSTED_PROXIES`), the address it
//! says it forwarded for (`X-Forwarded-For`, read from the right: the
//! nearest address that is not a trusted proxy's). Sign-in limits, the
//! audit log and triggers' limits count by it. An address a client writes
//! itself counts for nothing unless a trusted proxy passed it on.

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The client's address (`None` when the server was not told the peer's,
/// as in tests that call the router directly).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddress>()
            .copied()
            .unwrap_or(ClientAddress(None)))
    }
}

/// Marks each request with its [`ClientAddress`].
pub async fn mark(
    State(trusted): State<Arc<[IpNet]>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let address = ClientAddress(peer.map(|p| client_of(p, request.headers(), &trusted)));
    request.extensions_mut().insert(address);
    next.run(request).await
}

/// The client behind `peer`: `peer` itself unless a trusted proxy, else
/// the nearest address in `X-Forwarded-For` no trusted proxy has (where
/// the list ends or cannot be read, the last trusted one).
fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |a: &IpAddr| trusted.iter().any(|n| n.contains(&canonical(*a)));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(address) = parse_hop(hop.trim()) else {
            break;
        };
        client = address;
        if !is_trusted(&address) {
            break;
        }
    }
    client
}

/// An address as proxies write it: bare, with a port, IPv6 in brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.trim_matches(['[', ']']).parse().ok())
        .map(canonical)
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`) as the IPv4 one.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for f in forwarded {
            h.append("x-forwarded-for", f.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_nearest_address_no_trusted_proxy_has() {
        let trusted: [IpNet; 2] = [
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let of = |peer, f: &[&str]| client_of(ip(peer), &headers(f), &trusted);
        // Not a proxy's: what it writes counts for nothing.
        assert_eq!(of("203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
        // Through a trusted proxy, and a chain of them.
        assert_eq!(of("127.0.0.1", &["198.51.100.1"]), ip("198.51.100.1"));
        assert_eq!(
            of("10.1.1.1", &["192.0.2.66, 198.51.100.1, 10.2.2.2"]),
            ip("198.51.100.1"),
            "what the client wrote itself, left of it, is not believed"
        );
        assert_eq!(
            of("10.1.1.1", &["192.0.2.66", "198.51.100.1:4711"]),
            ip("198.51.100.1")
        );
        assert_eq!(of("10.1.1.1", &["[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(
            of("::ffff:127.0.0.1", &["198.51.100.1"]),
            ip("198.51.100.1")
        );
        // Nothing said, or nothing readable: the last trusted one.
        assert_eq!(of("10.1.1.1", &[]), ip("10.1.1.1"));
        assert_eq!(of("10.1.1.1", &["junk, 10.2.2.2"]), ip("10.2.2.2"));
    }
}
