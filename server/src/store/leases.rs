//! The replicas half of the store: which Paddock process runs each session
//! (a lease that process renews while it runs), and the prompts waiting for
//! a run, counted in the database so that every process sees them. Every
//! database implements it beside [`Store`](super::Store), which requires it.
//!
//! A lease is a row `(session, replica, expires_at)`. A replica takes it
//! when there is none, when it lapsed, or when it is its own (a process
//! restarted under the same name takes its leases back at once). Times are
//! the replicas' clocks, which must agree to well within a lease's length.

use super::Result;
use app::domain::{Event, EventKind, SessionId};
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
pub trait Leases {
    /// Takes or renews the session's lease for `replica` until `until`,
    /// unless another replica holds one that has not lapsed at `now`.
    /// `false`: someone else runs the session (or it does not exist).
    async fn acquire_lease(
        &self,
        session: SessionId,
        replica: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Extends `replica`'s lease until `until`: `false` when it holds none
    /// any more (given up, or taken over after it lapsed).
    async fn renew_lease(
        &self,
        session: SessionId,
        replica: &str,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// The replica whose lease on the session has not lapsed at `now`.
    async fn lease_holder(&self, session: SessionId, now: DateTime<Utc>) -> Result<Option<String>>;
    /// Gives the session's lease up, if `replica` holds it.
    async fn release_lease(&self, session: SessionId, replica: &str) -> Result<()>;
    /// Sessions with work nobody runs: mid-turn, or with prompts queued,
    /// with no lease, a lapsed one, or one of `replica`'s own (which it
    /// holds no run for, since it asks).
    async fn orphaned_sessions(&self, replica: &str, now: DateTime<Utc>) -> Result<Vec<SessionId>>;

    /// Appends a prompt (a `user_message` event) and queues it for a run,
    /// in one transaction. `None` when the session does not exist.
    async fn append_prompt(&self, session: SessionId, prompt: &EventKind) -> Result<Option<Event>>;
    /// Takes the oldest queued prompt for a run: `false` when none waits.
    async fn take_prompt(&self, session: SessionId) -> Result<bool>;
    /// How many prompts wait for a run (0 for a session that is gone).
    async fn queued_prompts(&self, session: SessionId) -> Result<i64>;
    /// Drops every queued prompt (Stop); their messages stay in the
    /// transcript.
    async fn drop_prompts(&self, session: SessionId) -> Result<()>;
}
