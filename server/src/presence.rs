//! Who has a session open right now: each open transcript stream counts its
//! caller while it lasts, so a session's page can say who else is watching.
//! Per server process (with several replicas, each knows its own viewers).

use crate::sync::lock;
use app::domain::SessionId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Presence {
    watching: Arc<Mutex<HashMap<SessionId, BTreeMap<String, usize>>>>,
}

/// Counts one viewer while it lives.
pub struct Watching {
    presence: Presence,
    session: SessionId,
    label: String,
}

impl Presence {
    pub fn watch(&self, session: SessionId, label: String) -> Watching {
        *lock(&self.watching)
            .entry(session)
            .or_default()
            .entry(label.clone())
            .or_default() += 1;
        Watching {
            presence: self.clone(),
            session,
            label,
        }
    }

    /// The labels of those watching `session`, each once, in order.
    pub fn watchers(&self, session: SessionId) -> Vec<String> {
        lock(&self.watching)
            .get(&session)
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut all = lock(&self.presence.watching);
        if let Some(people) = all.get_mut(&self.session) {
            if let Some(n) = people.get_mut(&self.label) {
                *n -= 1;
                if *n == 0 {
                    people.remove(&self.label);
                }
            }
            if people.is_empty() {
                all.remove(&self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_viewers_while_they_watch() {
        let p = Presence::default();
        let s = uuid::Uuid::from_u128(1);
        let a = p.watch(s, "ada".into());
        let a2 = p.watch(s, "ada".into());
        let b = p.watch(s, "bob".into());
        assert_eq!(p.watchers(s), ["ada", "bob"]);
        drop(a);
        assert_eq!(p.watchers(s), ["ada", "bob"]);
        drop((a2, b));
        assert!(p.watchers(s).is_empty());
        assert!(lock(&p.watching).is_empty());
    }
}
