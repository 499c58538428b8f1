//! A session's workspace changing, live, for those watching its transcript
//! on this server: while at least one of its transcript streams is open
//! here, its sandbox's agent watches the workspace ([`Sandbox::watch`])
//! and each batch of changes goes to the session's viewers through the hub
//! (a `files` frame, which their Files view follows); when the last viewer
//! leaves, the watch ends. A sandbox that is not running yet, or whose agent
//! cannot be reached, is looked at again at the session's next event (its
//! sandbox starts with a run) and every few seconds; one that cannot
//! be watched at all (a local sandbox) is not. A watch that begins says
//! that anything may have changed, since nothing was watched before it.
//! Each replica watches for its own viewers.

use crate::hub::{Hub, HubMessage};
use crate::sandbox::{Sandbox, SandboxError};
use crate::sync::lock;
use app::domain::SessionId;
use app::files::FilesChanged;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// How long before a workspace that could not be watched is tried again,
/// if its session has no event first.
const RETRY: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct WorkspaceWatches {
    inner: Arc<Inner>,
}

struct Inner {
    sandbox: Arc<dyn Sandbox>,
    hub: Hub,
    watched: Mutex<HashMap<SessionId, Watched>>,
}

struct Watched {
    viewers: usize,
    stop: CancellationToken,
}

/// Keeps a session's workspace watched while it lives.
pub struct Following {
    inner: Arc<Inner>,
    session: SessionId,
}

impl WorkspaceWatches {
    pub fn new(sandbox: Arc<dyn Sandbox>, hub: Hub) -> Self {
        Self {
            inner: Arc::new(Inner {
                sandbox,
                hub,
                watched: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// One more viewer of `session` here: its workspace is watched (from
    /// now, if it was not) until the last such viewer is dropped.
    pub fn follow(&self, session: SessionId) -> Following {
        let mut watched = lock(&self.inner.watched);
        let entry = watched.entry(session).or_insert_with(|| {
            let stop = CancellationToken::new();
            tokio::spawn(watch(
                self.inner.sandbox.clone(),
                self.inner.hub.clone(),
                session,
                stop.clone(),
            ));
            Watched { viewers: 0, stop }
        });
        entry.viewers += 1;
        Following {
            inner: self.inner.clone(),
            session,
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut watched = lock(&self.inner.watched);
        if let Some(w) = watched.get_mut(&self.session) {
            w.viewers -= 1;
            if w.viewers == 0 {
                w.stop.cancel();
                watched.remove(&self.session);
            }
        }
    }
}

/// Watches the session's workspace until `stop`, again after each end.
async fn watch(sandbox: Arc<dyn Sandbox>, hub: Hub, session: SessionId, stop: CancellationToken) {
    let mut events = hub.subscribe(session);
    loop {
        let watched = tokio::select! {
            watched = sandbox.watch(session) => watched,
            () = stop.cancelled() => return,
        };
        match watched {
            Ok(mut batches) => {
                hub.deliver_files(
                    session,
                    FilesChanged {
                        paths: Vec::new(),
                        more: true,
                    },
                );
                loop {
                    let batch = tokio::select! {
                        batch = batches.next() => batch,
                        () = stop.cancelled() => return,
                    };
                    match batch {
                        Some(Ok(changes)) => hub.deliver_files(
                            session,
                            FilesChanged {
                                paths: changes.paths,
                                more: changes.more,
                            },
                        ),
                        Some(Err(e)) => {
                            tracing::debug!(%session, "the workspace's watch ended: {e}");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(SandboxError::Unsupported(_)) => return,
            Err(e) => tracing::trace!(%session, "the workspace is not watched now: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            more = next_event(&mut events) => if !more { return },
            () = stop.cancelled() => return,
        }
    }
}

/// Waits for the session's next stored event: `false` when the session is
/// gone.
async fn next_event(events: &mut broadcast::Receiver<HubMessage>) -> bool {
    loop {
        match events.recv().await {
            Ok(HubMessage::Event(_)) | Err(RecvError::Lagged(_)) => return true,
            Ok(_) => {}
            Err(RecvError::Closed) => return false,
        }
    }
}
