//! The egress proxy with real Docker sandboxes: a session reaches the hosts
//! its owner listed (a real git server and a plain HTTP server on this
//! host's loopback, which the operator allows with `--egress-networks`),
//! through `HTTP_PROXY` as any client does, and nothing else; each
//! connection is a transcript event. The hosts are on loopback because this
//! machine reaches nothing else, and `localhost` is left to the sandbox's
//! own servers (`NO_PROXY`), so commands that go to it through the proxy
//! drop `NO_PROXY` first.

use crate::common::{self, git_server::GitServer, Home};
use app::domain::{EventKind, NewSession, Session};
use axum::response::IntoResponse;
use server::paddock::Paddock;
use std::sync::Arc;
use std::time::Duration;

/// A plain HTTP server on the host's loopback: `/hello` greets, `/away`
/// redirects to a host no session lists; its port.
async fn origin() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
        match uri.path() {
            "/away" => {
                axum::response::Redirect::temporary("http://elsewhere.example/next").into_response()
            }
            _ => "hello from the host\n".into_response(),
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// An origin server that answers the first request on a connection and
/// keeps every byte it is sent (as a server that would serve a request
/// pipelined behind it sees them), until its client has said nothing for
/// a second: its port, and the bytes.
async fn recorder() -> (u16, Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = kept.clone();
            tokio::spawn(async move {
                let (mut buf, mut answered) = ([0u8; 4096], false);
                while let Ok(Ok(n @ 1..)) =
                    tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await
                {
                    let head_in = {
                        let mut seen = seen.lock().unwrap();
                        seen.extend_from_slice(&buf[..n]);
                        seen.windows(4).any(|w| w == b"\r\n\r\n")
                    };
                    if !answered && head_in {
                        answered = true;
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                            .await;
                    }
                }
            });
        }
    });
    (port, seen)
}

async fn paddock(home: &Home, extra: &[&str]) -> Arc<Paddock> {
    let flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    common::open(home, "docker", &flags).await
}

/// A session allowed `hosts`, its sandbox started.
async fn session(paddock: &Paddock, hosts: &[String]) -> Session {
    let s = common::create(
        paddock,
        NewSession {
            name: "networked".into(),
            egress: hosts.to_vec(),
            ..Default::default()
        },
    )
    .await;
    paddock.runner.start_sandbox(&s).await.unwrap();
    s
}

async fn run(paddock: &Paddock, s: &Session, command: &str) -> String {
    common::exec(paddock.sandbox.as_ref(), s.id, command, 60)
        .await
        .output
}

/// The session's egress events, once there are at least `n`.
async fn egress_events(paddock: &Paddock, s: &Session, n: usize) -> Vec<EventKind> {
    for _ in 0..100 {
        let events: Vec<EventKind> = common::events(paddock, s.id)
            .await
            .into_iter()
            .map(|e| e.kind)
            .filter(|k| matches!(k, EventKind::Egress { .. }))
            .collect();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} egress events");
}

const VIA_PROXY: &str = "env -u NO_PROXY -u no_proxy";

