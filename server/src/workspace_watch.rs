//! A session's workspace changing, live, for those watching its transcript
//! on this server: while at least one of its transcript streams is open
//! here, its sandbox's agent watches the workspace ([`Sandbox::watch`])
//! and each batch of changes goes to the session's viewers through the hub
//! (a `files` frame, which their Files view follows); when the last viewer
//! leaves, the watch ends. It waits for the sandbox's agent, started by the
//! session's first command or file operation (never for the watch: another
//! replica may be starting it), and after a watch that ended it tries again
//! a few seconds later; a sandbox that cannot be watched at all (a local
//! one) is not. A watch that begins says that anything may have changed,
//! since nothing was watched before it. Each replica watches for its own
//! viewers.

use crate::hub::Hub;
use crate::sandbox::{Sandbox, SandboxError};
use crate::sync::lock;
use app::domain::SessionId;
use app::files::FilesChanged;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long after a watch that ended (or could not begin) the next begins.
const RETRY: Duration = Duration::from_secs(3);

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
    let mut told_partial = false;
    loop {
        let watched = tokio::select! {
            watched = sandbox.watch(session) => watched,
            () = stop.cancelled() => return,
        };
        match watched {
            Ok(mut batches) => {
                // Nothing was watched before: anything may have changed.
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
                        Some(Ok(changes)) => {
                            if changes.partial && !told_partial {
                                told_partial = true;
                                tracing::info!(%session, "some of the workspace's folders are not watched (too many, or the kernel's inotify limits): changes in them are not shown live");
                            }
                            hub.deliver_files(
                                session,
                                FilesChanged {
                                    paths: changes.paths,
                                    more: changes.more,
                                },
                            );
                        }
                        Some(Err(e)) => {
                            tracing::debug!(%session, "the workspace's watch ended: {e}");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(SandboxError::Unsupported(_)) => return,
            Err(e) => tracing::debug!(%session, "the workspace is not watched now: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = stop.cancelled() => return,
        }
    }
}
