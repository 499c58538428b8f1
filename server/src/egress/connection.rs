//! One connection a sandbox makes to the egress proxy: its request read
//! (HTTP `CONNECT host:port` for a tunnel, as HTTPS clients send it, or a
//! plain-HTTP request in absolute form), checked against the session's
//! allowlist, the name resolved here and every address checked, then bytes
//! relayed: both ways until either side closes for a tunnel; the request,
//! its body ([`super::request_body`]) and the answer for a plain one. A
//! refusal ([`Refusal`]) is an HTTP answer whose status line says why,
//! which the agent's tool shows.

use super::address::{own_addresses, reachable, unreachable_why, Network};
use super::metered::Metered;
use super::refusal::Refusal;
use super::request_body::{self, framing, Framing};
use super::SessionEgress;
use crate::activity::Activity;
use app::domain::EventKind;
use app::egress::normal_host;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest request head read (its line and headers).
const HEAD_MAX_BYTES: usize = 16 * 1024;
/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a relayed connection may carry nothing either way before it
/// is closed.
pub const IDLE_LIMIT: Duration = Duration::from_secs(300);

/// Where a request goes, and what to send there first.
#[derive(Debug, PartialEq)]
struct Target {
    host: String,
    port: u16,
    /// `None` for a tunnel (answered `200` once connected); else the
    /// request for the origin server.
    forward: Option<Forward>,
}

/// A plain-HTTP request as it is sent on: its head rewritten for the
/// origin server, and how its body is delimited.
#[derive(Debug, PartialEq)]
struct Forward {
    head: Vec<u8>,
    body: Framing,
}

/// Serves one connection to its end; what happened goes to the session's
/// transcript.
pub(super) async fn serve<S>(mut client: S, egress: &SessionEgress)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (head, rest) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(read)) => read,
        Ok(Err(refusal)) => return refuse(&mut client, None, refusal, egress).await,
        Err(_) => return,
    };
    let target = match parse(&head) {
        Ok(target) => target,
        Err((host, refusal)) => return refuse(&mut client, host, refusal, egress).await,
    };
    let named = Some((target.host.clone(), target.port));
    if !egress
        .rules
        .iter()
        .any(|r| r.allows(&target.host, target.port))
    {
        let refusal = Refusal::new(403, "not in this session's network allowlist");
        return refuse(&mut client, named, refusal, egress).await;
    }
    let upstream = match connect(&target.host, target.port, egress).await {
        // Closed meanwhile (stopped, deleted): nothing is sent on.
        Ok(_) if egress.cancel.is_cancelled() => return,
        Ok(upstream) => upstream,
        Err(refusal) => return refuse(&mut client, named, refusal, egress).await,
    };
    // What passes is counted as it passes: the transcript says what moved
    // however the connection ends.
    let activity = Arc::new(Activity::default());
    let mut upstream = Metered::new(upstream, activity.clone());
    let relayed = async {
        match &target.forward {
            None => {
                let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
                if client.write_all(ok).await.is_err() || upstream.write_all(&rest).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            // The one request checked, and its answer: nothing the
            // client sends after its body is relayed.
            Some(forward) => {
                let (mut from_client, mut to_client) = tokio::io::split(&mut client);
                let (mut from_upstream, mut to_upstream) = tokio::io::split(&mut upstream);
                let send = async {
                    to_upstream.write_all(&forward.head).await?;
                    request_body::relay(&rest, &mut from_client, &mut to_upstream, &forward.body)
                        .await
                };
                let receive = async {
                    tokio::io::copy(&mut from_upstream, &mut to_client).await?;
                    to_client.shutdown().await
                };
                let _ = tokio::join!(send, receive);
            }
        }
    };
    tokio::select! {
        biased;
        () = egress.cancel.cancelled() => {}
        () = relayed => {}
        // Nothing either way for this long: a connection held open
        // holds two of the server's descriptors.
        () = activity.idle_for(IDLE_LIMIT) => {}
    }
    let (sent, received) = (upstream.sent, upstream.received);
    egress
        .record(EventKind::Egress {
            host: target.host,
            port: target.port,
            allowed: true,
            sent,
            received,
            reason: None,
        })
        .await;
}

/// How long a connection over the session's rate has to send its request
/// before the 429 (read first: an answer to an unread request would be
/// lost to a reset).
const BUSY_READ: Duration = Duration::from_millis(200);

/// Answers a connection over the session's rate with 429; recorded (and
/// logged) when `record`: the minute's first.
pub(super) async fn refuse_busy<S>(
    mut client: S,
    egress: &SessionEgress,
    reason: String,
    record: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let refusal = Refusal::new(429, reason);
    let _ = tokio::time::timeout(BUSY_READ, read_head(&mut client)).await;
    let _ = tokio::time::timeout(BUSY_READ, client.write_all(&refusal.answer())).await;
    if record {
        tracing::warn!(session = %egress.session, "egress refused: {}", refusal.reason);
        egress
            .record(EventKind::Egress {
                host: String::new(),
                port: 0,
                allowed: false,
                sent: 0,
                received: 0,
                reason: Some(refusal.reason),
            })
            .await;
    }
}

