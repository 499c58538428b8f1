//! Terminals in real Docker sandboxes over the real WebSocket route: a
//! login shell that computes, resizes, runs as the sandbox's user and takes
//! its jobs with it when it closes; every way one ends is in the
//! transcript; the refusals come before any shell starts.

use crate::common::{self, Home, Served};
use app::domain::{EventKind, NewSession, Session};
use futures_util::{SinkExt, StreamExt};
use server::paddock::Paddock;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a session's terminal at `base` (`http://…`) as a browser page of
/// `origin` would (with `headers` besides): the socket, or the status the
/// server refused it with and its body.
pub(crate) async fn connect(
    base: &str,
    session: &str,
    query: &str,
    origin: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Socket, (u16, String)> {
    let url = format!(
        "{}/api/sessions/{session}/terminal?{query}",
        base.replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("cannot connect: {e}"),
    }
}

/// What the terminal shows, read until it holds `needle` (everything read
/// so far is returned); the `{"closed": …}` text too.
pub(crate) async fn read_until(socket: &mut Socket, needle: &str) -> String {
    let mut shown = String::new();
    let read = async {
        while let Some(message) = socket.next().await {
            match message.unwrap() {
                Message::Binary(bytes) => shown.push_str(&String::from_utf8_lossy(&bytes)),
                Message::Text(text) => shown.push_str(text.as_str()),
                Message::Close(_) => break,
                _ => {}
            }
            if shown.contains(needle) {
                return;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .is_err()
        || !shown.contains(needle)
    {
        panic!("the terminal never showed {needle:?}; it showed {shown:?}");
    }
    shown
}

pub(crate) async fn type_in(socket: &mut Socket, keys: &str) {
    socket
        .send(Message::Binary(keys.as_bytes().to_vec().into()))
        .await
        .unwrap();
}

async fn setup(extra: &[&str]) -> (Home, Arc<Paddock>, Served) {
    let home = Home::new();
    let flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let paddock = common::open(&home, "docker", &flags).await;
    let served = common::serve(paddock.clone()).await;
    (home, paddock, served)
}

async fn session(paddock: &Paddock, mode: &str) -> Session {
    common::create(
        paddock,
        NewSession {
            name: "terminal".into(),
            permission_mode: Some(mode.parse().unwrap()),
            ..Default::default()
        },
    )
    .await
}

/// The session's terminal events: (number, by, closed).
async fn terminal_events(paddock: &Paddock, s: &Session) -> Vec<(u32, String, Option<String>)> {
    common::events(paddock, s.id)
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Terminal {
                number, by, closed, ..
            } => Some((number, by, closed)),
            _ => None,
        })
        .collect()
}

/// Waits until the session's transcript has `n` terminal events.
async fn wait_for_events(
    paddock: &Paddock,
    s: &Session,
    n: usize,
) -> Vec<(u32, String, Option<String>)> {
    for _ in 0..200 {
        let events = terminal_events(paddock, s).await;
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} terminal events: {:?}",
        terminal_events(paddock, s).await
    );
}

#[tokio::test]
async fn a_terminal_runs_a_login_shell_in_the_sandbox_and_ends_with_everything_it_started() {
    let (_home, paddock, served) = setup(&[]).await;
    let s = session(&paddock, "ask").await;
    let id = s.id.to_string();
    let mut term = connect(&served.url, &id, "rows=24&cols=80", Some(&served.url), &[])
        .await
        .unwrap();
    type_in(&mut term, "echo $((6*7))\r").await;
    read_until(&mut term, "42\r\n").await;
    // It is the sandbox's: its user, its workspace.
    type_in(&mut term, "echo me=$(id -u) at=$PWD term=$TERM\r").await;
    read_until(&mut term, "me=10001 at=/workspace term=xterm-256color").await;
    type_in(&mut term, "stty size\r").await;
    read_until(&mut term, "24 80").await;
    // Nothing else holds the terminal's other side: not the shell, not the
    // agent's commands.
    type_in(
        &mut term,
        "ls -l /proc/$$/fd | grep -c ptmx; echo fds-$((1+1))\r",
    )
    .await;
    read_until(&mut term, "\r0\r\nfds-2").await;
    let held = common::exec(
        paddock.sandbox.as_ref(),
        s.id,
        "ls -l /proc/self/fd | grep -c ptmx || true",
        30,
    )
    .await;
    assert_eq!(held.output.trim(), "0");
    term.send(Message::Text(r#"{"resize":{"rows":40,"cols":120}}"#.into()))
        .await
        .unwrap();
    type_in(&mut term, "stty size\r").await;
    read_until(&mut term, "40 120").await;
    // A job that ignores hangups is ended all the same when the terminal
    // closes; so is one whose name the kernel cut mid-character (eight
    // Cyrillic letters, 16 bytes, of which a process's name keeps 15).
    type_in(&mut term, "nohup sleep 4242 >/dev/null 2>&1 &\r").await;
    type_in(
        &mut term,
        "n=/workspace/$(printf '\\320\\262%.0s' 1 2 3 4 5 6 7 8); cp /bin/sleep $n; nohup $n 4242 >/dev/null 2>&1 &\r",
    )
    .await;
    type_in(&mut term, "echo started-$((2+2))\r").await;
    read_until(&mut term, "started-4").await;
    let sleeping = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c ' 4242 $' || true";
    let count = |out: String| out.trim().parse::<u32>().unwrap();
    assert_eq!(
        count(
            common::exec(paddock.sandbox.as_ref(), s.id, sleeping, 30)
                .await
                .output
        ),
        2
    );
    term.close(None).await.unwrap();
    let events = wait_for_events(&paddock, &s, 2).await;
    assert_eq!(
        events[0],
        (1, "Local operator (local)".into(), None),
        "{events:?}"
    );
    assert_eq!(events[1].0, 1);
    assert!(
        events[1]
            .2
            .as_deref()
            .unwrap()
            .starts_with("closed by the viewer"),
        "{events:?}"
    );
    assert_eq!(
        count(
            common::exec(paddock.sandbox.as_ref(), s.id, sleeping, 30)
                .await
                .output
        ),
        0
    );

    // A shell that exits ends its terminal, which says so.
    let mut second = connect(&served.url, &id, "rows=24&cols=80", Some(&served.url), &[])
        .await
        .unwrap();
    type_in(&mut second, "exit 3\r").await;
    read_until(&mut second, r#"{"closed":"the shell exited (code 3)"}"#).await;
    let events = wait_for_events(&paddock, &s, 4).await;
    assert_eq!(events[2].0, 2, "{events:?}");
    assert_eq!(
        events[3].2.as_deref(),
        Some("the shell exited (code 3)"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_flood_waits_for_the_viewer_who_can_still_interrupt_it() {
    let (_home, paddock, served) = setup(&[]).await;
    let s = session(&paddock, "ask").await;
    let mut term = connect(
        &served.url,
        &s.id.to_string(),
        "rows=24&cols=80",
        Some(&served.url),
        &[],
    )
    .await
    .unwrap();
    type_in(&mut term, "yes flood\r").await;
    read_until(&mut term, "flood\r\nflood").await;
    // Not read for a while: the shell's output waits (the buffers between
    // are bounded), and nothing else gives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    type_in(&mut term, "\x03").await;
    type_in(&mut term, "echo calm-$((5*5))\r").await;
    let shown = read_until(&mut term, "calm-25").await;
    // What waited is a few buffers' worth, not two seconds of `yes`.
    assert!(
        shown.len() < 64 * 1024 * 1024,
        "{} bytes were queued",
        shown.len()
    );
}

/// Keys pasted while the shell runs something that reads none wait in
/// the buffers between; the terminal closed then (here, idle) ends the
/// shell, which never runs them afterwards.
#[tokio::test]
async fn keys_waiting_when_a_terminal_closes_are_never_run() {
    let (_home, paddock, served) = setup(&["--terminal-idle-secs=3"]).await;
    let s = session(&paddock, "ask").await;
    let mut term = connect(
        &served.url,
        &s.id.to_string(),
        "rows=24&cols=80",
        Some(&served.url),
        &[],
    )
    .await
    .unwrap();
    type_in(&mut term, "sleep 600\r").await;
    // A megabyte of lines, more than every buffer on the way holds.
    let line = "echo pasted >> /tmp/pasted\r";
    let chunk = line.repeat(16 * 1024 / line.len());
    let (mut sink, mut shown) = term.split();
    let paste = tokio::spawn(async move {
        for _ in 0..64 {
            if sink
                .send(Message::Binary(chunk.clone().into_bytes().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        sink
    });
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = shown.next().await {
            if let Message::Text(text) = message {
                if text.contains("closed") {
                    return text.to_string();
                }
            }
        }
        String::new()
    })
    .await
    .expect("the terminal closes");
    assert!(closed.contains("nothing typed or shown"), "{closed}");
    paste.abort();
    let container = format!("paddock-{}", s.id);
    let sh = |script: &str| {
        let out = std::process::Command::new("docker")
            .args(["exec", &container, "sh", "-c", script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // What it ran ends (were the shell left, it would read the keys now).
    sh("pkill -f 'sleep 600'");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sh("cat /tmp/pasted 2>/dev/null | wc -l").trim(), "0");
}

#[tokio::test]
async fn terminals_close_when_idle_or_deleted_and_bad_requests_start_none() {
    let (_home, paddock, served) = setup(&["--terminal-idle-secs=3"]).await;
    let s = session(&paddock, "ask").await;
    let id = s.id.to_string();
    let own = Some(served.url.as_str());
    let mut idle = connect(&served.url, &id, "rows=24&cols=80", own, &[])
        .await
        .unwrap();
    read_until(&mut idle, "nothing typed or shown for 3 s").await;

    // Refused before any shell starts, each with a clear status.
    let refused = |r: Result<Socket, (u16, String)>| r.expect_err("refused");
    let (status, body) = refused(
        connect(
            &served.url,
            &id,
            "rows=24&cols=80",
            Some("http://evil.example"),
            &[],
        )
        .await,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        refused(connect(&served.url, &id, "rows=0&cols=80", own, &[]).await).0,
        400
    );
    assert_eq!(
        refused(connect(&served.url, &id, "rows=abc", own, &[]).await).0,
        400
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        refused(connect(&served.url, &unknown, "rows=24&cols=80", own, &[]).await).0,
        404
    );
    let read_only = session(&paddock, "read-only").await;
    let (status, body) = refused(
        connect(
            &served.url,
            &read_only.id.to_string(),
            "rows=24&cols=80",
            own,
            &[],
        )
        .await,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    assert!(terminal_events(&paddock, &read_only).await.is_empty());
    // Not a WebSocket at all.
    let plain = reqwest::get(served.url(&format!("/api/sessions/{id}/terminal?rows=24&cols=80")))
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);

    // Something other than keys and sizes ends it.
    let mut rude = connect(&served.url, &id, "rows=24&cols=80", own, &[])
        .await
        .unwrap();
    rude.send(Message::Text("rm -rf /".into())).await.unwrap();
    read_until(&mut rude, "something other than keys and sizes").await;

    // Made read-only, a session's terminals close.
    let mut open = connect(&served.url, &id, "rows=24&cols=80", own, &[])
        .await
        .unwrap();
    type_in(&mut open, "echo ready-$((2*2))\r").await;
    read_until(&mut open, "ready-4").await;
    let settings = reqwest::Client::new()
        .put(served.url(&format!("/api/sessions/{id}/settings")))
        .json(&serde_json::json!({
            "name": "terminal", "model": s.model, "permission_mode": "read-only", "budget_usd": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status(), 200, "{}", settings.text().await.unwrap());
    read_until(&mut open, "the session became read-only").await;
    let settings = reqwest::Client::new()
        .put(served.url(&format!("/api/sessions/{id}/settings")))
        .json(&serde_json::json!({
            "name": "terminal", "model": s.model, "permission_mode": "ask", "budget_usd": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status(), 200);

    // Deleting the session closes its terminals.
    let mut open = connect(&served.url, &id, "rows=24&cols=80", own, &[])
        .await
        .unwrap();
    type_in(&mut open, "echo ready-$((3*3))\r").await;
    read_until(&mut open, "ready-9").await;
    let events = terminal_events(&paddock, &s).await;
    assert!(
        events
            .iter()
            .any(|(_, _, closed)| closed.as_deref() == Some("nothing typed or shown for 3 s")),
        "{events:?}"
    );
    type_in(&mut open, "\r").await;
    let deleted = reqwest::Client::new()
        .delete(served.url(&format!("/api/sessions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    read_until(&mut open, "the session was deleted").await;
}

/// A server shutting down closes its terminals and says so in their
/// transcripts; one started after a crash, alone, closes what its
/// transcripts still say is open. Either way no session is left with a
/// terminal on record that nobody holds (its sandbox would never be
/// stopped as unused).
#[tokio::test]
async fn terminals_end_on_record_at_shutdown_and_after_a_crash() {
    let (_home, paddock, served) = setup(&[]).await;
    let s = session(&paddock, "ask").await;
    let id = s.id.to_string();
    let own = Some(served.url.as_str());
    let mut socket = connect(&served.url, &id, "rows=24&cols=80", own, &[])
        .await
        .unwrap();
    type_in(&mut socket, "echo ready-$((1+1))\n").await;
    read_until(&mut socket, "ready-2").await;
    drop(served);
    read_until(&mut socket, "Paddock shut down").await;
    let events = wait_for_events(&paddock, &s, 2).await;
    assert_eq!(
        events[1].2.as_deref(),
        Some("Paddock shut down"),
        "{events:?}"
    );

    // What a crash leaves: an opening with no end.
    paddock
        .journal
        .record(
            s.id,
            EventKind::Terminal {
                number: 2,
                by: "crashed".into(),
                closed: None,
                replica: Some("a replica of before".into()),
            },
        )
        .await
        .unwrap();
    let recovery = paddock.recover().await.unwrap();
    assert_eq!(recovery.terminals_closed, [s.id]);
    let events = wait_for_events(&paddock, &s, 4).await;
    assert_eq!(
        events[3],
        (
            2,
            "crashed".to_owned(),
            Some("Paddock restarted".to_owned())
        )
    );
}
