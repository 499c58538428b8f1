//! The hub: live fan-out of each session's transcript to its viewers.
//!
//! The store is the source of truth; the hub only saves viewers from polling
//! it. Every persisted event is published *after* its transaction committed
//! (by the [`Journal`](crate::journal::Journal)), so anything a viewer receives
//! from the hub can also be read back from the store. That is what lets the
//! SSE route (`http/events.rs`) repair every imperfection of a broadcast
//! channel from the store: a viewer that lags behind, or sees a `seq` skip
//! because two writers published out of order, re-reads the missing events
//! instead of losing them. Deltas (token fragments) are not stored and may be
//! lost that way; the completed block they belong to never is.
//!
//! One `tokio::sync::broadcast` channel per session with viewers: created by
//! the first [`Hub::subscribe`], dropped as soon as a publish finds nobody
//! listening, or when the session is deleted ([`Hub::close`], which ends
//! every viewer's stream). Sessions nobody watches cost nothing.
//!
//! One more channel carries session summaries (status, cost, activity) to
//! the sessions list, which watches all sessions at once. Summaries are not
//! numbered: a list that lags simply reloads. And one says that who may see
//! what has changed (a share, a revoked token, a disabled account): every
//! open stream then checks its caller again, and ends or narrows at once.
//!
//! With several replicas (PostgreSQL), what is published here is also
//! relayed on the [`Bus`] to the other replicas, whose hubs deliver it to
//! their own viewers ([`Hub::deliver_event`] and the like, which relay
//! nothing back).

use crate::bus::{Bus, Notice};
use crate::sync::lock;
use app::domain::{Delta, Event, Session, SessionId, UserId};
use app::files::FilesChanged;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Messages a session's channel carries.
#[derive(Clone, Debug)]
pub enum HubMessage {
    /// A stored event (shared: every viewer gets the same allocation).
    Event(Arc<Event>),
    /// A transient fragment of a block still being generated.
    Delta(Arc<Delta>),
    /// What just changed in the session's workspace.
    Files(Arc<FilesChanged>),
}

/// A change the sessions list shows.
#[derive(Clone, Debug)]
pub enum SessionUpdate {
    Changed(Arc<Session>),
    Deleted(SessionId),
}

/// Per-session broadcast channels. Cheap to clone: clones share the channels.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    channels: Mutex<HashMap<SessionId, broadcast::Sender<HubMessage>>>,
    sessions: broadcast::Sender<SessionUpdate>,
    /// Whose access changed (everyone's: `None`).
    access: broadcast::Sender<Option<UserId>>,
    /// Cancelled when the server shuts down: live streams end, so a graceful
    /// shutdown does not wait for viewers that never leave.
    shutdown: CancellationToken,
    lag_recoveries: AtomicU64,
    /// The other replicas, when there are any.
    relay: OnceLock<Bus>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether an access change `heard` on [`Hub::subscribe_access`] is for
/// `user`'s streams: one of theirs or everyone's, or signals missed.
pub fn concerns(
    heard: &Result<Option<UserId>, broadcast::error::RecvError>,
    user: Option<UserId>,
) -> bool {
    match heard {
        Ok(Some(changed)) => user == Some(*changed),
        Ok(None) | Err(_) => true,
    }
}

