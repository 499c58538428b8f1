//! [`Notifications`] in SQL.

use super::{hold_key_check, timestamp, EventRow, SqlStore, StoredTime};
use crate::store::notifications::{
    DueEndpoint, Notifications, Redelivery, SealedEndpointSecret, MESSAGES_LISTED,
};
use crate::store::{Result, SealedSecret, StoreError};
use app::domain::{Event, EventKind, SessionId, UserId};
use app::notifications::{Endpoint, EndpointDraft, EndpointId, Message, Scope};
use chrono::{DateTime, Utc};

const ENDPOINT_COLUMNS: &str =
    "id, template_id, session_id, owner_id, draft, secret, created_at, created_by";
/// The sessions an endpoint hears of (`s`): its template's sessions of its
/// maker, or its session, each as an expression of the query (a parameter,
/// `''` for none; an endpoint's column).
fn in_scope(template: &str, owner: &str, session: &str) -> String {
    format!(
        "((s.template_id = {template} AND COALESCE(s.owner_id, '') = {owner}) OR s.id = {session})"
    )
}
/// The endpoint's sessions as the queries' parameters give it: template
/// `$2`, owner `$3`, session `$4`.
fn in_scope_given() -> String {
    in_scope("$2", "$3", "$4")
}
/// A session `s` with events that may notify past the endpoint's cursor
/// `c` (joined on the session, `LEFT`: none yet is 0).
const BEHIND: &str = "s.notable_seq > COALESCE(c.last_seq, 0)";
/// The events that may notify, by kind: their newest is the session's
/// `notable_seq`.
const NOTABLE: [&str; 2] = ["status", "permission_request"];

/// Whether an event of `kind` may notify (see [`NOTABLE`]).
pub(super) fn notable(kind: &EventKind) -> bool {
    NOTABLE.contains(&kind.name())
}
const MESSAGE_COLUMNS: &str = "endpoint_id, id, session_id, event, state, attempts, \
     response_code, error, created_at, updated_at, tried_since, next_attempt_at";

fn corrupt(what: &str, id: &str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("notification endpoint {id}: {what}: {e}"))
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: String,
    template_id: Option<String>,
    session_id: Option<String>,
    owner_id: Option<String>,
    draft: String,
    secret: String,
    created_at: StoredTime,
    created_by: String,
}

impl TryFrom<EndpointRow> for (Endpoint, SealedEndpointSecret) {
    type Error = StoreError;
    fn try_from(r: EndpointRow) -> Result<Self> {
        let id: EndpointId = r.id.parse().map_err(|e| corrupt("id", &r.id, &e))?;
        let scope = match (&r.template_id, &r.session_id) {
            (Some(t), None) => {
                Scope::Template(t.parse().map_err(|e| corrupt("template", &r.id, &e))?)
            }
            (None, Some(s)) => {
                Scope::Session(s.parse().map_err(|e| corrupt("session", &r.id, &e))?)
            }
            _ => return Err(corrupt("scope", &r.id, &"neither or both")),
        };
        let endpoint = Endpoint {
            id,
            scope,
            owner: r
                .owner_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| corrupt("owner", &r.id, &e))?,
            draft: serde_json::from_str(&r.draft).map_err(|e| corrupt("draft", &r.id, &e))?,
            created_at: r.created_at.into(),
            created_by: r.created_by,
        };
        Ok((
            endpoint,
            SealedEndpointSecret {
                id,
                secret: r.secret,
            },
        ))
    }
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    endpoint_id: String,
    id: String,
    session_id: String,
    event: String,
    state: String,
    attempts: i64,
    response_code: Option<i64>,
    error: Option<String>,
    created_at: StoredTime,
    updated_at: StoredTime,
    tried_since: StoredTime,
    next_attempt_at: Option<StoredTime>,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(r: MessageRow) -> Result<Self> {
        let bad = |what: &str, e: &dyn std::fmt::Display| corrupt(what, &r.endpoint_id, e);
        Ok(Message {
            endpoint: r.endpoint_id.parse().map_err(|e| bad("id", &e))?,
            session: r.session_id.parse().map_err(|e| bad("session", &e))?,
            event: r.event.parse().map_err(|e| bad("event", &e))?,
            state: r.state.parse().map_err(|e| bad("state", &e))?,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            response_code: r.response_code.and_then(|c| u16::try_from(c).ok()),
            error: r.error,
            created_at: r.created_at.into(),
            updated_at: r.updated_at.into(),
            tried_since: r.tried_since.into(),
            next_attempt_at: r.next_attempt_at.map(Into::into),
            id: r.id,
        })
    }
}