#[tokio::test]
async fn a_session_reaches_the_hosts_it_lists_and_nothing_else() {
    let port = origin().await;
    let git = GitServer::start(None).await;
    git.repo("tools.git", &[("README.md", b"from the git host\n")]);
    let git_port = git.url.rsplit(':').next().unwrap().to_owned();
    let (recorder_port, recorded) = recorder().await;
    let home = Home::new();
    let p = paddock(&home, &["--egress-networks=127.0.0.0/8"]).await;
    let s = session(
        &p,
        &[
            format!("localhost:{port}"),
            format!("LOCALHOST:{git_port}"),
            format!("localhost:{recorder_port}"),
        ],
    )
    .await;
    assert_eq!(
        s.egress,
        [
            format!("localhost:{port}"),
            format!("localhost:{git_port}"),
            format!("localhost:{recorder_port}")
        ]
    );

    let env = run(&p, &s, "echo $HTTP_PROXY $HTTPS_PROXY $NO_PROXY").await;
    assert_eq!(
        env,
        "http://127.0.0.1:3128 http://127.0.0.1:3128 localhost,127.0.0.1,::1\n"
    );

    // Plain HTTP, and a tunnel (CONNECT, as HTTPS clients ask for one).
    let url = format!("http://localhost:{port}/hello");
    let plain = run(&p, &s, &format!("{VIA_PROXY} curl -sS {url}")).await;
    assert_eq!(plain, "hello from the host\n");
    let tunnel = run(&p, &s, &format!("{VIA_PROXY} curl -sS -p {url}")).await;
    assert_eq!(tunnel, "hello from the host\n");

    // A request pipelined behind an allowed one, naming another host:
    // the allowed one's body reaches its server, the one behind it never.
    let pipelined = run(
        &p,
        &s,
        &format!(
            "printf 'POST http://localhost:{recorder_port}/first HTTP/1.1\\r\\nContent-Length: 5\\r\\n\\r\\nhello\
             GET http://localhost:{recorder_port}/second HTTP/1.1\\r\\nHost: elsewhere.example\\r\\n\\r\\n' \
             | socat -t 5 - TCP:127.0.0.1:3128"
        ),
    )
    .await;
    assert!(pipelined.ends_with("\r\n\r\nok\n"), "{pipelined:?}");
    let recorded = String::from_utf8(recorded.lock().unwrap().clone()).unwrap();
    assert!(
        recorded.starts_with("POST /first HTTP/1.1\r\n") && recorded.ends_with("\r\n\r\nhello"),
        "{recorded:?}"
    );
    assert!(!recorded.contains("elsewhere"), "{recorded:?}");

    // A real git host: cloned through the proxy.
    let cloned = run(
        &p,
        &s,
        &format!(
            "{VIA_PROXY} git clone -q http://localhost:{git_port}/tools.git /tmp/tools && cat /tmp/tools/README.md"
        ),
    )
    .await;
    assert_eq!(cloned, "from the git host\n");

    // Anything else is refused, in words the agent's tool shows.
    let other = run(&p, &s, "curl -sS http://example.com/").await;
    assert_eq!(
        other,
        "Paddock egress proxy: not in this session's network allowlist\n"
    );
    let other_tls = run(&p, &s, "curl -sS https://example.com/ 2>&1").await;
    assert!(other_tls.contains("403"), "{other_tls}");
    let wrong_port = run(
        &p,
        &s,
        &format!("{VIA_PROXY} curl -sS http://localhost:{}/", port + 1),
    )
    .await;
    assert!(
        wrong_port.contains("not in this session's network allowlist"),
        "{wrong_port}"
    );
    // ...also the next hop of a redirect from an allowed host,
    let redirected = run(
        &p,
        &s,
        &format!("{VIA_PROXY} curl -sS -L http://localhost:{port}/away"),
    )
    .await;
    assert!(
        redirected.contains("not in this session's network allowlist"),
        "{redirected}"
    );
    // ...an address instead of a name,
    let literal = run(
        &p,
        &s,
        &format!("curl -sS --noproxy '' -x http://127.0.0.1:3128 -p http://127.0.0.1:{port}/hello 2>&1; \
                  curl -sS --noproxy '' -x http://127.0.0.1:3128 http://127.0.0.1:{port}/hello"),
    )
    .await;
    assert!(literal.contains("403"), "{literal}");
    assert!(
        literal.contains("an IP address is not allowed"),
        "{literal}"
    );
    // ...and a request that is no proxy request, straight on the socket.
    let garbage = run(
        &p,
        &s,
        "printf 'hello\\r\\n\\r\\n' | socat -t 5 - UNIX-CONNECT:/run/paddock-egress/egress.sock",
    )
    .await;
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    // Past the proxy there is still no network: no DNS, no route.
    let direct = run(&p, &s, &format!("curl -sS --noproxy '*' --max-time 5 http://example.com/ 2>&1; curl -sS --noproxy '*' --max-time 5 http://localhost:{port}/ 2>&1")).await;
    assert!(!direct.contains("hello"), "{direct}");

    // Every connection is in the transcript: what was allowed with its
    // bytes, what was refused with why.
    let events = egress_events(&p, &s, 9).await;

    let allowed: Vec<&EventKind> = events
        .iter()
        .filter(|k| matches!(k, EventKind::Egress { allowed: true, .. }))
        .collect();
    assert!(allowed.len() >= 4, "{events:#?}");
    for kind in &allowed {
        let EventKind::Egress {
            host,
            sent,
            received,
            ..
        } = kind
        else {
            unreachable!()
        };
        assert_eq!(host, "localhost");
        assert!(*sent > 0 && *received > 0, "{kind:?}");
    }
    let refused = |host: &str, why: &str| {
        events.iter().any(|k| matches!(k, EventKind::Egress { host: h, allowed: false, reason: Some(r), .. } if h == host && r.contains(why)))
    };
    assert!(
        refused("example.com", "not in this session's network allowlist"),
        "{events:#?}"
    );
    assert!(
        refused(
            "elsewhere.example",
            "not in this session's network allowlist"
        ),
        "{events:#?}"
    );
    assert!(refused("127.0.0.1", "IP address"), "{events:#?}");

    // Deleting the session closes its proxy and removes its folder.
    use app::api::Backend;
    p.delete_session(&app::accounts::Caller::local_operator(), s.id)
        .await
        .unwrap();
    assert!(!home.workspaces().join(format!("{}.egress", s.id)).exists());
}