impl Hub {
    /// Messages a channel holds for its slowest viewer before that viewer
    /// lags (and falls back to the store). Deltas come a few per token, so
    /// this covers a few seconds of a viewer being slower than the model.
    pub const DEFAULT_CAPACITY: usize = 1024;

    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A hub whose channels hold `capacity` messages (at least 1); tests use
    /// a tiny one to make viewers lag.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                channels: Mutex::new(HashMap::new()),
                sessions: broadcast::channel(256).0,
                access: broadcast::channel(16).0,
                shutdown: CancellationToken::new(),
                lag_recoveries: AtomicU64::new(0),
                relay: OnceLock::new(),
            }),
        }
    }

    /// Relays from now on what is published here to the other replicas.
    pub fn relay_to(&self, bus: Bus) {
        let _ = self.inner.relay.set(bus);
    }

    fn relay(&self, notice: impl FnOnce() -> Notice) {
        if let Some(bus) = self.inner.relay.get() {
            bus.post(notice());
        }
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<SessionId, broadcast::Sender<HubMessage>>> {
        lock(&self.inner.channels)
    }

    /// Receives everything published for `session` from now on. Subscribe
    /// *before* reading the store, so nothing falls between the two.
    pub fn subscribe(&self, session: SessionId) -> broadcast::Receiver<HubMessage> {
        let mut channels = self.channels();
        // Forget channels whose viewers all left since their last publish.
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels
            .entry(session)
            .or_insert_with(|| broadcast::channel(self.inner.capacity).0)
            .subscribe()
    }

    /// Sends a stored event to the session's viewers, if it has any. Call
    /// only after the event's transaction committed.
    pub fn publish_event(&self, event: Event) {
        self.relay(|| Notice::Event {
            session: event.session_id,
            seq: event.seq,
        });
        self.deliver_event(event);
    }

    /// Sends a token fragment to the session's viewers, if it has any.
    pub fn publish_delta(&self, delta: Delta) {
        self.relay(|| Notice::Delta(delta.clone()));
        self.deliver_delta(delta);
    }

    /// Sends an event another replica stored to this one's viewers.
    pub fn deliver_event(&self, event: Event) {
        self.publish(event.session_id, HubMessage::Event(Arc::new(event)));
    }

    /// Sends a fragment another replica received to this one's viewers.
    pub fn deliver_delta(&self, delta: Delta) {
        self.publish(delta.session_id, HubMessage::Delta(Arc::new(delta)));
    }

    /// Sends what changed in the session's workspace to its viewers here
    /// (each replica watches for its own: never relayed).
    pub fn deliver_files(&self, session: SessionId, changes: FilesChanged) {
        self.publish(session, HubMessage::Files(Arc::new(changes)));
    }

    /// Whether anyone here watches `session`.
    pub fn watched(&self, session: SessionId) -> bool {
        self.channels()
            .get(&session)
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// The sessions someone here watches.
    pub fn watched_sessions(&self) -> Vec<SessionId> {
        self.channels()
            .iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .map(|(session, _)| *session)
            .collect()
    }

    fn publish(&self, session: SessionId, message: HubMessage) {
        let mut channels = self.channels();
        if let Some(tx) = channels.get(&session) {
            if tx.send(message).is_err() {
                // Nobody listens any more: drop the channel.
                channels.remove(&session);
            }
        }
    }

    /// Ends every viewer's stream of `session` (it was deleted).
    pub fn close(&self, session: SessionId) {
        if self.channels().remove(&session).is_some() {
            tracing::debug!(session = %session, "live viewers disconnected");
        }
    }

    /// Receives every session's summary changes from now on.
    pub fn subscribe_sessions(&self) -> broadcast::Receiver<SessionUpdate> {
        self.inner.sessions.subscribe()
    }

    /// Whether anyone watches the sessions list (so a summary is worth
    /// reading from the store).
    pub fn watches_sessions(&self) -> bool {
        self.inner.sessions.receiver_count() > 0
    }

    /// Sends a summary change to the sessions lists, here and on the
    /// other replicas.
    pub fn publish_session(&self, update: SessionUpdate) {
        self.relay(|| match &update {
            SessionUpdate::Changed(s) => Notice::Session { session: s.id },
            SessionUpdate::Deleted(id) => Notice::Deleted { session: *id },
        });
        self.deliver_session(update);
    }

    /// Tells the other replicas' sessions lists that a session changed
    /// (when nobody here watches the list, so there is no summary to send).
    pub fn relay_session_change(&self, session: SessionId) {
        self.relay(|| Notice::Session { session });
    }

    /// Sends a summary change to this replica's sessions lists.
    pub fn deliver_session(&self, update: SessionUpdate) {
        let _ = self.inner.sessions.send(update);
    }

    /// Says that what `user` may see or do changed (shares, tokens, their
    /// account), so that their open streams check their caller again, on
    /// every replica; nobody else's do.
    pub fn access_changed(&self, user: UserId) {
        self.relay(|| Notice::Access { user: Some(user) });
        self.deliver_access_change(Some(user));
    }

    /// Has this replica's open streams of `user` (everyone's: `None`)
    /// check their caller again.
    pub fn deliver_access_change(&self, user: Option<UserId>) {
        let _ = self.inner.access.send(user);
    }

    /// Receives [`Hub::access_changed`] signals: whose access changed (a
    /// lagging receiver has missed some, which means: check again; see
    /// [`concerns`]).
    pub fn subscribe_access(&self) -> broadcast::Receiver<Option<UserId>> {
        self.inner.access.subscribe()
    }

    /// Ends every live stream (the server is shutting down).
    pub fn shut_down(&self) {
        self.inner.shutdown.cancel();
    }

    /// Completes when the server shuts down; live streams end with it.
    pub fn shutting_down(&self) -> WaitForCancellationFutureOwned {
        self.inner.shutdown.clone().cancelled_owned()
    }

    /// Number of sessions that currently have a channel.
    pub fn live_sessions(&self) -> usize {
        self.channels().len()
    }

    /// Counts a viewer that lagged behind its channel and was caught up from
    /// the store.
    pub(crate) fn note_lag_recovery(&self) {
        self.inner.lag_recoveries.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times a viewer lagged and was caught up from the store since
    /// start-up (a sign that the capacity is too small for the load).
    pub fn lag_recoveries(&self) -> u64 {
        self.inner.lag_recoveries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use app::domain::{DeltaKind, EventKind};

    fn event(session: SessionId, seq: i64) -> Event {
        Event {
            session_id: session,
            seq,
            at: chrono::Utc::now(),
            kind: EventKind::AssistantText { text: "hi".into() },
        }
    }

    #[tokio::test]
    async fn channels_exist_only_while_watched() {
        let hub = Hub::new();
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        hub.publish_event(event(a, 1));
        assert_eq!(hub.live_sessions(), 0, "publishing creates nothing");

        let mut rx = hub.subscribe(a);
        hub.publish_event(event(a, 1));
        hub.publish_event(event(b, 1));
        hub.publish_delta(Delta {
            session_id: a,
            seq_hint: 1,
            block: 0,
            kind: DeltaKind::Text,
            text: "x".into(),
        });
        assert!(matches!(rx.recv().await.unwrap(), HubMessage::Event(e) if e.seq == 1));
        assert!(matches!(rx.recv().await.unwrap(), HubMessage::Delta(d) if d.text == "x"));
        assert_eq!(hub.live_sessions(), 1);

        drop(rx);
        hub.publish_event(event(a, 2));
        assert_eq!(hub.live_sessions(), 0, "dropped once nobody listens");
    }

    #[tokio::test]
    async fn close_ends_the_stream() {
        let hub = Hub::new();
        let a = uuid::Uuid::now_v7();
        let mut rx = hub.subscribe(a);
        hub.close(a);
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
    }
}
