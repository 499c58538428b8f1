//! The journal: the only way anything enters a session's transcript or
//! changes what viewers see of a session.
//!
//! An event is stored first, in the transaction that gives it its `seq`,
//! and published to the hub only after that commit (invariant 1): a viewer
//! can never see an event that a reconnect would not find, and a viewer that
//! misses a live one finds it in the store. Appending through the store
//! alone would leave live viewers without the event until something else is
//! published; publishing before the commit would let them see one a
//! reconnect cannot find. Status changes and usage go through here for the
//! same reason, and so do deltas, session rows and deletions, so that the
//! hub has one writer.
//!
//! Everything recorded or sent here passes the session's [`secret_mask`]
//! first, so no secret's value is stored in a transcript or streamed.

pub mod secret_mask;

use crate::hub::{Hub, SessionUpdate};
use crate::store::triggers::{Delivered, DeliveredPrompt};
use crate::store::Store;
use app::domain::{AppError, Delta, Event, EventKind, Session, SessionId, SessionStatus};
use secret_mask::SecretMasks;
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The waits between tries of a write that must not be lost
/// ([`persistently`]): doubling from the first, given up past the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_LAST: Duration = Duration::from_secs(8);

/// Runs `write` until it is done, trying again for a while (a database
/// failing over, or busy) when it fails: for what must not be lost, such
/// as a run's end or a terminal's closing, which tell whether a session is
/// in use. Not for a session gone (`NotFound`), nor once `lost` is
/// cancelled: then its error.
pub async fn persistently<T, F, Fut>(lost: &CancellationToken, mut write: F) -> Result<T, AppError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AppError>>,
{
    let mut wait = RETRY_FIRST;
    loop {
        let e = match write().await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        if wait > RETRY_LAST || matches!(e, AppError::NotFound(_)) {
            return Err(e);
        }
        tracing::debug!("a write to try again: {e}");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = lost.cancelled() => return Err(e),
        }
        wait *= 2;
    }
}

/// Stores, then publishes. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    store: Arc<dyn Store>,
    hub: Hub,
    masks: &'static SecretMasks,
    /// Told when a status change or a permission request is stored here:
    /// what notifications are made of.
    notable: Arc<Notify>,
}

fn not_found(id: SessionId) -> AppError {
    AppError::NotFound(format!("Session {id}"))
}

impl Journal {
    pub fn new(store: Arc<dyn Store>, hub: Hub) -> Self {
        Self {
            store,
            hub,
            masks: SecretMasks::global(),
            notable: Arc::default(),
        }
    }

    /// What is told when a status change or a permission request is stored
    /// (one waiter: the notification sender).
    pub fn notable(&self) -> Arc<Notify> {
        self.notable.clone()
    }

    /// Values of the session's secrets, masked from now on in all it
    /// records and sends (and in [`Journal::mask`]), with those set before.
    pub fn set_secrets(&self, session: SessionId, values: &[&str]) {
        self.masks.set(session, values);
    }