#[tokio::test]
async fn a_name_pointing_at_this_host_is_refused_and_a_flood_is_bounded() {
    let port = origin().await;
    let home = Home::new();
    // Without the operator's networks, loopback is off limits even for a
    // listed name (DNS rebinding an allowed name to the host).
    let p = paddock(&home, &[]).await;
    let s = session(&p, &[format!("localhost:{port}")]).await;
    let rebound = run(
        &p,
        &s,
        &format!("{VIA_PROXY} curl -sS http://localhost:{port}/hello"),
    )
    .await;
    // The address is not told to the sandbox (the server's log has it).
    assert!(
        rebound.contains("resolves to a non-public address, which is not reached")
            && !rebound.contains("127.0.0.1"),
        "{rebound}"
    );
    let events = egress_events(&p, &s, 1).await;
    assert!(
        matches!(&events[0], EventKind::Egress { allowed: false, reason: Some(r), .. } if r.contains("non-public"))
    );

    // A flood of connections: a minute's worth are answered, then 429,
    // said once in the transcript; the server goes on.
    let codes = run(
        &p,
        &s,
        "for i in $(seq 1 320); do curl -s -o /dev/null -w '%{http_code}\\n' http://example.com/; done | sort | uniq -c",
    )
    .await;

    assert!(codes.contains("429"), "{codes}");
    let events = egress_events(&p, &s, 2).await;
    let busy = events
        .iter()
        .filter(
            |k| matches!(k, EventKind::Egress { reason: Some(r), .. } if r.contains("too many")),
        )
        .count();
    assert_eq!(busy, 1, "{codes}");
    assert!(events.len() <= server::egress::CONNECTIONS_PER_MINUTE as usize + 2);
}

