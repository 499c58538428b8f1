//! [`Leases`] in SQL: one statement each, the same on both databases
//! (`INSERT … ON CONFLICT … DO UPDATE … WHERE` decides a lease atomically).

use super::{append_in, timestamp, SqlStore};
use crate::store::leases::Leases;
use crate::store::Result;
use app::domain::{Event, EventKind, SessionId};
use chrono::{DateTime, Utc};
use sqlx::Any;

#[async_trait::async_trait]
impl Leases for SqlStore {
    async fn acquire_lease(
        &self,
        session: SessionId,
        replica: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        // The SELECT leaves out sessions that do not exist (no row to
        // insert), so a deleted session's lease is never taken.
        let done = sqlx::query(
            "INSERT INTO session_leases (session_id, replica, expires_at) \
             SELECT id, $2, $4 FROM sessions WHERE id = $1 \
             ON CONFLICT (session_id) DO UPDATE SET replica = $2, expires_at = $4 \
             WHERE session_leases.replica = $2 OR session_leases.expires_at < $3",
        )
        .bind(session.to_string())
        .bind(replica)
        .bind(timestamp(now))
        .bind(timestamp(until))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn renew_lease(
        &self,
        session: SessionId,
        replica: &str,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE session_leases SET expires_at = $3 WHERE session_id = $1 AND replica = $2",
        )
        .bind(session.to_string())
        .bind(replica)
        .bind(timestamp(until))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn lease_holder(&self, session: SessionId, now: DateTime<Utc>) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT replica FROM session_leases WHERE session_id = $1 AND expires_at >= $2",
        )
        .bind(session.to_string())
        .bind(timestamp(now))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn release_lease(&self, session: SessionId, replica: &str) -> Result<()> {
        sqlx::query("DELETE FROM session_leases WHERE session_id = $1 AND replica = $2")
            .bind(session.to_string())
            .bind(replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn orphaned_sessions(&self, replica: &str, now: DateTime<Utc>) -> Result<Vec<SessionId>> {
        // The statuses are written out as the partial index `sessions_at_work`
        // has them, so that the index serves the query.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT s.id FROM sessions s LEFT JOIN session_leases l ON l.session_id = s.id \
             WHERE (s.status IN ('starting', 'running', 'awaiting_permission') \
                    OR s.queued_prompts > 0) \
             AND (l.session_id IS NULL OR l.expires_at < $2 OR l.replica = $1) \
             ORDER BY s.id",
        )
        .bind(replica)
        .bind(timestamp(now))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    async fn append_prompt(&self, session: SessionId, prompt: &EventKind) -> Result<Option<Event>> {
        let mut tx = self.pool.begin().await?;
        let event = queue_prompt_in(&mut tx, session, prompt).await?;
        tx.commit().await?;
        Ok(event)
    }

    async fn take_prompt(&self, session: SessionId) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET queued_prompts = queued_prompts - 1 \
             WHERE id = $1 AND queued_prompts > 0",
        )
        .bind(session.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn queued_prompts(&self, session: SessionId) -> Result<i64> {
        let queued: Option<i64> =
            sqlx::query_scalar("SELECT queued_prompts FROM sessions WHERE id = $1")
                .bind(session.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(queued.unwrap_or(0))
    }

    async fn drop_prompts(&self, session: SessionId) -> Result<()> {
        sqlx::query("UPDATE sessions SET queued_prompts = 0 WHERE id = $1")
            .bind(session.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Appends a prompt and queues it for a run, within `tx`. `None` when the
/// session does not exist.
pub(super) async fn queue_prompt_in(
    tx: &mut sqlx::Transaction<'_, Any>,
    session: SessionId,
    prompt: &EventKind,
) -> Result<Option<Event>> {
    let event = append_in(tx, session, prompt).await?;
    sqlx::query("UPDATE sessions SET queued_prompts = queued_prompts + 1 WHERE id = $1")
        .bind(session.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(event)
}
