//! `GET /api/sessions/{id}/terminal?rows=…&cols=…`: a terminal in the
//! session's sandbox over a WebSocket (what the session page's Terminal
//! tab opens; [`crate::terminals`] says who may have one). Everything is
//! checked before the upgrade, so a refusal is an ordinary JSON 4xx; a
//! WebSocket from another site's page is refused at the door like any
//! change ([`request_guard`](super::request_guard)).
//!
//! On the socket: binary messages from the client are typed into the
//! terminal, a text message `{"resize": {"rows": …, "cols": …}}` resizes
//! it; binary messages to the client are what it shows, and its last text
//! message `{"closed": "…"}` says why it ended, before the close frame.
//! What the terminal shows is sent as fast as the client takes it and no
//! faster (a command printing gigabytes waits for it), while the keyboard
//! is read apart, so Ctrl-C still gets through.

use super::access_watch;
use super::error::ApiResult;
use super::extract::SessionPath;
use super::routes::Routes;
use crate::activity::Activity;
use crate::auth::Identity;
use crate::paddock::Paddock;
use crate::sandbox::TerminalSize;
use crate::terminals::OpenTerminal;
use app::accounts::Access;
use app::domain::AppError;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Largest message a client may send (a paste is typed in pieces).
const MESSAGE_MAX_BYTES: usize = 64 * 1024;
/// How often the server pings the client (its browser answers with a
/// pong; one not heard from for three times this is gone), so that proxies in between
/// keep the connection.
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long the last words may take to reach a client that stopped reading.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn routes() -> Routes {
    Routes::default().get("/api/sessions/{id}/terminal", open)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Size {
    rows: u16,
    cols: u16,
}

async fn open(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    size: Result<Query<Size>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let upgrade = upgrade.map_err(|_| {
        AppError::Invalid("A terminal is a WebSocket: open this address with one.".into())
    })?;
    let Query(Size { rows, cols }) = size?;
    // Until the viewer loses the right to it, watched from before the
    // checks and the sandbox's start.
    let lost = access_watch::lost(
        paddock.clone(),
        identity.clone(),
        Some((id, Access::Operate)),
    );
    let opened = paddock
        .open_terminal(&identity.caller, id, TerminalSize { rows, cols })
        .await?;
    let idle = Duration::from_secs(paddock.config.terminal_idle_secs);
    let ends = Ends {
        lost,
        shutdown: paddock.hub.shutting_down(),
    };
    let tasks = paddock.terminals.tasks().clone();
    // Should the upgrade fail, `opened` is dropped: its place is given back
    // and the transcript says it closed.
    Ok(upgrade
        .max_message_size(MESSAGE_MAX_BYTES)
        // A frame is read whole before its message is measured.
        .max_frame_size(MESSAGE_MAX_BYTES)
        .on_upgrade(move |socket| tasks.track_future(relay(socket, opened, idle, ends))))
}

/// What a client's text message may say.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    resize: Size,
}

/// What ends a terminal from outside its connection: its viewer losing
/// the right to it, or the server shutting down.
struct Ends<L, S> {
    lost: L,
    shutdown: S,
}

/// Carries the terminal until it ends, and has the transcript say why.
async fn relay<L, S>(socket: WebSocket, opened: OpenTerminal, idle: Duration, ends: Ends<L, S>)
where
    L: std::future::Future<Output = ()>,
    S: std::future::Future<Output = ()>,
{
    let OpenTerminal {
        terminal,
        slot,
        mut record,
    } = opened;
    let by = record.by.clone();
    let (mut keyboard, resizer, mut shown, control) = (
        terminal.process.stdin,
        terminal.resizer,
        terminal.process.output,
        terminal.process.control,
    );
    let (mut sink, mut stream) = socket.split();
    let activity = Activity::default();
    // Anything from the viewer, the pongs its browser answers the pings
    // with included: a viewer whose machine vanished sends nothing.
    let heard = Activity::default();
    let typing = async {
        while let Some(message) = stream.next().await {
            heard.touch();
            match message {
                Ok(Message::Binary(keys)) => {
                    activity.touch();
                    // While the shell takes no keys (a long paste into a
                    // busy one), nothing from the viewer is read: that
                    // time is not the viewer's silence.
                    let written = keyboard.write_all(&keys);
                    tokio::pin!(written);
                    let mut waiting = tokio::time::interval(PING_EVERY);
                    loop {
                        tokio::select! {
                            done = &mut written => match done {
                                Ok(()) => break,
                                Err(_) => return None,
                            },
                            _ = waiting.tick() => heard.touch(),
                        }
                    }
                }
                Ok(Message::Text(text)) => {
                    activity.touch();
                    match serde_json::from_str::<Control>(text.as_str()) {
                        Ok(Control { resize }) => {
                            let size = TerminalSize {
                                rows: resize.rows,
                                cols: resize.cols,
                            };
                            if size.is_sane() {
                                let _ = resizer.resize(size).await;
                            }
                        }
                        Err(_) => return Some("it sent something other than keys and sizes"),
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
            }
        }
        Some("closed by the viewer")
    };
    let showing = async {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                next = shown.next() => match next {
                    Some(Ok((_, bytes))) => {
                        activity.touch();
                        if sink.send(Message::Binary(bytes)).await.is_err() {
                            return Ended::Gone;
                        }
                    }
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Exited,
                },
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return Ended::Gone;
                    }
                }
            }
        }
    };
    let ended = tokio::select! {
        typed = typing => match typed {
            Some(why) => Ended::Viewer(why),
            None => Ended::Exited,
        },
        ended = showing => ended,
        () = heard.idle_for(PING_EVERY * 3) => Ended::Gone,
        why = slot.closing.closed() => Ended::Said(why),
        () = ends.lost => Ended::Said(format!("{by} may no longer operate the session")),
        () = ends.shutdown => Ended::Said("Paddock shut down".into()),
        () = activity.idle_for(idle) => Ended::Said(match idle.as_secs() {
            s if s % 60 == 0 => format!("nothing typed or shown for {} min", s / 60),
            s => format!("nothing typed or shown for {s} s"),
        }),
    };
    // A shell that exited took its session with it. Any other is killed
    // here: the agent ends one whose request goes, but a request whose
    // keys wait for a shell that reads none (a paste into `sleep`) never
    // goes, and the shell would run them after its terminal closed.
    if !matches!(ended, Ended::Exited) {
        control.kill().await;
    }
    let why = match ended {
        Ended::Exited => match control.exit_code().await {
            Ok(Some(code)) => format!("the shell exited (code {code})"),
            _ => "the shell ended".to_owned(),
        },
        Ended::Viewer(why) => format!("{why} ({by})"),
        Ended::Gone => format!("the viewer went away ({by})"),
        Ended::Lost(e) => format!("the sandbox stopped answering: {e}"),
        Ended::Said(why) => why,
    };
    // Gone before the last words: the agent ends a terminal whose request
    // goes.
    drop((keyboard, resizer, shown));
    let goodbye = async {
        let said = serde_json::json!({ "closed": why }).to_string();
        sink.send(Message::Text(said.into())).await?;
        sink.send(Message::Close(Some(CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "closed".into(),
        })))
        .await
    };
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
    record.why = Some(why);
}

/// How a terminal's connection ended.
enum Ended {
    /// The shell is gone.
    Exited,
    /// The client closed it, or broke the protocol (why).
    Viewer(&'static str),
    /// The client stopped taking what it shows.
    Gone,
    /// The sandbox's agent failed.
    Lost(String),
    /// Closed by the server (why).
    Said(String),
}