#[tokio::test]
async fn allowlists_are_checked_and_need_docker() {
    let home = Home::new();
    let p = common::open(&home, "local", &[]).await;
    use app::api::Backend;
    let caller = app::accounts::Caller::local_operator();
    for (hosts, why) in [
        (vec!["10.0.0.1".to_owned()], "IP address"),
        (vec!["bad name".to_owned()], "not a host name"),
        (vec!["mirror.example.com:0".to_owned()], "port"),
        (vec!["mirror.example.com".to_owned()], "needs Docker"),
    ] {
        let refused = p
            .create_session(
                &caller,
                NewSession {
                    name: "x".into(),
                    egress: hosts,
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(refused.to_string().contains(why), "{refused}");
    }
    assert!(p.store.list_sessions(None).await.unwrap().is_empty());
}

/// Replicas share the sessions' folder: a session's socket another replica
/// bound there (and may have left, nobody listening) is bound again by the
/// next run here, rather than this replica taking its own listener for
/// the one the sandbox reaches.
#[tokio::test]
async fn a_socket_another_replica_bound_is_bound_again() {
    let port = origin().await;
    let home = Home::new();
    let p = paddock(&home, &["--egress-networks=127.0.0.0/8"]).await;
    let s = session(&p, &[format!("localhost:{port}")]).await;
    let fetch = format!("{VIA_PROXY} curl -sS http://localhost:{port}/hello");
    assert!(run(&p, &s, &fetch).await.contains("hello from the host"));
    // Another replica, which opens no loopback, binds the session's socket.
    let other = server::egress::EgressProxy::new(home.workspaces(), &[], p.journal.clone());
    other.open(s.id, s.owner, &s.egress).unwrap();
    let through_other = run(&p, &s, &fetch).await;
    assert!(
        through_other.contains("non-public address"),
        "{through_other}"
    );
    // The next run here binds it again.
    p.runner.start_sandbox(&s).await.unwrap();
    let again = run(&p, &s, &fetch).await;
    assert!(again.contains("hello from the host"), "{again}");
}

/// What moved is counted however the connection ends: an origin that
/// sends a megabyte of a longer answer, then resets the connection.
#[tokio::test]
async fn bytes_that_moved_are_counted_when_the_far_end_breaks_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = vec![0; 4096];
                let _ = conn.read(&mut head).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n")
                    .await;
                let _ = conn.write_all(&vec![b'x'; 1_000_000]).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = conn.set_zero_linger();
            });
        }
    });
    let home = Home::new();
    let p = paddock(&home, &["--egress-networks=127.0.0.0/8"]).await;
    let s = session(&p, &[format!("localhost:{port}")]).await;
    let cut = run(
        &p,
        &s,
        &format!("{VIA_PROXY} curl -sS -o /dev/null http://localhost:{port}/big 2>&1"),
    )
    .await;
    assert!(!cut.is_empty(), "curl saw the answer cut short");
    let events = egress_events(&p, &s, 1).await;
    let EventKind::Egress { received, sent, .. } = &events[0] else {
        unreachable!()
    };
    assert!(*received >= 1_000_000 && *sent > 0, "{events:?}");
}

/// A sandbox stopped (idle, or down by itself) closes its session's
/// socket, which would otherwise hold a descriptor of the server's for as
/// long as the session lives; the next start binds it again.
#[tokio::test]
async fn a_stopped_sandboxs_socket_is_closed_and_bound_again_at_its_next_start() {
    let port = origin().await;
    let home = Home::new();
    let p = paddock(&home, &["--egress-networks=127.0.0.0/8"]).await;
    let s = session(&p, &[format!("localhost:{port}")]).await;
    let fetch = format!("{VIA_PROXY} curl -sS http://localhost:{port}/hello");
    assert!(run(&p, &s, &fetch).await.contains("hello from the host"));
    let socket = home
        .workspaces()
        .join(format!("{}.egress", s.id))
        .join("egress.sock");
    assert!(tokio::net::UnixStream::connect(&socket).await.is_ok());
    let stopped = p.runner.stop_idle_sandboxes(Duration::ZERO).await.unwrap();
    assert_eq!(stopped, [s.id]);
    assert!(
        tokio::net::UnixStream::connect(&socket).await.is_err(),
        "still listening"
    );
    p.runner.start_sandbox(&s).await.unwrap();
    let again = run(&p, &s, &fetch).await;
    assert!(again.contains("hello from the host"), "{again}");
    // Up: left open. Down without the server stopping it (as when its main
    // process is killed from inside): closed at the next look.
    assert!(p.runner.close_egress_of_downed().await.unwrap().is_empty());
    assert!(tokio::net::UnixStream::connect(&socket).await.is_ok());
    p.sandbox.stop(s.id).await.unwrap();
    assert_eq!(p.runner.close_egress_of_downed().await.unwrap(), [s.id]);
    assert!(
        tokio::net::UnixStream::connect(&socket).await.is_err(),
        "still listening"
    );
    p.runner.start_sandbox(&s).await.unwrap();
    let third = run(&p, &s, &fetch).await;
    assert!(third.contains("hello from the host"), "{third}");
}
