//! `GET /api/updates`: the sessions list as Server-Sent Events, so statuses
//! and costs change on the page without a reload. Each caller hears only of
//! the sessions they may see; when access changes (a share, an unshare) the
//! stream says `resync` and the page reloads its list, and when the
//! caller's credentials no longer hold (checked at each access change and
//! every 30 s, as every stream does), the stream ends.

use super::access_watch;
use super::error::ApiResult;
use super::frames::{self, Frame};
use super::routes::Routes;
use crate::auth::Identity;
use crate::hub::SessionUpdate;
use crate::paddock::Paddock;
use app::accounts::{Caller, ShareLevel};
use app::domain::{Session, SessionId};
use axum::extract::State;
use axum::response::sse::KeepAlive;
use axum::response::IntoResponse;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};

pub fn routes() -> Routes {
    Routes::default().get("/api/updates", updates)
}

/// What one caller may hear of.
struct Audience {
    caller: Caller,
    shared: HashMap<SessionId, ShareLevel>,
    /// Sessions this caller knows of: visible when the stream opened, or
    /// sent since. Only their deletions are told.
    known: HashSet<SessionId>,
}

impl Audience {
    async fn load(paddock: &Paddock, caller: &Caller) -> ApiResult<Self> {
        let shared = match caller.user {
            Some(user) if !caller.is_admin() => paddock
                .store
                .shared_with(user)
                .await
                .map_err(app::domain::AppError::from)?
                .into_iter()
                .collect(),
            _ => HashMap::new(),
        };
        let known = app::api::Backend::list_sessions(paddock, caller)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        Ok(Self {
            caller: caller.clone(),
            shared,
            known,
        })
    }

    fn sees(&self, session: &Session) -> bool {
        self.caller
            .access(session.owner, self.shared.get(&session.id).copied())
            .is_some()
    }
}

/// One caller's view of the sessions list as it changes.
pub struct Listener {
    /// Counted among its caller's streams while it lasts.
    _held: crate::stream_budget::Held,
    /// Counted in the `paddock_viewers` metric while it lasts.
    _viewer: crate::metrics::Viewer,
    paddock: Arc<Paddock>,
    identity: Identity,
    audience: Audience,
    sessions: broadcast::Receiver<SessionUpdate>,
    /// Whose access changed: a change of this viewer's (or everyone's)
    /// reloads what they may see.
    access: broadcast::Receiver<Option<app::domain::UserId>>,
}

fn resync() -> Frame {
    Frame::new("resync", String::new())
}

impl Listener {
    pub async fn open(paddock: &Arc<Paddock>, identity: Identity) -> ApiResult<Self> {
        // Counted first: one past the caller's streams costs no list read.
        let held = paddock.streams.take(&identity.caller)?;
        let sessions = paddock.hub.subscribe_sessions();
        let access = paddock.hub.subscribe_access();
        let audience = Audience::load(paddock, &identity.caller).await?;
        Ok(Self {
            _held: held,
            _viewer: crate::metrics::Viewer::open("updates"),
            paddock: paddock.clone(),
            identity,
            audience,
            sessions,
            access,
        })
    }

    /// The frames, until the caller's credentials no longer hold.
    pub fn frames(self) -> impl futures_util::Stream<Item = Frame> + Send {
        futures_util::stream::unfold(self, |mut listener| async move {
            let frame = listener.next().await?;
            Some((frame, listener))
        })
    }

    /// The next frame for this caller; `None` ends the stream.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            tokio::select! {
                update = self.sessions.recv() => match update {
                    Ok(SessionUpdate::Changed(s)) => {
                        if !self.audience.sees(&s) {
                            continue;
                        }
                        self.audience.known.insert(s.id);
                        return Some(Frame::json("session", &*s).unwrap_or_else(|e| {
                            tracing::error!(session = %s.id, "session row not sent: {e}");
                            resync()
                        }));
                    }
                    Ok(SessionUpdate::Deleted(id)) => {
                        if self.audience.known.remove(&id) {
                            return Some(Frame::new("deleted", id.to_string()));
                        }
                    }
                    Err(RecvError::Lagged(_)) => return Some(resync()),
                    Err(RecvError::Closed) => return None,
                },
                signal = self.access.recv() => {
                    if let Err(RecvError::Closed) = signal {
                        return None;
                    }
                    if !crate::hub::concerns(&signal, self.identity.caller.user) {
                        continue;
                    }
                    // One that cannot tell ends too: the viewer connects
                    // again, and is checked afresh.
                    if !matches!(self.paddock.auth.still_valid(&self.identity).await, Ok(true)) {
                        return None;
                    }
                    self.audience = Audience::load(&self.paddock, &self.identity.caller).await.ok()?;
                    return Some(resync());
                }
            }
        }
    }
}

/// `GET /api/updates`: session summaries as they change, for the sessions
/// list: `event: session` (the session as JSON), `event: deleted` (its id),
/// and `event: resync` when this viewer fell behind, or what they may see
/// changed, and should reload.
async fn updates(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
) -> ApiResult<impl IntoResponse> {
    let end = access_watch::stream_ends(paddock.clone(), identity.clone(), None);
    let listener = Listener::open(&paddock, identity).await?;
    Ok(frames::respond(
        listener.frames().map(Frame::into_sse),
        end,
        KeepAlive::default(),
    ))
}
