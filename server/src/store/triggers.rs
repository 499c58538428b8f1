//! The triggers half of the store: a template's triggers with their sealed
//! secrets, the deliveries they accepted (by the sender's id, so a repeat
//! is answered as the first was), the sessions their conversations
//! continue, and when each schedule runs next. Every database implements it beside [`Store`](super::Store),
//! which requires it.

use super::{Result, SealedSecret};
use app::domain::{Event, EventKind, SessionId, TemplateId};
use app::triggers::{Delivery, Trigger, TriggerDraft, TriggerId, TriggerKind};
use chrono::{DateTime, Utc};

/// Deliveries listed at most, newest first.
pub const DELIVERIES_LISTED: usize = 100;

/// A trigger's secrets as stored: sealed under the master key.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedTriggerSecrets {
    pub id: TriggerId,
    pub secret: String,
    /// The one before the last rotation, while it is accepted.
    pub previous: Option<String>,
}

/// Deliveries kept in the log, in days: the deliveries of a sender that
/// signs no time (Twilio) are kept for good, as their ids alone refuse a
/// request replayed any later ([`forget_deliveries_before`]).
pub const DELIVERIES_KEPT_DAYS: i64 = 30;

/// Before when a trigger of `kind` forgets the deliveries it answered:
/// never, for a sender that signs no time.
pub fn forget_deliveries_before(kind: TriggerKind) -> Option<DateTime<Utc>> {
    (kind != TriggerKind::Twilio).then(|| Utc::now() - chrono::Duration::days(DELIVERIES_KEPT_DAYS))
}

/// When a trigger's schedule runs next, written with the trigger.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NextRun {
    /// At this time (its times are new, or it was resumed).
    At(DateTime<Utc>),
    /// At the time it had, or at this one if it had none: an edit that
    /// leaves its times alone leaves a run that came due, not yet taken,
    /// to run.
    Kept(Option<DateTime<Utc>>),
    /// Not at all: paused, no time left, or not a schedule.
    Never,
}

/// A claimed delivery, as its prompt is queued.
pub struct Delivered<'a> {
    pub trigger: TriggerId,
    /// The sender's id for it.
    pub id: &'a str,
    /// The token of the handling that holds it.
    pub claim: &'a str,
    /// Its record in the session's transcript (a `delivery` event).
    pub record: EventKind,
}

/// What queuing a delivery's prompt did.
#[derive(Debug)]
pub enum DeliveredPrompt {
    /// The delivery's record and the prompt, as appended.
    Queued(Box<[Event; 2]>),
    /// The session is gone: nothing was written.
    SessionGone,
    /// The claim no longer holds the delivery (taken over): nothing was
    /// written.
    Taken,
}

/// How a claim on a delivery's id went.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// It is this caller's to handle: the first time, or again after its
    /// handling was given up or abandoned (with the session that handling
    /// made, if it made one, and whether it queued the prompt).
    New {
        session: Option<SessionId>,
        prompted: bool,
    },
    /// Seen before: what it was answered (status 0 while being handled).
    Seen(Delivery),
}

/// How a claim on a conversation's key went.
#[derive(Clone, Debug, PartialEq)]
pub enum ConversationClaim {
    /// New (or abandoned while its session was made): this caller makes
    /// its session.
    New,
    /// The session it continues.
    Session(SessionId),
    /// Another delivery is making its session now.
    Pending,
}