/// Answers a refusal, and records it when it names a host.
async fn refuse<S>(
    client: &mut S,
    named: Option<(String, u16)>,
    refusal: Refusal,
    egress: &SessionEgress,
) where
    S: AsyncWrite + Unpin,
{
    let _ = client.write_all(&refusal.answer()).await;
    let _ = client.shutdown().await;
    tracing::info!(session = %egress.session, host = ?named, "egress refused: {}", refusal.reason);
    if let Some((host, port)) = named {
        egress
            .record(EventKind::Egress {
                host,
                port,
                allowed: false,
                sent: 0,
                received: 0,
                reason: Some(refusal.reason),
            })
            .await;
    }
}

/// Reads up to the end of the request head: the head, and what came after
/// it already.
async fn read_head<S: AsyncRead + Unpin>(client: &mut S) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut searched = 0;
    loop {
        if let Some(end) = buf[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(searched + end + 4);
            return Ok((buf, rest));
        }
        searched = buf.len().saturating_sub(3);
        if buf.len() > HEAD_MAX_BYTES {
            return Err(Refusal::new(431, "the request head is too large"));
        }
        let n = client
            .read(&mut chunk)
            .await
            .map_err(|_| Refusal::new(400, "the request could not be read"))?;
        if n == 0 {
            return Err(Refusal::new(400, "the request ended before its head did"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The target of a request head, or why it is refused (with the host it
/// named, when it named one).
fn parse(head: &[u8]) -> Result<Target, (Option<(String, u16)>, Refusal)> {
    let bad = |why: &str| (None, Refusal::new(400, why));
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(bad("not an HTTP/1 proxy request")),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(bad("not an HTTP/1 proxy request"));
    };
    if method == "CONNECT" {
        let (host, port) = split_authority(target, None).map_err(|why| (None, why))?;
        let host = checked_host(&host, port)?;
        return Ok(Target {
            host,
            port,
            forward: None,
        });
    }
    let Some(rest) = target.strip_prefix("http://") else {
        return Err(bad(
            "send http:// URLs in full, or CONNECT host:port for anything else (https)",
        ));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let (host, port) = split_authority(authority, Some(80)).map_err(|why| (None, why))?;
    let host = checked_host(&host, port)?;
    let body = framing(request.headers).map_err(|why| (Some((host.clone(), port)), why))?;
    let mut forward = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    // The host asked for is the host named to the server, whatever the
    // client's own Host header said.
    forward.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    for h in request.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "host" | "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive"
        ) {
            continue;
        }
        forward.extend_from_slice(h.name.as_bytes());
        forward.extend_from_slice(b": ");
        forward.extend_from_slice(h.value);
        forward.extend_from_slice(b"\r\n");
    }
    // One request a connection: the next one is checked on its own.
    forward.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Target {
        host,
        port,
        forward: Some(Forward {
            head: forward,
            body,
        }),
    })
}

/// `host:port` (the port may be left out where `default_port` is given).
fn split_authority(authority: &str, default_port: Option<u16>) -> Result<(String, u16), Refusal> {
    if authority.contains('@') {
        return Err(Refusal::new(
            400,
            "credentials in the URL are not passed on",
        ));
    }
    let bad_port = || Refusal::new(400, "the port must be a number from 1 to 65535");
    // An IPv6 literal keeps its colons inside brackets.
    let split = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => Some(i),
        _ => None,
    };
    match (split, default_port) {
        (Some(i), _) => {
            let port = authority[i + 1..]
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(bad_port)?;
            Ok((authority[..i].to_owned(), port))
        }
        (None, Some(port)) => Ok((authority.to_owned(), port)),
        (None, None) => Err(Refusal::new(400, "CONNECT needs host:port")),
    }
}

/// The host as rules compare it, or refused as an IP address or no name.
fn checked_host(host: &str, port: u16) -> Result<String, (Option<(String, u16)>, Refusal)> {
    normal_host(host).map_err(|why| {
        let why = why.trim_end_matches('.').to_owned();
        // As much of it as a host name may hold, for the transcript.
        let named: String = host.chars().take(253).collect();
        (Some((named, port)), Refusal::new(403, why))
    })
}

/// Resolves `host` here (the sandbox has no DNS) and connects to the first
/// address that may be reached; a name with only other addresses is
/// refused.
async fn connect(host: &str, port: u16, egress: &SessionEgress) -> Result<TcpStream, Refusal> {
    let networks: &[Network] = &egress.networks;
    // A lookup runs on a thread of its own until the resolver gives up,
    // which may be long after the answer stopped being waited for: each
    // holds one of the session's few lookups until then, and the others
    // wait their turn.
    let name = host.to_owned();
    let lookups = egress.lookups.clone();
    let resolving = async move {
        let held = lookups.acquire_owned().await;
        tokio::task::spawn_blocking(move || {
            let _held = held;
            std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port))
                .map(|addrs| addrs.collect::<Vec<_>>())
        })
        .await
    };
    let addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, resolving)
        .await
        .map_err(|_| Refusal::new(502, "the name did not resolve in time"))?
        .map_err(|_| Refusal::new(502, "the name does not resolve"))?
        .map_err(|_| Refusal::new(502, "the name does not resolve"))?;
    let own = own_addresses();
    let reachable: Vec<&SocketAddr> = addrs
        .iter()
        .filter(|a| reachable(a.ip(), &own, networks))
        .collect();
    if let (true, Some(first)) = (reachable.is_empty(), addrs.first()) {
        let what = unreachable_why(first.ip(), &own, networks).unwrap_or_default();
        // The address only in the server's log: the sandbox learns no
        // internal address of a name through its refusal.
        tracing::info!(session = %egress.session, %host, address = %first.ip(), "egress: {what}");
        return Err(Refusal::new(
            403,
            format!("the name resolves to {what}, which is not reached"),
        ));
    }
    for addr in reachable {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            return Ok(stream);
        }
    }
    Err(Refusal::new(502, "the host did not accept the connection"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(head: &str) -> Result<Target, (Option<(String, u16)>, Refusal)> {
        parse(head.as_bytes())
    }

    #[test]
    fn connect_and_absolute_requests_are_read() {
        let t = target(
            "CONNECT Mirror.Example.com:443 HTTP/1.1\r\nHost: mirror.example.com:443\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.forward),
            ("mirror.example.com", 443, None)
        );
        let t = target(
            "GET http://mirror.local:8080/simple/x/?q=1 HTTP/1.1\r\nHost: mirror.local:8080\r\n\
             Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("mirror.local", 8080));
        assert_eq!(
            String::from_utf8(t.forward.unwrap().head).unwrap(),
            "GET /simple/x/?q=1 HTTP/1.1\r\nHost: mirror.local:8080\r\nAccept: */*\r\n\
             Connection: close\r\n\r\n"
        );
        let forged =
            target("GET http://a.example/ HTTP/1.1\r\nHost: other.example\r\n\r\n").unwrap();
        let forged = String::from_utf8(forged.forward.unwrap().head).unwrap();
        assert!(
            forged.contains("Host: a.example\r\n") && !forged.contains("other"),
            "{forged}"
        );
        let t = target("GET http://example.org?x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(t.port, 80);
        assert_eq!(
            String::from_utf8(t.forward.unwrap().head).unwrap(),
            "GET /?x HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn bad_requests_and_addresses_are_refused() {
        for (head, status) in [
            ("CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n", 403),
            ("CONNECT [::1]:443 HTTP/1.1\r\n\r\n", 403),
            ("CONNECT 2130706433:80 HTTP/1.1\r\n\r\n", 403),
            ("GET http://10.0.0.1/ HTTP/1.1\r\n\r\n", 403),
            ("CONNECT mirror.example.com HTTP/1.1\r\n\r\n", 400),
            ("CONNECT mirror.example.com:0 HTTP/1.1\r\n\r\n", 400),
            ("CONNECT mirror.example.com:99999 HTTP/1.1\r\n\r\n", 400),
            ("GET https://mirror.example.com/ HTTP/1.1\r\n\r\n", 400),
            ("GET /local HTTP/1.1\r\n\r\n", 400),
            (
                "GET http://user:pw@mirror.example.com/ HTTP/1.1\r\n\r\n",
                400,
            ),
            ("GET http://bad_name.org/ HTTP/1.1\r\n\r\n", 403),
            ("\u{1}\u{2}garbage\r\n\r\n", 400),
        ] {
            let refused = target(head).unwrap_err().1;
            assert_eq!(refused.status, status, "{head:?}: {refused:?}");
        }
        // A body framed wrong still names its host (for the transcript).
        let (named, refused) = target(
            "POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\
             Content-Length: 3\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(
            (named, refused.status),
            (Some(("a.example".into(), 80)), 400)
        );
        let (named, refused) = target("CONNECT 10.0.0.1:22 HTTP/1.1\r\n\r\n").unwrap_err();
        assert_eq!(named, Some(("10.0.0.1".into(), 22)));
        assert!(refused.reason.contains("IP address"), "{refused:?}");
        let answer = String::from_utf8(refused.answer()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 403 name the host: an IP address is not allowed\r\n"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn heads_are_bounded() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let big = format!(
            "GET http://x.org/ HTTP/1.1\r\nX: {}\r\n",
            "y".repeat(20_000)
        );
        a.write_all(big.as_bytes()).await.unwrap();
        assert_eq!(read_head(&mut b).await.unwrap_err().status, 431);
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"CONNECT x.org:443 HTTP/1.1\r\n\r\nhello")
            .await
            .unwrap();
        let (head, rest) = read_head(&mut b).await.unwrap();
        assert!(head.ends_with(b"\r\n\r\n"));
        assert_eq!(rest, b"hello");
    }
}
