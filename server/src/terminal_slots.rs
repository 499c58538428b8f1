//! The terminals open now in each session's sandbox: their numbers, the
//! limit per session, and what closes them all when a session is deleted.
//! Who may open one, and the opening itself: [`crate::terminals`].

use crate::sync::lock;
use app::domain::{AppError, SessionId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Most terminals open at once in one session.
pub const PER_SESSION: usize = 8;

/// The terminals open now, by session: numbered in their session from 1,
/// each with what closes it from outside (the session's deletion).
#[derive(Clone, Default)]
pub struct TerminalSlots {
    open: Arc<Mutex<HashMap<SessionId, Held>>>,
}

#[derive(Default)]
struct Held {
    last: u32,
    open: HashMap<u32, CancellationToken>,
}

impl TerminalSlots {
    /// A number and a closing token for a new terminal, if the session has
    /// room for one.
    pub fn claim(&self, session: SessionId) -> Result<(u32, CancellationToken), AppError> {
        let mut open = lock(&self.open);
        let held = open.entry(session).or_default();
        if held.open.len() >= PER_SESSION {
            return Err(AppError::Conflict(format!(
                "{PER_SESSION} terminals are open in this session already: close one first."
            )));
        }
        held.last += 1;
        let closing = CancellationToken::new();
        held.open.insert(held.last, closing.clone());
        Ok((held.last, closing))
    }

    pub fn release(&self, session: SessionId, number: u32) {
        let mut open = lock(&self.open);
        if let Some(held) = open.get_mut(&session) {
            held.open.remove(&number);
        }
    }

    /// Closes every terminal of the session, and forgets it (it is being
    /// deleted).
    pub fn close_all(&self, session: SessionId) {
        if let Some(held) = lock(&self.open).remove(&session) {
            for closing in held.open.values() {
                closing.cancel();
            }
        }
    }
}
