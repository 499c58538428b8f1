//! [`Triggers`] in SQL.

use super::leases::queue_prompt_in;
use super::{append_in, hold_key_check, timestamp, SqlStore, StoredTime};
use crate::store::triggers::{
    Claim, ConversationClaim, Delivered, DeliveredPrompt, NextRun, SealedTriggerSecrets, Triggers,
    DELIVERIES_LISTED,
};
use crate::store::{Result, SealedSecret, StoreError};
use app::domain::{EventKind, SessionId, TemplateId};
use app::triggers::{Delivery, Trigger, TriggerDraft, TriggerId};
use chrono::{DateTime, Utc};
use sqlx::Any;

const DELIVERY_COLUMNS: &str = "trigger_id, delivery_id, received_at, status, outcome, session_id";
const TRIGGER_COLUMNS: &str =
    "id, template_id, draft, secret, previous_secret, previous_until, created_at, created_by";

#[derive(sqlx::FromRow)]
struct TriggerRow {
    id: String,
    template_id: String,
    draft: String,
    secret: String,
    previous_secret: Option<String>,
    previous_until: Option<StoredTime>,
    created_at: StoredTime,
    created_by: String,
}

fn corrupt(what: &str, id: &str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("trigger {id}: {what}: {e}"))
}

impl TryFrom<TriggerRow> for (Trigger, SealedTriggerSecrets) {
    type Error = StoreError;
    fn try_from(r: TriggerRow) -> Result<Self> {
        let id: TriggerId = r.id.parse().map_err(|e| corrupt("id", &r.id, &e))?;
        let previous_until: Option<DateTime<Utc>> = r.previous_until.map(Into::into);
        // The previous secret counts only until its time is up.
        let previous = r
            .previous_secret
            .filter(|_| previous_until.is_some_and(|until| until > Utc::now()));
        let trigger = Trigger {
            id,
            template: r
                .template_id
                .parse()
                .map_err(|e| corrupt("template_id", &r.id, &e))?,
            draft: serde_json::from_str(&r.draft).map_err(|e| corrupt("draft", &r.id, &e))?,
            created_at: r.created_at.into(),
            created_by: r.created_by,
            previous_secret_until: previous.as_ref().and(previous_until),
            next_runs: Vec::new(),
        };
        let secrets = SealedTriggerSecrets {
            id,
            secret: r.secret,
            previous,
        };
        Ok((trigger, secrets))
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    trigger_id: String,
    delivery_id: String,
    received_at: StoredTime,
    status: i64,
    outcome: String,
    session_id: Option<String>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;
    fn try_from(r: DeliveryRow) -> Result<Self> {
        Ok(Delivery {
            trigger: r
                .trigger_id
                .parse()
                .map_err(|e| corrupt("id", &r.trigger_id, &e))?,
            id: r.delivery_id,
            received_at: r.received_at.into(),
            status: u16::try_from(r.status).unwrap_or(0),
            outcome: r.outcome,
            session: r
                .session_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| corrupt("session_id", &r.trigger_id, &e))?,
        })
    }
}

/// A delivery's row with whether its prompt was queued.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    delivery: DeliveryRow,
    prompted: i64,
}