/// A scope as its two columns.
fn scope_columns(scope: Scope) -> (Option<String>, Option<String>) {
    match scope {
        Scope::Template(t) => (Some(t.to_string()), None),
        Scope::Session(s) => (None, Some(s.to_string())),
    }
}

fn draft_json(draft: &EndpointDraft) -> Result<String> {
    serde_json::to_string(draft).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait::async_trait]
impl Notifications for SqlStore {
    async fn create_endpoint(
        &self,
        id: EndpointId,
        scope: Scope,
        owner: Option<UserId>,
        draft: &EndpointDraft,
        secret: &SealedSecret,
        by: &str,
    ) -> Result<Endpoint> {
        let (template, session) = scope_columns(scope);
        let mut tx = self.pool.begin().await?;
        hold_key_check(&mut tx, &secret.key_check).await?;
        let row: EndpointRow = sqlx::query_as(&format!(
            "INSERT INTO notification_endpoints \
             (id, template_id, session_id, owner_id, draft, secret, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(template.clone())
        .bind(session.clone())
        .bind(owner.map(|o| o.to_string()))
        .bind(draft_json(draft)?)
        .bind(&secret.sealed)
        .bind(timestamp(Utc::now()))
        .bind(by)
        .fetch_one(&mut *tx)
        .await?;
        // What its sessions did before it is not its to tell.
        sqlx::query(&format!(
            "INSERT INTO notification_cursors (endpoint_id, session_id, last_seq) \
             SELECT $1, s.id, s.last_seq FROM sessions s WHERE {} AND s.last_seq > 0",
            in_scope_given()
        ))
        .bind(id.to_string())
        .bind(template.unwrap_or_default())
        .bind(owner.map(|o| o.to_string()).unwrap_or_default())
        .bind(session.unwrap_or_default())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let (endpoint, _) = row.try_into()?;
        Ok(endpoint)
    }

    async fn get_endpoint(
        &self,
        id: EndpointId,
    ) -> Result<Option<(Endpoint, SealedEndpointSecret)>> {
        let row: Option<EndpointRow> = sqlx::query_as(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM notification_endpoints WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_endpoints(&self, scope: Scope) -> Result<Vec<Endpoint>> {
        let (template, session) = scope_columns(scope);
        let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM notification_endpoints \
             WHERE template_id = $1 OR session_id = $2 ORDER BY created_at"
        ))
        .bind(template.unwrap_or_default())
        .bind(session.unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| <(Endpoint, SealedEndpointSecret)>::try_from(r).map(|(e, _)| e))
            .collect()
    }

    async fn endpoints_due(&self, now: DateTime<Utc>) -> Result<Vec<DueEndpoint>> {
        // A pending message goes first (the sender sends nothing else
        // while one waits for its next try); with none, the logs.
        let pending = "SELECT 1 FROM notification_messages m \
             WHERE m.endpoint_id = e.id AND m.state = 'pending'";
        let due: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
            "SELECT e.id, e.owner_id FROM notification_endpoints e \
             WHERE EXISTS ({pending} AND COALESCE(m.next_attempt_at, '') <= $1) \
             OR (NOT EXISTS ({pending}) AND EXISTS (SELECT 1 FROM sessions s \
                 LEFT JOIN notification_cursors c \
                   ON c.endpoint_id = e.id AND c.session_id = s.id \
                 WHERE {} AND {BEHIND}))",
            in_scope("e.template_id", "COALESCE(e.owner_id, '')", "e.session_id")
        ))
        .bind(timestamp(now))
        .fetch_all(&self.pool)
        .await?;
        due.into_iter()
            .map(|(id, maker)| {
                Ok(DueEndpoint {
                    id: id.parse().map_err(|e| corrupt("id", &id, &e))?,
                    maker: maker
                        .as_deref()
                        .map(str::parse)
                        .transpose()
                        .map_err(|e| corrupt("owner", &id, &e))?,
                })
            })
            .collect()
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM notification_endpoints WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn hold_endpoint(
        &self,
        id: EndpointId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let held = sqlx::query(
            "UPDATE notification_endpoints SET holder = $1, held_until = $2 \
             WHERE id = $3 AND (holder = $1 OR held_until < $4)",
        )
        .bind(holder)
        .bind(timestamp(until))
        .bind(id.to_string())
        .bind(timestamp(now))
        .execute(&self.pool)
        .await?;
        Ok(held.rows_affected() > 0)
    }

    async fn release_endpoints(&self, holder: &str) -> Result<()> {
        sqlx::query(
            "UPDATE notification_endpoints SET holder = '', held_until = '' WHERE holder = $1",
        )
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn sessions_behind(
        &self,
        endpoint: &Endpoint,
        limit: i64,
    ) -> Result<Vec<(SessionId, i64)>> {
        let (template, session) = scope_columns(endpoint.scope);
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT s.id, s.last_seq FROM sessions s \
             LEFT JOIN notification_cursors c ON c.endpoint_id = $1 AND c.session_id = s.id \
             WHERE {} AND {BEHIND} \
             ORDER BY s.updated_at LIMIT $5",
            in_scope_given()
        ))
        .bind(endpoint.id.to_string())
        .bind(template.unwrap_or_default())
        .bind(endpoint.owner.map(|o| o.to_string()).unwrap_or_default())
        .bind(session.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, last)| Ok((id.parse().map_err(|e| corrupt("session", &id, &e))?, last)))
            .collect()
    }

    async fn events_behind(
        &self,
        endpoint: EndpointId,
        session: SessionId,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT e.session_id, e.seq, e.at, e.payload FROM events e \
             LEFT JOIN notification_cursors c \
               ON c.endpoint_id = $1 AND c.session_id = e.session_id \
             WHERE e.session_id = $2 AND e.seq > COALESCE(c.last_seq, 0) \
               AND e.kind IN ('{}') \
             ORDER BY e.seq LIMIT $3",
            NOTABLE.join("', '")
        ))
        .bind(endpoint.to_string())
        .bind(session.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn events_before(
        &self,
        session: SessionId,
        seq: i64,
        kind: &str,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT session_id, seq, at, payload FROM events \
             WHERE session_id = $1 AND seq < $2 AND kind = $3 ORDER BY seq DESC LIMIT $4",
        )
        .bind(session.to_string())
        .bind(seq)
        .bind(kind)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn advance_cursor(
        &self,
        endpoint: EndpointId,
        session: SessionId,
        seq: i64,
    ) -> Result<()> {
        advance_in(&self.pool, endpoint, session, seq).await
    }

    async fn queue_message(&self, m: &Message, body: &str, seq: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO notification_messages \
             (endpoint_id, id, session_id, event, body, state, attempts, created_at, updated_at, \
              tried_since, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (endpoint_id, id) DO NOTHING",
        )
        .bind(m.endpoint.to_string())
        .bind(&m.id)
        .bind(m.session.to_string())
        .bind(m.event.as_str())
        .bind(body)
        .bind(m.state.as_str())
        .bind(i64::from(m.attempts))
        .bind(timestamp(m.created_at))
        .bind(timestamp(m.updated_at))
        .bind(timestamp(m.tried_since))
        .bind(m.next_attempt_at.map(timestamp))
        .execute(&mut *tx)
        .await?;
        advance_in(&mut *tx, m.endpoint, m.session, seq).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn next_message(&self, endpoint: EndpointId) -> Result<Option<(Message, String)>> {
        let row: Option<(MessageRow, String)> = sqlx::query_as::<_, BodiedRow>(&format!(
            "SELECT {MESSAGE_COLUMNS}, body FROM notification_messages \
             WHERE endpoint_id = $1 AND state = 'pending' \
             ORDER BY COALESCE(next_attempt_at, created_at), created_at LIMIT 1"
        ))
        .bind(endpoint.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| (r.message, r.body));
        row.map(|(m, body)| Ok((Message::try_from(m)?, body)))
            .transpose()
    }

    async fn update_message(&self, m: &Message) -> Result<()> {
        sqlx::query(
            "UPDATE notification_messages SET state = $1, attempts = $2, response_code = $3, \
             error = $4, updated_at = $5, next_attempt_at = $6 \
             WHERE endpoint_id = $7 AND id = $8 AND tried_since = $9",
        )
        .bind(m.state.as_str())
        .bind(i64::from(m.attempts))
        .bind(m.response_code.map(i64::from))
        .bind(m.error.as_deref())
        .bind(timestamp(m.updated_at))
        .bind(m.next_attempt_at.map(timestamp))
        .bind(m.endpoint.to_string())
        .bind(&m.id)
        .bind(timestamp(m.tried_since))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_messages(&self, before: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "DELETE FROM notification_messages WHERE state <> 'pending' AND updated_at < $1",
        )
        .bind(timestamp(before))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn catch_up_notable(&self, since: DateTime<Utc>) -> Result<()> {
        let notable = NOTABLE.join("', '");
        sqlx::query(&format!(
            "UPDATE sessions SET notable_seq = (SELECT MAX(e.seq) FROM events e \
               WHERE e.session_id = sessions.id AND e.kind IN ('{notable}')) \
             WHERE updated_at >= $1 AND EXISTS (SELECT 1 FROM events e \
               WHERE e.session_id = sessions.id AND e.seq > sessions.notable_seq \
               AND e.kind IN ('{notable}'))"
        ))
        .bind(timestamp(since))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn messages(&self, endpoint: EndpointId) -> Result<Vec<Message>> {
        let rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM notification_messages WHERE endpoint_id = $1 \
             ORDER BY created_at DESC LIMIT {MESSAGES_LISTED}"
        ))
        .bind(endpoint.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Message::try_from).collect()
    }

    async fn redeliver(
        &self,
        endpoint: EndpointId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Redelivery> {
        let done = sqlx::query(
            "UPDATE notification_messages SET state = 'pending', attempts = 0, \
             next_attempt_at = $1, tried_since = $1, updated_at = $1 \
             WHERE endpoint_id = $2 AND id = $3 \
             AND (state <> 'pending' OR COALESCE(next_attempt_at, '') > $1)",
        )
        .bind(timestamp(now))
        .bind(endpoint.to_string())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(Redelivery::Queued);
        }
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM notification_messages WHERE endpoint_id = $1 AND id = $2",
        )
        .bind(endpoint.to_string())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match found {
            Some(_) => Redelivery::Pending,
            None => Redelivery::Missing,
        })
    }
}

/// A message's row with its body.
#[derive(sqlx::FromRow)]
struct BodiedRow {
    #[sqlx(flatten)]
    message: MessageRow,
    body: String,
}

/// Moves an endpoint's cursor in a session forward to `seq` (never back).
async fn advance_in<'e, E>(
    exec: E,
    endpoint: EndpointId,
    session: SessionId,
    seq: i64,
) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO notification_cursors (endpoint_id, session_id, last_seq) VALUES ($1, $2, $3) \
         ON CONFLICT (endpoint_id, session_id) DO UPDATE SET last_seq = excluded.last_seq \
         WHERE notification_cursors.last_seq < excluded.last_seq",
    )
    .bind(endpoint.to_string())
    .bind(session.to_string())
    .bind(seq)
    .execute(exec)
    .await?;
    Ok(())
}
