//! The notifications half of the store: endpoints with their sealed
//! secrets, each endpoint's cursor over each session's event log, and the
//! messages made for it with how sending them went. Every database
//! implements it beside [`Store`](super::Store), which requires it.

use super::{Result, SealedSecret};
use app::domain::{Event, SessionId, UserId};
use app::notifications::{Endpoint, EndpointDraft, EndpointId, Message, Scope};
use chrono::{DateTime, Utc};

/// Messages listed at most, newest first.
pub const MESSAGES_LISTED: usize = 100;
/// Messages kept in the log, in days.
pub const MESSAGES_KEPT_DAYS: i64 = 30;
/// Endpoints one person may make on a template or session.
pub const ENDPOINTS_MAX: usize = 10;

/// An endpoint's secret as stored: sealed under the master key.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedEndpointSecret {
    pub id: EndpointId,
    pub secret: String,
}

#[async_trait::async_trait]
pub trait Notifications {
    /// A new endpoint, its cursor past what its sessions did before it.
    async fn create_endpoint(
        &self,
        id: EndpointId,
        scope: Scope,
        owner: Option<UserId>,
        draft: &EndpointDraft,
        secret: &SealedSecret,
        by: &str,
    ) -> Result<Endpoint>;
    async fn get_endpoint(
        &self,
        id: EndpointId,
    ) -> Result<Option<(Endpoint, SealedEndpointSecret)>>;
    async fn list_endpoints(&self, scope: Scope) -> Result<Vec<Endpoint>>;
    /// The endpoints with work at `now` (for the servers that deliver): a
    /// pending message due, or a session in scope whose log has events
    /// past the endpoint's cursor.
    async fn endpoints_due(&self, now: DateTime<Utc>) -> Result<Vec<DueEndpoint>>;
    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool>;
    /// Holds an endpoint for `holder` until `until`: `false` when another
    /// holds it past `now`.
    async fn hold_endpoint(
        &self,
        id: EndpointId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Lets go of every endpoint `holder` holds.
    async fn release_endpoints(&self, holder: &str) -> Result<()>;
    /// Sessions the endpoint hears of (its session, or its template's
    /// sessions of its owner) whose logs go past its cursor: each with its
    /// newest event's number, the least recently active first.
    async fn sessions_behind(
        &self,
        endpoint: &Endpoint,
        limit: i64,
    ) -> Result<Vec<(SessionId, i64)>>;
    /// A session's events past the endpoint's cursor that may notify
    /// (status changes, permission requests), in order.
    async fn events_behind(
        &self,
        endpoint: EndpointId,
        session: SessionId,
        limit: i64,
    ) -> Result<Vec<Event>>;
    /// A session's newest events of `kind` (its name, `assistant_text`)
    /// before `seq`, newest first.
    async fn events_before(
        &self,
        session: SessionId,
        seq: i64,
        kind: &str,
        limit: i64,
    ) -> Result<Vec<Event>>;
    /// The endpoint is done with the session's log through `seq`.
    async fn advance_cursor(
        &self,
        endpoint: EndpointId,
        session: SessionId,
        seq: i64,
    ) -> Result<()>;
    /// Stores a new message (pending) with its body, and advances the
    /// cursor past its event, at once.
    async fn queue_message(&self, message: &Message, body: &str, seq: i64) -> Result<()>;
    /// The pending message due first (the oldest among those due alike),
    /// with its body.
    async fn next_message(&self, endpoint: EndpointId) -> Result<Option<(Message, String)>>;
    /// Stores how a try went, unless the message was sent again by hand
    /// since it was read (its `tried_since` is no longer the one read):
    /// the try's result is then not this message's any more.
    async fn update_message(&self, message: &Message) -> Result<()>;
    /// Forgets every endpoint's messages from before `before` that are no
    /// longer pending (the log keeps [`MESSAGES_KEPT_DAYS`]).
    async fn forget_messages(&self, before: DateTime<Utc>) -> Result<()>;
    /// Sets the newest event that may notify of the sessions active since
    /// `since` again, from their logs: a replica of an older version (one
    /// still serving during an upgrade) stores events without it, and an
    /// endpoint would not look at them.
    async fn catch_up_notable(&self, since: DateTime<Utc>) -> Result<()>;
    /// The newest messages ([`MESSAGES_LISTED`] at most).
    async fn messages(&self, endpoint: EndpointId) -> Result<Vec<Message>>;
    /// Sends a message again (pending, due `now`, tried anew for a day),
    /// unless it is pending and due already (being tried, or about to).
    async fn redeliver(
        &self,
        endpoint: EndpointId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Redelivery>;
}

/// An endpoint with work, and who made it (`None`: the local operator,
/// with sign-in off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueEndpoint {
    pub id: EndpointId,
    pub maker: Option<UserId>,
}

/// What asking to send a message again came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redelivery {
    /// Pending again, due now.
    Queued,
    /// Pending and due already: being tried, or about to be.
    Pending,
    /// No such message.
    Missing,
}