fn draft_json(draft: &TriggerDraft) -> Result<String> {
    serde_json::to_string(draft).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl SqlStore {
    async fn trigger(&self, id: TriggerId) -> Result<Option<Trigger>> {
        Ok(self.get_trigger(id).await?.map(|(t, _)| t))
    }
}

#[async_trait::async_trait]
impl Triggers for SqlStore {
    async fn create_trigger(
        &self,
        id: TriggerId,
        template: TemplateId,
        draft: &TriggerDraft,
        secret: &SealedSecret,
        by: &str,
        next_run: NextRun,
    ) -> Result<Trigger> {
        let mut tx = self.pool.begin().await?;
        hold_key_check(&mut tx, &secret.key_check).await?;
        sqlx::query(
            "INSERT INTO triggers (id, template_id, draft, secret, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(template.to_string())
        .bind(draft_json(draft)?)
        .bind(&secret.sealed)
        .bind(timestamp(Utc::now()))
        .bind(by)
        .execute(&mut *tx)
        .await?;
        schedule_in(&mut tx, id, next_run).await?;
        tx.commit().await?;
        self.trigger(id)
            .await?
            .ok_or_else(|| StoreError::Gone(format!("trigger {id}")))
    }

    async fn get_trigger(&self, id: TriggerId) -> Result<Option<(Trigger, SealedTriggerSecrets)>> {
        let row: Option<TriggerRow> = sqlx::query_as(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryFrom::try_from).transpose()
    }

    async fn list_triggers(&self, template: TemplateId) -> Result<Vec<Trigger>> {
        let rows: Vec<TriggerRow> = sqlx::query_as(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE template_id = $1 ORDER BY created_at, id"
        ))
        .bind(template.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| <(Trigger, SealedTriggerSecrets)>::try_from(r).map(|(t, _)| t))
            .collect()
    }

    async fn update_trigger(
        &self,
        id: TriggerId,
        draft: &TriggerDraft,
        next_run: NextRun,
    ) -> Result<Option<Trigger>> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE triggers SET draft = $1 WHERE id = $2")
            .bind(draft_json(draft)?)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        schedule_in(&mut tx, id, next_run).await?;
        tx.commit().await?;
        self.trigger(id).await
    }

    async fn rotate_trigger_secret(
        &self,
        id: TriggerId,
        secret: &SealedSecret,
        previous_until: DateTime<Utc>,
    ) -> Result<Option<Trigger>> {
        let mut tx = self.pool.begin().await?;
        hold_key_check(&mut tx, &secret.key_check).await?;
        let done = sqlx::query(
            "UPDATE triggers SET previous_secret = secret, previous_until = $1, secret = $2 \
             WHERE id = $3",
        )
        .bind(timestamp(previous_until))
        .bind(&secret.sealed)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.trigger(id).await
    }

    async fn delete_trigger(&self, id: TriggerId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM triggers WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delivery(&self, trigger: TriggerId, id: &str) -> Result<Option<Delivery>> {
        let row: Option<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM trigger_deliveries \
             WHERE trigger_id = $1 AND delivery_id = $2"
        ))
        .bind(trigger.to_string())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Delivery::try_from).transpose()
    }

    async fn claim_delivery(
        &self,
        trigger: TriggerId,
        id: &str,
        claim: &str,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Claim> {
        // New, given up, or one whose handling began before
        // `abandoned_before` and never ended (its server went away).
        let claimed = sqlx::query(
            "INSERT INTO trigger_deliveries \
             (trigger_id, delivery_id, received_at, status, outcome, claim) \
             VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (trigger_id, delivery_id) DO UPDATE \
             SET received_at = excluded.received_at, claim = excluded.claim \
             WHERE trigger_deliveries.status = 0 \
             AND (trigger_deliveries.claim = '' OR trigger_deliveries.received_at < $5)",
        )
        .bind(trigger.to_string())
        .bind(id)
        .bind(timestamp(Utc::now()))
        .bind(claim)
        .bind(timestamp(abandoned_before))
        .execute(&self.pool)
        .await?;
        let row: Option<(DeliveryRow, i64)> = sqlx::query_as::<_, ClaimRow>(&format!(
            "SELECT {DELIVERY_COLUMNS}, prompted FROM trigger_deliveries \
             WHERE trigger_id = $1 AND delivery_id = $2"
        ))
        .bind(trigger.to_string())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| (r.delivery, r.prompted));
        // Forgotten between the two (its trigger deleted): seen, and gone.
        let Some((row, prompted)) = row else {
            return Err(StoreError::Gone(format!("delivery {id}")));
        };
        let seen = Delivery::try_from(row)?;
        Ok(match claimed.rows_affected() {
            0 => Claim::Seen(seen),
            _ => Claim::New {
                session: seen.session,
                prompted: prompted != 0,
            },
        })
    }

    async fn note_delivery_session(
        &self,
        trigger: TriggerId,
        id: &str,
        claim: &str,
        session: SessionId,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE trigger_deliveries SET session_id = $1 \
             WHERE trigger_id = $2 AND delivery_id = $3 AND claim = $4 AND status = 0",
        )
        .bind(session.to_string())
        .bind(trigger.to_string())
        .bind(id)
        .bind(claim)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn append_delivered_prompt(
        &self,
        session: SessionId,
        delivered: &Delivered<'_>,
        prompt: &EventKind,
    ) -> Result<DeliveredPrompt> {
        // Dropped uncommitted, the transaction writes nothing.
        let mut tx = self.pool.begin().await?;
        let Some(record) = append_in(&mut tx, session, &delivered.record).await? else {
            return Ok(DeliveredPrompt::SessionGone);
        };
        let Some(prompt) = queue_prompt_in(&mut tx, session, prompt).await? else {
            return Ok(DeliveredPrompt::SessionGone);
        };
        let noted = sqlx::query(
            "UPDATE trigger_deliveries SET prompted = 1 \
             WHERE trigger_id = $1 AND delivery_id = $2 AND claim = $3 AND status = 0",
        )
        .bind(delivered.trigger.to_string())
        .bind(delivered.id)
        .bind(delivered.claim)
        .execute(&mut *tx)
        .await?;
        if noted.rows_affected() == 0 {
            return Ok(DeliveredPrompt::Taken);
        }
        tx.commit().await?;
        Ok(DeliveredPrompt::Queued(Box::new([record, prompt])))
    }

    async fn finish_delivery(
        &self,
        d: &Delivery,
        claim: &str,
        forget_before: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE trigger_deliveries SET status = $1, outcome = $2, session_id = $3 \
             WHERE trigger_id = $4 AND delivery_id = $5 AND claim = $6 AND status = 0",
        )
        .bind(i64::from(d.status))
        .bind(&d.outcome)
        .bind(d.session.map(|s| s.to_string()))
        .bind(d.trigger.to_string())
        .bind(&d.id)
        .bind(claim)
        .execute(&self.pool)
        .await?;
        // Also those left unfinished (busy, failed, a crash): one still
        // being made renews its time.
        if let Some(before) = forget_before {
            sqlx::query(
                "DELETE FROM trigger_deliveries WHERE trigger_id = $1 AND received_at < $2",
            )
            .bind(d.trigger.to_string())
            .bind(timestamp(before))
            .execute(&self.pool)
            .await?;
        }
        Ok(done.rows_affected() > 0)
    }

    async fn renew_delivery(&self, trigger: TriggerId, id: &str, claim: &str) -> Result<bool> {
        let renewed = sqlx::query(
            "UPDATE trigger_deliveries SET received_at = $4 \
             WHERE trigger_id = $1 AND delivery_id = $2 AND claim = $3 AND status = 0",
        )
        .bind(trigger.to_string())
        .bind(id)
        .bind(claim)
        .bind(timestamp(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn abandon_delivery(&self, trigger: TriggerId, id: &str, claim: &str) -> Result<()> {
        sqlx::query(
            "UPDATE trigger_deliveries SET claim = '' \
             WHERE trigger_id = $1 AND delivery_id = $2 AND claim = $3 AND status = 0",
        )
        .bind(trigger.to_string())
        .bind(id)
        .bind(claim)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deliveries(&self, trigger: TriggerId) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM trigger_deliveries WHERE trigger_id = $1 \
             AND status <> 0 \
             ORDER BY received_at DESC LIMIT {DELIVERIES_LISTED}"
        ))
        .bind(trigger.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Delivery::try_from).collect()
    }

    async fn claim_conversation(
        &self,
        trigger: TriggerId,
        key: &str,
        claim: &str,
        abandoned_before: DateTime<Utc>,
    ) -> Result<ConversationClaim> {
        let claimed = sqlx::query(
            "INSERT INTO trigger_conversations (trigger_id, key, session_id, claim, claimed_at) \
             VALUES ($1, $2, '', $3, $4) ON CONFLICT (trigger_id, key) DO UPDATE \
             SET claim = excluded.claim, claimed_at = excluded.claimed_at \
             WHERE trigger_conversations.session_id = '' \
             AND trigger_conversations.claimed_at < $5",
        )
        .bind(trigger.to_string())
        .bind(key)
        .bind(claim)
        .bind(timestamp(Utc::now()))
        .bind(timestamp(abandoned_before))
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() > 0 {
            return Ok(ConversationClaim::New);
        }
        let session: Option<String> = sqlx::query_scalar(
            "SELECT session_id FROM trigger_conversations WHERE trigger_id = $1 AND key = $2",
        )
        .bind(trigger.to_string())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        match session.as_deref() {
            // Given up between the two: claimed again at the next look.
            None | Some("") => Ok(ConversationClaim::Pending),
            Some(session) => session
                .parse()
                .map(ConversationClaim::Session)
                .map_err(|e| corrupt("conversation", key, &e)),
        }
    }

    async fn set_conversation(
        &self,
        trigger: TriggerId,
        key: &str,
        claim: &str,
        session: SessionId,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE trigger_conversations SET session_id = $1 \
             WHERE trigger_id = $2 AND key = $3 AND claim = $4 AND session_id = ''",
        )
        .bind(session.to_string())
        .bind(trigger.to_string())
        .bind(key)
        .bind(claim)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn retake_conversation(
        &self,
        trigger: TriggerId,
        key: &str,
        claim: &str,
        stale: SessionId,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE trigger_conversations SET session_id = '', claim = $1, claimed_at = $2 \
             WHERE trigger_id = $3 AND key = $4 AND session_id = $5",
        )
        .bind(claim)
        .bind(timestamp(Utc::now()))
        .bind(trigger.to_string())
        .bind(key)
        .bind(stale.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_conversation(&self, trigger: TriggerId, key: &str, claim: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM trigger_conversations \
             WHERE trigger_id = $1 AND key = $2 AND claim = $3 AND session_id = ''",
        )
        .bind(trigger.to_string())
        .bind(key)
        .bind(claim)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    async fn due_schedules(&self, now: DateTime<Utc>) -> Result<Vec<(TriggerId, DateTime<Utc>)>> {
        let rows: Vec<(String, StoredTime)> = sqlx::query_as(
            "SELECT trigger_id, next_run FROM trigger_schedules WHERE next_run <= $1 \
             ORDER BY next_run",
        )
        .bind(timestamp(now))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, at)| {
                let trigger = id.parse().map_err(|e| corrupt("id", &id, &e))?;
                Ok((trigger, at.into()))
            })
            .collect()
    }

    async fn advance_schedule(
        &self,
        trigger: TriggerId,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let moved = match next {
            Some(next) => {
                sqlx::query(
                    "UPDATE trigger_schedules SET next_run = $1 \
                     WHERE trigger_id = $2 AND next_run = $3",
                )
                .bind(timestamp(next))
                .bind(trigger.to_string())
                .bind(timestamp(due))
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query("DELETE FROM trigger_schedules WHERE trigger_id = $1 AND next_run = $2")
                    .bind(trigger.to_string())
                    .bind(timestamp(due))
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(moved.rows_affected() > 0)
    }

    async fn last_session(&self, trigger: TriggerId) -> Result<Option<SessionId>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT session_id FROM trigger_deliveries \
             WHERE trigger_id = $1 AND session_id IS NOT NULL \
             ORDER BY received_at DESC LIMIT 1",
        )
        .bind(trigger.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id,)| id.parse().map_err(|e| corrupt("session", &id, &e)))
            .transpose()
    }
}

/// Writes when a trigger's schedule runs next, within `tx`.
async fn schedule_in(
    tx: &mut sqlx::Transaction<'_, Any>,
    trigger: TriggerId,
    next_run: NextRun,
) -> Result<()> {
    let (at, kept) = match next_run {
        NextRun::At(at) => (at, false),
        NextRun::Kept(Some(at)) => (at, true),
        NextRun::Kept(None) => return Ok(()),
        NextRun::Never => {
            sqlx::query("DELETE FROM trigger_schedules WHERE trigger_id = $1")
                .bind(trigger.to_string())
                .execute(&mut **tx)
                .await?;
            return Ok(());
        }
    };
    let on_conflict = match kept {
        true => "DO NOTHING",
        false => "DO UPDATE SET next_run = excluded.next_run",
    };
    sqlx::query(&format!(
        "INSERT INTO trigger_schedules (trigger_id, next_run) VALUES ($1, $2) \
         ON CONFLICT (trigger_id) {on_conflict}"
    ))
    .bind(trigger.to_string())
    .bind(timestamp(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
