//! `GET /api/updates`: the sessions list as Server-Sent Events, so statuses
//! and costs change on the page without a reload. Each caller hears only of
//! the sessions they may see; when access changes (a share, an unshare) the
//! stream says `resync` and the page reloads its list, and when the
//! caller's credentials no longer hold, the stream ends.

use super::error::ApiResult;
use super::routes::Routes;
use crate::auth::Identity;
use crate::hub::SessionUpdate;
use crate::paddock::Paddock;
use app::accounts::{Caller, ShareLevel};
use app::domain::{Session, SessionId};
use axum::extract::State;
use axum::http::HeaderName;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
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

struct Listener {
    /// Counted in the `paddock_viewers` metric while it lasts.
    _viewer: crate::metrics::Viewer,
    paddock: Arc<Paddock>,
    identity: Identity,
    audience: Audience,
    sessions: broadcast::Receiver<SessionUpdate>,
    access: broadcast::Receiver<()>,
}

fn resync() -> sse::Event {
    sse::Event::default().event("resync").data("")
}

impl Listener {
    /// The next frame for this caller; `None` ends the stream.
    async fn next(&mut self) -> Option<sse::Event> {
        loop {
            tokio::select! {
                update = self.sessions.recv() => match update {
                    Ok(SessionUpdate::Changed(s)) => {
                        if !self.audience.sees(&s) {
                            continue;
                        }
                        self.audience.known.insert(s.id);
                        return Some(
                            sse::Event::default()
                                .event("session")
                                .json_data(&*s)
                                .unwrap_or_else(|_| resync()),
                        );
                    }
                    Ok(SessionUpdate::Deleted(id)) => {
                        if self.audience.known.remove(&id) {
                            return Some(sse::Event::default().event("deleted").data(id.to_string()));
                        }
                    }
                    Err(RecvError::Lagged(_)) => return Some(resync()),
                    Err(RecvError::Closed) => return None,
                },
                signal = self.access.recv() => {
                    if let Err(RecvError::Closed) = signal {
                        return None;
                    }
                    if !self.paddock.auth.still_valid(&self.identity).await {
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
    let sessions = paddock.hub.subscribe_sessions();
    let access = paddock.hub.subscribe_access();
    let audience = Audience::load(&paddock, &identity.caller).await?;
    let shutdown = paddock.hub.shutting_down();
    let listener = Listener {
        _viewer: crate::metrics::Viewer::open("updates"),
        paddock,
        identity,
        audience,
        sessions,
        access,
    };
    let stream = futures_util::stream::unfold(listener, |mut listener| async move {
        let frame = listener.next().await?;
        Some((Ok::<_, Infallible>(frame), listener))
    })
    .take_until(shutdown);
    Ok((
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    ))
}
