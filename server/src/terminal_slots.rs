//! The terminals open now in each session's sandbox: their numbers, the
//! limit per session, and what closes them from outside (the session's
//! deletion, or its change to read-only). Who may open one, and the opening
//! itself: [`crate::terminals`].

use crate::sync::lock;
use app::domain::{AppError, PermissionMode, Session, SessionId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most terminals open at once in one session.
pub const PER_SESSION: usize = 8;

/// The terminals open now, by session: numbered in their session from 1.
#[derive(Clone, Default)]
pub struct TerminalSlots {
    open: Arc<Mutex<HashMap<SessionId, Held>>>,
    /// The connections that carry them and the recording of their ends,
    /// waited for at shutdown.
    tasks: TaskTracker,
}

#[derive(Default)]
struct Held {
    last: u32,
    /// Each open terminal's number, and what closes it with a reason.
    open: HashMap<u32, Closing>,
}

/// Cancelled when a terminal must close; the reason is set first.
#[derive(Clone, Default)]
pub struct Closing {
    token: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
}

impl Closing {
    fn close(&self, why: &str) {
        lock(&self.why).get_or_insert_with(|| why.to_owned());
        self.token.cancel();
    }

    /// Completes when the terminal must close, with why.
    pub async fn closed(&self) -> String {
        self.token.cancelled().await;
        lock(&self.why).clone().unwrap_or_default()
    }
}

/// A terminal's place in its session, given back when dropped (however the
/// terminal's opening or connection ended).
pub struct Slot {
    slots: TerminalSlots,
    session: SessionId,
    pub number: u32,
    pub closing: Closing,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.slots.open);
        if let Some(held) = open.get_mut(&self.session) {
            held.open.remove(&self.number);
        }
    }
}

impl TerminalSlots {
    /// A place for a new terminal, if the session has room for one.
    pub fn claim(&self, session: SessionId) -> Result<Slot, AppError> {
        let mut open = lock(&self.open);
        let held = open.entry(session).or_default();
        if held.open.len() >= PER_SESSION {
            return Err(AppError::Conflict(format!(
                "{PER_SESSION} terminals are open in this session already: close one first."
            )));
        }
        held.last += 1;
        let closing = Closing::default();
        held.open.insert(held.last, closing.clone());
        Ok(Slot {
            slots: self.clone(),
            session,
            number: held.last,
            closing,
        })
    }

    /// Closes every terminal open in the session, saying `why`.
    pub fn close_all(&self, session: SessionId, why: &str) {
        if let Some(held) = lock(&self.open).get(&session) {
            for closing in held.open.values() {
                closing.close(why);
            }
        }
    }

    /// Closes the session's terminals if it is read-only now (a shell
    /// there could change its workspace): wherever its settings changed,
    /// each replica follows the session's row.
    pub fn follow(&self, session: &Session) {
        if session.permission_mode == PermissionMode::ReadOnly {
            self.close_all(session.id, "the session became read-only");
        }
    }

    /// Whether any terminal is open here in the session.
    pub fn any_open(&self, session: SessionId) -> bool {
        lock(&self.open)
            .get(&session)
            .is_some_and(|held| !held.open.is_empty())
    }

    /// What carries a terminal, or records its end: waited for at
    /// shutdown.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// At shutdown (every terminal told to close already): waits up to
    /// `within` for their connections to end and their ends to be
    /// recorded, so that no transcript says one is open that is not.
    pub async fn wait_closed(&self, within: Duration) {
        self.tasks.close();
        if tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "terminals still closing at shutdown: their transcripts may say they are open"
            );
        }
    }

    /// Forgets a deleted session (its numbering included).
    pub fn forget(&self, session: SessionId) {
        lock(&self.open).remove(&session);
    }
}