    /// The text with the session's secrets masked: for what reaches the
    /// model without being recorded (the log masks every line itself).
    pub fn mask<'a>(&self, session: SessionId, text: &'a str) -> Cow<'a, str> {
        self.masks.text(session, text)
    }

    /// A tool's output with the session's secrets masked, also where a
    /// truncated output was cut: what the model reads of a tool call.
    pub fn mask_output<'a>(&self, session: SessionId, output: &'a str) -> Cow<'a, str> {
        self.masks.output(session, output)
    }

    /// Appends an event to a session's transcript, then broadcasts it.
    pub async fn record(&self, session: SessionId, kind: EventKind) -> Result<Event, AppError> {
        let kind = self.masks.event(session, kind);
        let event = self
            .store
            .append_event(session, &kind)
            .await?
            .ok_or_else(|| not_found(session))?;
        if matches!(event.kind, EventKind::PermissionRequest { .. }) {
            self.notable.notify_one();
        }
        self.announce(event).await
    }

    /// Appends a prompt and queues it for a run (one transaction), then
    /// broadcasts it.
    pub async fn record_prompt(&self, session: SessionId, text: String) -> Result<Event, AppError> {
        let kind = self.masks.event(session, EventKind::UserMessage { text });
        let event = self
            .store
            .append_prompt(session, &kind)
            .await?
            .ok_or_else(|| not_found(session))?;
        self.announce(event).await
    }

    /// Appends a trigger delivery's record and its prompt, queues the
    /// prompt and notes the delivery prompted (one transaction), then
    /// broadcasts both. `false` when the delivery's claim was taken over:
    /// nothing was written.
    pub async fn record_delivered_prompt(
        &self,
        session: SessionId,
        delivered: Delivered<'_>,
        text: String,
    ) -> Result<bool, AppError> {
        let delivered = Delivered {
            record: self.masks.event(session, delivered.record),
            ..delivered
        };
        let prompt = self.masks.event(session, EventKind::UserMessage { text });
        match self
            .store
            .append_delivered_prompt(session, &delivered, &prompt)
            .await?
        {
            DeliveredPrompt::Queued(events) => {
                for event in *events {
                    self.announce(event).await?;
                }
                Ok(true)
            }
            DeliveredPrompt::SessionGone => Err(not_found(session)),
            DeliveredPrompt::Taken => Ok(false),
        }
    }

    /// Broadcasts a stored event, and the session's summary when the event
    /// changed it.
    async fn announce(&self, event: Event) -> Result<Event, AppError> {
        self.hub.publish_event(event.clone());
        if matches!(
            event.kind,
            EventKind::UserMessage { .. } | EventKind::Usage { .. }
        ) {
            self.publish_summary(event.session_id).await;
        }
        Ok(event)
    }

    /// Sets a session's status and records the change as an event (one
    /// transaction), then broadcasts the event and the session's new row.
    pub async fn set_status(
        &self,
        session: SessionId,
        status: SessionStatus,
        message: Option<String>,
    ) -> Result<Event, AppError> {
        let message = message.map(|m| self.mask(session, &m).into_owned());
        let event = self
            .store
            .set_status(session, status, message)
            .await?
            .ok_or_else(|| not_found(session))?;
        self.notable.notify_one();
        self.hub.publish_event(event.clone());
        self.publish_summary(session).await;
        Ok(event)
    }

    /// Adds one model call's tokens and cost to the session's counters and
    /// records it as a `usage` event (one transaction), then broadcasts
    /// both.
    pub async fn record_usage(
        &self,
        session: SessionId,
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
    ) -> Result<Event, AppError> {
        let event = self
            .store
            .record_usage(session, input_tokens, output_tokens, cost_usd)
            .await?
            .ok_or_else(|| not_found(session))?;
        crate::metrics::usage(input_tokens, output_tokens, cost_usd);
        self.announce(event).await
    }

    /// The model call whose fragments were being sent starts over: what
    /// was held back of them is dropped.
    pub fn restart_deltas(&self, session: SessionId) {
        self.masks.restart(session);
    }

    /// A fragment of a block still being generated: live only, never stored.
    pub fn delta(&self, delta: Delta) {
        if let Some(delta) = self.masks.delta(delta) {
            self.hub.publish_delta(delta);
        }
    }

    /// A session just made or changed, for the sessions lists.
    pub fn session_changed(&self, session: &Session) {
        self.hub
            .publish_session(SessionUpdate::Changed(Arc::new(session.clone())));
    }

    /// Removes a session and its transcript; its viewers' streams end (a
    /// reconnect gets 404) and the sessions list drops it.
    pub async fn delete(&self, session: SessionId) -> Result<(), AppError> {
        self.store.delete_session(session).await?;
        self.masks.forget(session);
        self.hub.close(session);
        self.hub.publish_session(SessionUpdate::Deleted(session));
        Ok(())
    }

    /// Sends the session's row to the sessions lists that watch it.
    async fn publish_summary(&self, session: SessionId) {
        if !self.hub.watches_sessions() {
            self.hub.relay_session_change(session);
            return;
        }
        match self.store.get_session(session).await {
            Ok(Some(s)) => self
                .hub
                .publish_session(SessionUpdate::Changed(Arc::new(s))),
            Ok(None) => {}
            Err(e) => tracing::warn!(%session, "session summary not sent: {e}"),
        }
    }
}
