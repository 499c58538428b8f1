//! The live streams each person holds open at once, bounded: a
//! transcript's (`/api/sessions/{id}/events`, or each transcript one
//! `/api/live` connection follows) and the sessions list's. Each holds a
//! receiver and a place among the session's viewers, and looks at its
//! caller's access every 30 s: a script opening them without end would
//! load the database for as long as it liked. Per server process.

use crate::sync::lock;
use app::accounts::Caller;
use app::domain::AppError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct StreamBudget {
    per_person: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One stream, counted while it lives.
#[derive(Debug)]
pub struct Held {
    budget: StreamBudget,
    holder: String,
}

impl StreamBudget {
    pub fn new(per_person: usize) -> Self {
        Self {
            per_person,
            held: Arc::default(),
        }
    }

    /// Counts one more stream of `caller`'s, or says why not.
    pub fn take(&self, caller: &Caller) -> Result<Held, AppError> {
        let holder = caller
            .user
            .map_or_else(|| caller.label(), |user| user.to_string());
        let mut held = lock(&self.held);
        let n = held.entry(holder.clone()).or_default();
        if *n >= self.per_person {
            return Err(AppError::RateLimited(format!(
                "You follow {} live streams at once already (tabs, scripts): close some first \
                 (PADDOCK_STREAMS_PER_PERSON).",
                self.per_person
            )));
        }
        *n += 1;
        Ok(Held {
            budget: self.clone(),
            holder,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = lock(&self.budget.held);
        if let Some(n) = held.get_mut(&self.holder) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_person_holds_at_most_their_share() {
        let budget = StreamBudget::new(2);
        let (ada, bob) = (
            Caller::local_operator(),
            Caller {
                user: Some(uuid::Uuid::now_v7()),
                ..Caller::local_operator()
            },
        );
        let first = budget.take(&ada).unwrap();
        let second = budget.take(&ada).unwrap();
        assert!(matches!(budget.take(&ada), Err(AppError::RateLimited(_))));
        let theirs = budget.take(&bob).unwrap();
        drop(first);
        let third = budget.take(&ada).unwrap();
        drop((second, third, theirs));
        assert!(lock(&budget.held).is_empty());
    }
}
