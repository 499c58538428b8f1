//! `GET /api/live`: one connection carrying many live streams, so that a
//! browser with any number of dashboard tabs holds one, not one or two per
//! tab (browsers allow six per origin over HTTP/1.1; the seventh tab would
//! wait). The dashboard's tabs share it through a `SharedWorker`
//! (`public/live-worker.js`); scripts keep the streams of their own
//! (`events.rs`, `updates.rs`).
//!
//! `?list=true` follows the sessions list (as `/api/updates`), and
//! `?sessions=<id>:<after>,…` the transcripts of those sessions after those
//! events (as `/api/sessions/{id}/events?html=true&after=…`). Each frame is
//! an unnamed SSE message `<topic> <name> <data>`: the topic is `list` or a
//! session id, the name and data those of the stream it comes from. A
//! transcript that ends says so, `<id> closed <why>`, while the others go
//! on: `gone` (deleted, never was, or no longer shared), `invalid` (no such
//! event to resume after) or `retry` (the store failed, or the caller holds
//! as many streams as they may; resume later); so
//! does the list (`list closed retry`) when it cannot reload what the caller
//! may see. While nothing else comes, `- ping -` every 15 s says the
//! connection is alive (keep-alive comments never reach the page). Lost
//! credentials end the connection. The
//! connection carries no resume point of its own: the client knows the
//! last event of each transcript and reconnects with them.

use super::access_watch;
use super::error::ApiResult;
use super::events::{Ending, Tail};
use super::frames::{self, Frame};
use super::routes::Routes;
use super::updates::Listener;
use crate::auth::Identity;
use crate::paddock::Paddock;
use app::domain::{AppError, SessionId};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse;
use axum::response::IntoResponse;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;

/// The most transcripts one connection follows.
pub const MAX_SESSIONS: usize = 200;

pub fn routes() -> Routes {
    Routes::default().get("/api/live", live)
}

/// Unknown fields are refused, as on the other doors: a misspelt
/// `sessions` would otherwise follow the list alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveQuery {
    #[serde(default)]
    list: bool,
    #[serde(default)]
    sessions: String,
}

/// `<id>:<after>,…` as (session, resume point) pairs.
fn parse_sessions(text: &str) -> Result<Vec<(SessionId, i64)>, AppError> {
    let wanted: Vec<&str> = text.split(',').filter(|s| !s.is_empty()).collect();
    if wanted.len() > MAX_SESSIONS {
        return Err(AppError::Invalid(format!(
            "One connection follows at most {MAX_SESSIONS} sessions, not {}.",
            wanted.len()
        )));
    }
    let mut sessions: Vec<(SessionId, i64)> = Vec::with_capacity(wanted.len());
    for one in wanted {
        let parsed = one.split_once(':').and_then(|(id, after)| {
            Some((
                id.parse().ok()?,
                after.parse::<i64>().ok().filter(|a| *a >= 0)?,
            ))
        });
        let Some((id, after)) = parsed else {
            return Err(AppError::Invalid(format!(
                "Each of sessions is <session id>:<seq of the last event received>, not {:?}.",
                one.chars().take(100).collect::<String>()
            )));
        };
        if sessions.iter().any(|(seen, _)| *seen == id) {
            return Err(AppError::Invalid(format!("Session {id} is listed twice.")));
        }
        sessions.push((id, after));
    }
    Ok(sessions)
}

/// One line of the connection.
fn line(topic: &str, frame: Frame) -> String {
    format!("{topic} {} {}", frame.name, frame.data)
}

fn closed(topic: &str, why: &str) -> String {
    format!("{topic} closed {why}")
}

/// One session's transcript as lines, ending with why it ended.
async fn transcript(
    paddock: &Arc<Paddock>,
    identity: &Identity,
    id: SessionId,
    after: i64,
) -> BoxStream<'static, String> {
    let topic = id.to_string();
    let unwatchable = access_watch::unwatchable(paddock.clone(), identity.caller.clone(), id);
    let tail = match Tail::open(paddock, identity, id, after, true).await {
        Ok(tail) => tail,
        Err(e) => {
            let why = match e {
                AppError::Invalid(_) => "invalid",
                // (Past the caller's streams: once some end.)
                AppError::Unavailable(_) | AppError::Internal | AppError::RateLimited(_) => "retry",
                _ => "gone",
            };
            return stream::once(async move { closed(&topic, why) }).boxed();
        }
    };
    // Cut once the caller may no longer watch it (checked apart, as the
    // whole stream's end is), before anything more of it is sent.
    let (revoked, watching) = frames::apart(unwatchable);
    let frames = tail.frames().take_until(revoked).boxed();
    stream::unfold(Some((frames, watching)), move |following| {
        let topic = topic.clone();
        async move {
            let (mut frames, watching) = following?;
            let why = match frames.next().await {
                Some(Ok(frame)) => return Some((line(&topic, frame), Some((frames, watching)))),
                None | Some(Err(Ending::Deleted)) => "gone",
                Some(Err(Ending::Failed)) => "retry",
            };
            Some((closed(&topic, why), None))
        }
    })
    .boxed()
}

/// `GET /api/live`: the sessions list and the transcripts asked for, as one
/// stream, until the caller's credentials no longer hold.
async fn live(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    query: Result<Query<LiveQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query?;
    let sessions = parse_sessions(&query.sessions)?;
    if !query.list && sessions.is_empty() {
        return Err(AppError::Invalid(
            "Nothing to follow: ask for list=true, sessions=<id>:<after>,…, or both.".into(),
        )
        .into());
    }
    let end = access_watch::stream_ends(paddock.clone(), identity.clone(), None);
    let mut streams: Vec<BoxStream<'static, String>> = Vec::with_capacity(sessions.len() + 1);
    if query.list {
        // It ends when it cannot reload what the caller may see, and is
        // not opened past the caller's streams: ask again.
        let retry = stream::once(async { closed("list", "retry") });
        match Listener::open(&paddock, identity.clone()).await {
            Ok(listener) => {
                let frames = listener.frames().map(|frame| line("list", frame));
                streams.push(frames.chain(retry).boxed());
            }
            Err(e) if e.status() == axum::http::StatusCode::TOO_MANY_REQUESTS => {
                streams.push(retry.boxed())
            }
            Err(e) => return Err(e),
        }
    }
    let transcripts = sessions
        .into_iter()
        .map(|(id, after)| transcript(&paddock, &identity, id, after));
    streams.extend(futures_util::future::join_all(transcripts).await);
    let lines = stream::select_all(streams).map(|line| sse::Event::default().data(line));
    // While idle, a line of no topic rather than a comment, which the
    // browser hides: the worker sees the connection is alive, and makes it
    // again once it has heard nothing for a while (a laptop back from
    // sleep, behind a proxy that dropped it meanwhile).
    let heartbeat = sse::Event::default().data("- ping -");
    Ok(frames::respond(
        lines,
        end,
        sse::KeepAlive::default().event(heartbeat),
    ))
}