#[async_trait::async_trait]
pub trait Triggers {
    async fn create_trigger(
        &self,
        id: TriggerId,
        template: TemplateId,
        draft: &TriggerDraft,
        secret: &SealedSecret,
        by: &str,
        next_run: NextRun,
    ) -> Result<Trigger>;
    async fn get_trigger(&self, id: TriggerId) -> Result<Option<(Trigger, SealedTriggerSecrets)>>;
    async fn list_triggers(&self, template: TemplateId) -> Result<Vec<Trigger>>;
    /// Replaces its draft, and when its schedule runs next in the same
    /// transaction. `None` if it does not exist.
    async fn update_trigger(
        &self,
        id: TriggerId,
        draft: &TriggerDraft,
        next_run: NextRun,
    ) -> Result<Option<Trigger>>;
    /// A new secret; the current one is accepted until `previous_until`.
    async fn rotate_trigger_secret(
        &self,
        id: TriggerId,
        secret: &SealedSecret,
        previous_until: DateTime<Utc>,
    ) -> Result<Option<Trigger>>;
    async fn delete_trigger(&self, id: TriggerId) -> Result<bool>;
    /// A delivery seen before, if it was.
    async fn delivery(&self, trigger: TriggerId, id: &str) -> Result<Option<Delivery>>;
    /// Claims a delivery's id for `claim` (a token of the handling): for
    /// its first handling, or again when one that began before
    /// `abandoned_before` never ended.
    async fn claim_delivery(
        &self,
        trigger: TriggerId,
        id: &str,
        claim: &str,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Claim>;
    /// Notes the session a claimed delivery made, before anything else can
    /// fail: handled again, it continues that one. `false` when `claim`
    /// no longer holds it (taken over).
    async fn note_delivery_session(
        &self,
        trigger: TriggerId,
        id: &str,
        claim: &str,
        session: SessionId,
    ) -> Result<bool>;
    /// Queues a claimed delivery's prompt, in one transaction: its record
    /// (a `delivery` event), then the prompt (a `user_message` event,
    /// queued for a run), and the delivery noted as prompted, so that
    /// handled again it is only answered. Nothing is written when `claim`
    /// no longer holds it or the session is gone.
    async fn append_delivered_prompt(
        &self,
        session: SessionId,
        delivered: &Delivered<'_>,
        prompt: &EventKind,
    ) -> Result<DeliveredPrompt>;
    /// Records how a delivery `claim` holds was answered (`false` when it
    /// no longer holds it), and forgets the trigger's deliveries received
    /// before `forget_before` ([`forget_deliveries_before`]).
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        claim: &str,
        forget_before: Option<DateTime<Utc>>,
    ) -> Result<bool>;
    /// Keeps a claimed delivery's handling alive: its claim is as new as
    /// now (its `received_at`), so that a long handling is not taken for
    /// abandoned. `false` when `claim` no longer holds it.
    async fn renew_delivery(&self, trigger: TriggerId, id: &str, claim: &str) -> Result<bool>;
    /// Gives up a claimed delivery that could not be handled: the next one
    /// of its id handles it at once.
    async fn abandon_delivery(&self, trigger: TriggerId, id: &str, claim: &str) -> Result<()>;
    /// The newest answered deliveries ([`DELIVERIES_LISTED`] at most).
    async fn deliveries(&self, trigger: TriggerId) -> Result<Vec<Delivery>>;
    /// Claims a conversation's key for `claim`: its session, or the making
    /// of it (a claim made before `abandoned_before` whose session never
    /// came is taken over).
    async fn claim_conversation(
        &self,
        trigger: TriggerId,
        key: &str,
        claim: &str,
        abandoned_before: DateTime<Utc>,
    ) -> Result<ConversationClaim>;
    /// The session a key `claim` holds continues from now on; `false` when
    /// it no longer holds it.
    async fn set_conversation(
        &self,
        trigger: TriggerId,
        key: &str,
        claim: &str,
        session: SessionId,
    ) -> Result<bool>;
    /// Claims a key whose session is gone (`stale`) for a new one; `false`
    /// when another delivery did first.
    async fn retake_conversation(
        &self,
        trigger: TriggerId,
        key: &str,
        claim: &str,
        stale: SessionId,
    ) -> Result<bool>;
    /// Gives up a key `claim` holds whose session could not be made.
    async fn release_conversation(&self, trigger: TriggerId, key: &str, claim: &str) -> Result<()>;
    /// The schedules due at `now`: each trigger, and the time it was due.
    async fn due_schedules(&self, now: DateTime<Utc>) -> Result<Vec<(TriggerId, DateTime<Utc>)>>;
    /// Moves a schedule on from `due` to `next` (none: it has no time left,
    /// or it is not to run): `false` when another server did first (that
    /// one runs it).
    async fn advance_schedule(
        &self,
        trigger: TriggerId,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool>;
    /// The session of the trigger's newest delivery that has one (being
    /// handled or answered).
    async fn last_session(&self, trigger: TriggerId) -> Result<Option<SessionId>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_that_signs_no_time_has_its_deliveries_kept_for_good() {
        assert_eq!(forget_deliveries_before(TriggerKind::Twilio), None);
        let month_ago = Utc::now() - chrono::Duration::days(DELIVERIES_KEPT_DAYS);
        for kind in [
            TriggerKind::Webhook,
            TriggerKind::Github,
            TriggerKind::Schedule,
        ] {
            let before = forget_deliveries_before(kind).unwrap();
            assert!((before - month_ago).num_seconds().abs() < 5, "{kind:?}");
        }
    }
}
