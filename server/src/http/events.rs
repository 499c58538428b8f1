//! `GET /api/sessions/{id}/events`: a session's transcript as Server-Sent
//! Events, for those who may watch the session (the stream ends when they no
//! longer may: see `access_watch.rs`).
//!
//! Each stored event
//! is a frame `id: <seq>`, `event: event`; token fragments are `event: delta`
//! frames without an id, so a browser's `EventSource` resumes after the last
//! *stored* event it saw, and so are the workspace's changes while the
//! stream is open (`event: files`, `{"paths", "more"}`: see
//! `workspace_watch.rs`; a sandbox with the agent only). With `?html=true` (the dashboard), the model's
//! text also comes rendered: an `event: html` frame (`{"seq", "html"}`, no
//! id) just before its event, so a client that resumes after that event has
//! its HTML too. Resuming (`Last-Event-ID`, or `?after=N` on a first
//! connection) replays the store and then follows the hub, with no gap and no
//! duplicate, because
//! - the stream subscribes to the hub before it reads the store, so an event
//!   committed after the read is in the subscription, and one committed
//!   before it is in the read; live events at or below the last `seq` sent
//!   are dropped;
//! - events are published only after they are committed, so whenever the
//!   live side skips a `seq` (a lagging receiver, or two writers publishing
//!   out of order) the missing events are already in the store, and the
//!   stream goes back to reading it from the last `seq` it sent. A slow
//!   viewer is caught up, never dropped.

use super::access_watch;
use super::error::ApiResult;
use super::extract::SessionPath;
use super::frames::{self, Frame};
use super::routes::Routes;
use crate::auth::Identity;
use crate::hub::HubMessage;
use crate::paddock::Paddock;
use app::accounts::Access;
use app::api::{Backend, EVENTS_PAGE};
use app::domain::{AppError, Event, SessionId};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::KeepAlive;
use axum::response::IntoResponse;
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};

pub fn routes() -> Routes {
    Routes::default().get("/api/sessions/{id}/events", events)
}

/// Unknown fields are refused: a resume point misspelt (`since=41`)
/// would otherwise send the whole transcript again at every reconnect.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<String>,
    #[serde(default)]
    html: bool,
}

/// A resume point: the `seq` of the last event the client has.
fn parse_after(what: &str, value: &str) -> Result<i64, AppError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            AppError::Invalid(format!(
                "{what} must be the seq of the last event received (a whole number, 0 or more), \
                 not {value:?}."
            ))
        })
}

/// Where to resume: `Last-Event-ID` (what a reconnecting `EventSource`
/// sends, so it wins over the `after` of the URL it reconnects to), then
/// `?after=`, else from the start.
fn resume_point(headers: &HeaderMap, query: &EventsQuery) -> Result<i64, AppError> {
    if let Some(value) = headers.get("last-event-id") {
        let value = value
            .to_str()
            .map_err(|_| AppError::Invalid("Last-Event-ID is not readable text.".into()))?;
        if !value.trim().is_empty() {
            return parse_after("Last-Event-ID", value);
        }
    }
    match &query.after {
        Some(after) => parse_after("after", after),
        None => Ok(0),
    }
}

async fn events(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query?;
    let after = resume_point(&headers, &query)?;
    let end =
        access_watch::stream_ends(paddock.clone(), identity.clone(), Some((id, Access::Watch)));
    let tail = Tail::open(&paddock, &identity, id, after, query.html).await?;
    let frames = tail
        .frames()
        .take_while(|frame| std::future::ready(frame.is_ok()))
        .filter_map(|frame| std::future::ready(frame.ok()))
        .map(Frame::into_sse);
    Ok(frames::respond(frames, end, KeepAlive::default()))
}

/// A viewer hearing nothing for this long looks in the store for events
/// stored since the last it was sent (with replicas).
const QUIET_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a transcript's stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The session was deleted.
    Deleted,
    /// The store failed, or an event could not be written: resuming later
    /// may work.
    Failed,
}

/// One viewer's position in a transcript: the store until caught up, then
/// the hub, back to the store whenever the hub skips a `seq`.
pub struct Tail {
    /// Counted among its caller's streams while it lasts.
    _held: crate::stream_budget::Held,
    /// Counts this viewer as watching while the stream lasts.
    _watching: crate::presence::Watching,
    /// Keeps the session's workspace watched while the stream lasts.
    _following: crate::workspace_watch::Following,
    /// Counted in the `paddock_viewers` metric while it lasts.
    _viewer: crate::metrics::Viewer,
    paddock: Arc<Paddock>,
    session: SessionId,
    rx: broadcast::Receiver<HubMessage>,
    /// The `seq` of the last event sent (or the resume point).
    last: i64,
    /// Events read from the store, not yet sent; all `> last`, in order.
    pending: VecDeque<Event>,
    /// Whether the store may hold events `> last` not yet read.
    catching_up: bool,
    /// Whether to send `html` frames.
    html: bool,
    /// The event frame that follows the `html` frame just sent.
    next_frame: Option<Frame>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        tracing::debug!(session = %self.session, last = self.last, "viewer disconnected");
    }
}

