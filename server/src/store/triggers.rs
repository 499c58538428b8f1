//! The triggers half of the store: a template's triggers with their sealed
//! secrets, the deliveries they accepted (by the sender's id, so a repeat
//! is answered as the first was) and the sessions their conversations
//! continue. Every database implements it beside [`Store`](super::Store),
//! which requires it.

use super::Result;
use app::domain::{SessionId, TemplateId};
use app::triggers::{Delivery, Trigger, TriggerDraft, TriggerId};
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

/// How a claim on a delivery's id went.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// The first time: it is this caller's to handle.
    New,
    /// Seen before: what it was answered (status 0 while being handled).
    Seen(Delivery),
}

#[async_trait::async_trait]
pub trait Triggers {
    async fn create_trigger(
        &self,
        id: TriggerId,
        template: TemplateId,
        draft: &TriggerDraft,
        sealed_secret: &str,
        by: &str,
    ) -> Result<Trigger>;
    async fn get_trigger(&self, id: TriggerId) -> Result<Option<(Trigger, SealedTriggerSecrets)>>;
    async fn list_triggers(&self, template: TemplateId) -> Result<Vec<Trigger>>;
    /// `None` if it does not exist.
    async fn update_trigger(&self, id: TriggerId, draft: &TriggerDraft) -> Result<Option<Trigger>>;
    /// A new secret; the current one is accepted until `previous_until`.
    async fn rotate_trigger_secret(
        &self,
        id: TriggerId,
        sealed_secret: &str,
        previous_until: DateTime<Utc>,
    ) -> Result<Option<Trigger>>;
    async fn delete_trigger(&self, id: TriggerId) -> Result<bool>;
    /// Every trigger's sealed secrets (to seal them again under a new key).
    async fn trigger_secrets(&self) -> Result<Vec<SealedTriggerSecrets>>;
    /// Claims a delivery's id for its first handling (or for handling
    /// again, when one that began before `abandoned_before` never ended).
    async fn claim_delivery(
        &self,
        trigger: TriggerId,
        id: &str,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Claim>;
    /// Records how a claimed delivery was answered.
    async fn finish_delivery(&self, delivery: &Delivery) -> Result<()>;
    /// Forgets a claimed delivery that could not be handled (it may come
    /// again and be handled then).
    async fn release_delivery(&self, trigger: TriggerId, id: &str) -> Result<()>;
    /// The newest deliveries ([`DELIVERIES_LISTED`] at most).
    async fn deliveries(&self, trigger: TriggerId) -> Result<Vec<Delivery>>;
    async fn conversation(&self, trigger: TriggerId, key: &str) -> Result<Option<SessionId>>;
    async fn set_conversation(
        &self,
        trigger: TriggerId,
        key: &str,
        session: SessionId,
    ) -> Result<()>;
}