impl Tail {
    /// `caller`'s position in `session`'s transcript after event `after`:
    /// not found when they may not watch it, invalid past its newest event.
    pub async fn open(
        paddock: &Arc<Paddock>,
        identity: &Identity,
        session: SessionId,
        after: i64,
        html: bool,
    ) -> Result<Self, AppError> {
        // Subscribe first: whatever is committed from here on reaches us
        // live, whatever was committed before is in the store reads that
        // follow.
        let rx = paddock.hub.subscribe(session);
        let found = paddock.get_session(&identity.caller, session).await?;
        if after > found.last_seq {
            return Err(AppError::Invalid(format!(
                "There is no event {after} to resume after: the newest is {}.",
                found.last_seq
            )));
        }
        let held = paddock.streams.take(&identity.caller)?;
        tracing::debug!(%session, after, "viewer connected");
        Ok(Self {
            _held: held,
            _watching: paddock.presence.watch(session, identity.caller.label()),
            _following: paddock.workspace_watches.follow(session),
            _viewer: crate::metrics::Viewer::open("events"),
            paddock: paddock.clone(),
            session,
            rx,
            last: after,
            pending: VecDeque::new(),
            catching_up: true,
            html,
            next_frame: None,
        })
    }

    /// The frames, then why they ended.
    pub fn frames(self) -> impl futures_util::Stream<Item = Result<Frame, Ending>> + Send {
        futures_util::stream::unfold(Some(self), |tail| async move {
            let mut tail = tail?;
            match tail.next().await {
                Ok(frame) => Some((Ok(frame), Some(tail))),
                Err(ending) => Some((Err(ending), None)),
            }
        })
    }

    /// The next frame, or why the stream ends (the session was deleted, or
    /// the store failed: the client reconnects and resumes).
    async fn next(&mut self) -> Result<Frame, Ending> {
        if let Some(frame) = self.next_frame.take() {
            return Ok(frame);
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.seq;
                return self.frames_of(&event);
            }
            if self.catching_up {
                let page = match self
                    .paddock
                    .store
                    .events_after(self.session, self.last, EVENTS_PAGE)
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::error!(session = %self.session, "cannot replay events: {e}");
                        return Err(Ending::Failed);
                    }
                };
                // A short page is the end of the stored transcript; anything
                // later is in the subscription.
                self.catching_up = page.len() as i64 == EVENTS_PAGE;
                self.pending.extend(page);
                continue;
            }
            // With replicas (a bus between them), a quiet stream looks in
            // the store now and then: a notice another replica sent may
            // have been lost on the way. One process hears all its own.
            let quiet = if self.paddock.bus.is_some() {
                QUIET_CHECK
            } else {
                std::time::Duration::MAX
            };
            let heard = match tokio::time::timeout(quiet, self.rx.recv()).await {
                Ok(heard) => heard,
                Err(_) => {
                    match self
                        .paddock
                        .store
                        .events_after(self.session, self.last, 1)
                        .await
                    {
                        Ok(newer) => self.catching_up = !newer.is_empty(),
                        Err(e) => {
                            tracing::warn!(session = %self.session, "cannot look for events not heard of: {e}")
                        }
                    }
                    continue;
                }
            };
            match heard {
                Ok(HubMessage::Event(event)) => {
                    if event.seq <= self.last {
                        continue; // already sent from the store
                    }
                    if event.seq == self.last + 1 {
                        self.last = event.seq;
                        return self.frames_of(&event);
                    }
                    // A skipped seq: published out of order, or missed. It
                    // is committed, so the store has it (and this one).
                    self.catching_up = true;
                }
                Ok(HubMessage::Delta(delta)) => match Frame::json("delta", &*delta) {
                    Ok(frame) => return Ok(frame),
                    Err(e) => tracing::error!(session = %self.session, "delta not sent: {e}"),
                },
                Ok(HubMessage::Files(changes)) => match Frame::json("files", &*changes) {
                    Ok(frame) => return Ok(frame),
                    Err(e) => tracing::error!(session = %self.session, "files not sent: {e}"),
                },
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        session = %self.session,
                        missed,
                        last = self.last,
                        "viewer fell behind the live stream; catching up from the store"
                    );
                    self.paddock.hub.note_lag_recovery();
                    self.catching_up = true;
                }
                Err(RecvError::Closed) => {
                    tracing::debug!(session = %self.session, "stream closed (session deleted)");
                    return Err(Ending::Deleted);
                }
            }
        }
    }

    /// An event's frame; first its `html` frame, if asked for and it has one.
    /// An event that cannot be written ends the stream: better than a silent
    /// hole, the client reconnects, and the log says why.
    fn frames_of(&mut self, event: &Event) -> Result<Frame, Ending> {
        let not_sent = |e: serde_json::Error| {
            tracing::error!(session = %event.session_id, seq = event.seq, "event not sent: {e}");
            Ending::Failed
        };
        let mut frame = Frame::json("event", event).map_err(not_sent)?;
        frame.id = Some(event.seq);
        match self
            .html
            .then(|| app::markdown::event_html(event))
            .flatten()
        {
            Some(html) => {
                self.next_frame = Some(frame);
                Frame::json("html", &html).map_err(not_sent)
            }
            None => Ok(frame),
        }
    }
}
