//! The SQL store: one implementation of [`Store`] for every database sqlx's
//! `Any` driver reaches, so SQLite and PostgreSQL run the same queries
//! (written with `$N` parameters, which both accept). What differs is how a
//! database is opened ([`connect`]) and its migrations
//! (`migrations/<database>/`).
//!
//! Column types are the ones both databases share: text (ids, JSON, and
//! timestamps as fixed-width RFC 3339 UTC text, so text order is time
//! order), 64-bit integers (flags are 0 or 1), doubles and blobs.

mod accounts;
mod connect;
mod leases;
mod notifications;
mod templates;
mod triggers;

use super::{Result, Store, StoreError};
use app::domain::UserId;
use app::domain::{
    Event, EventKind, PreparedWorkspace, SandboxLimits, Session, SessionId, SessionSettings,
    SessionSpec, SessionStatus, SESSIONS_LISTED_MAX,
};
use app::skills::Skill;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sqlx::Any;
use sqlx::AnyPool;

pub use connect::Database;

#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    database: Database,
}

/// A value as the JSON a column holds.
fn json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Fixed-width UTC timestamps, so text order is time order.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A timestamp column read back (see [`timestamp`]).
#[derive(Clone, Copy, Debug)]
struct StoredTime(DateTime<Utc>);

impl sqlx::Type<Any> for StoredTime {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<Any>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, Any> for StoredTime {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<Any>>::decode(value)?;
        Ok(Self(
            DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc),
        ))
    }
}

impl From<StoredTime> for DateTime<Utc> {
    fn from(t: StoredTime) -> Self {
        t.0
    }
}

/// Whether a statement that binds an optional real (`Option<f64>`) is
/// kept prepared: never. Through sqlx's `Any`, a missing one is sent to
/// PostgreSQL as a `float4` NULL, and a statement is kept by its text
/// alone: one prepared with a NULL there refuses the next one's number
/// (an 8-byte `float8`: "incorrect binary data format"). Prepared afresh,
/// each takes its own types.
const UNCACHED_OPTIONAL_REALS: bool = false;

const SESSION_COLUMNS: &str = "id, name, engine, model, system_prompt, permission_mode, status, \
     cost_usd, turns, input_tokens, output_tokens, last_seq, sandbox_memory_mb, sandbox_cpus, \
     sandbox_pids, command_timeout_secs, sandbox_disk_mb, budget_usd, mounts, env, secrets, \
     max_turns, allowed_tools, image, source, skill_names, mcp_servers, egress, \
     workspace_ready_at, base_commit, work_branch, template, triggered_by, owner_id, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    name: String,
    engine: String,
    model: String,
    system_prompt: String,
    permission_mode: String,
    status: String,
    cost_usd: f64,
    turns: i64,
    input_tokens: i64,
    output_tokens: i64,
    last_seq: i64,
    sandbox_memory_mb: Option<i64>,
    sandbox_cpus: Option<f64>,
    sandbox_pids: Option<i64>,
    command_timeout_secs: Option<i64>,
    sandbox_disk_mb: Option<i64>,
    budget_usd: Option<f64>,
    mounts: String,
    env: String,
    secrets: String,
    max_turns: Option<i64>,
    allowed_tools: String,
    image: Option<String>,
    source: String,
    skill_names: String,
    mcp_servers: String,
    egress: String,
    workspace_ready_at: Option<StoredTime>,
    base_commit: Option<String>,
    work_branch: Option<String>,
    template: Option<String>,
    triggered_by: Option<String>,
    owner_id: Option<String>,
    created_at: StoredTime,
    updated_at: StoredTime,
}

impl TryFrom<SessionRow> for Session {
    type Error = StoreError;
    fn try_from(r: SessionRow) -> Result<Self> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("session {}: {what}: {e}", r.id))
        };
        Ok(Session {
            id: r.id.parse().map_err(|e| corrupt("id", &e))?,
            engine: r.engine.parse().map_err(|e| corrupt("engine", &e))?,
            permission_mode: r
                .permission_mode
                .parse()
                .map_err(|e| corrupt("permission_mode", &e))?,
            status: r.status.parse().map_err(|e| corrupt("status", &e))?,
            name: r.name,
            model: r.model,
            system_prompt: r.system_prompt,
            cost_usd: r.cost_usd,
            turns: r.turns,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            last_seq: r.last_seq,
            limits: SandboxLimits {
                memory_mb: r.sandbox_memory_mb,
                cpus: r.sandbox_cpus,
                pids: r.sandbox_pids,
                command_timeout_secs: r.command_timeout_secs,
                disk_mb: r.sandbox_disk_mb,
            },
            budget_usd: r.budget_usd,
            mounts: serde_json::from_str(&r.mounts).map_err(|e| corrupt("mounts", &e))?,
            env: serde_json::from_str(&r.env).map_err(|e| corrupt("env", &e))?,
            secrets: serde_json::from_str(&r.secrets).map_err(|e| corrupt("secrets", &e))?,
            max_turns: r.max_turns,
            allowed_tools: serde_json::from_str(&r.allowed_tools)
                .map_err(|e| corrupt("allowed_tools", &e))?,
            image: r.image,
            source: serde_json::from_str(&r.source).map_err(|e| corrupt("source", &e))?,
            skills: serde_json::from_str(&r.skill_names).map_err(|e| corrupt("skill_names", &e))?,
            mcp_servers: serde_json::from_str(&r.mcp_servers)
                .map_err(|e| corrupt("mcp_servers", &e))?,
            egress: serde_json::from_str(&r.egress).map_err(|e| corrupt("egress", &e))?,
            workspace: r.workspace_ready_at.map(|at| PreparedWorkspace {
                at: at.into(),
                base_commit: r.base_commit,
                branch: r.work_branch,
            }),
            template: r
                .template
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("template", &e))?,
            trigger: r
                .triggered_by
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("triggered_by", &e))?,
            owner: r
                .owner_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| corrupt("owner_id", &e))?,
            created_at: r.created_at.into(),
            updated_at: r.updated_at.into(),
        })
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    session_id: String,
    seq: i64,
    at: StoredTime,
    payload: String,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self> {
        let corrupt = |e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("event {}#{}: {e}", r.session_id, r.seq))
        };
        Ok(Event {
            session_id: r.session_id.parse().map_err(|e| corrupt(&e))?,
            seq: r.seq,
            at: r.at.into(),
            kind: serde_json::from_str(&r.payload).map_err(|e| corrupt(&e))?,
        })
    }
}

impl SqlStore {
    /// Opens the database `url` names (creating a SQLite file and its
    /// folder if missing) and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self> {
        let (pool, database) = connect::open(url).await?;
        Ok(Self { pool, database })
    }

    /// Which database this store runs on.
    pub fn database(&self) -> Database {
        self.database
    }
}

#[async_trait::async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn list_sessions(&self, visible_to: Option<UserId>) -> Result<Vec<Session>> {
        let newest =
            format!("ORDER BY updated_at DESC, created_at DESC LIMIT {SESSIONS_LISTED_MAX}");
        // A person's own and those shared with them, each found by its
        // index (one query with "everyone's, or…" would read every
        // session of the installation for each).
        let rows: Vec<SessionRow> = match visible_to {
            None => {
                sqlx::query_as(&format!("SELECT {SESSION_COLUMNS} FROM sessions {newest}"))
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(user) => {
                sqlx::query_as(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE owner_id = $1 \
                     UNION ALL SELECT {SESSION_COLUMNS} FROM sessions \
                     WHERE id IN (SELECT session_id FROM session_shares WHERE user_id = $1) \
                     AND (owner_id IS NULL OR owner_id <> $1) {newest}"
                ))
                .bind(user.to_string())
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.into_iter().map(Session::try_from).collect()
    }

    async fn sessions_by_status(&self) -> Result<Vec<(SessionStatus, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM sessions GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(status, n)| {
                let status = status
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("session status: {e}")))?;
                Ok((status, n))
            })
            .collect()
    }

    async fn create_session(&self, spec: &SessionSpec, owner: Option<UserId>) -> Result<Session> {
        let id = uuid::Uuid::now_v7();
        let now = timestamp(Utc::now());
        let row: SessionRow = sqlx::query_as(&format!(
            "INSERT INTO sessions (id, name, engine, model, system_prompt, permission_mode, status, \
             sandbox_memory_mb, sandbox_cpus, sandbox_pids, command_timeout_secs, sandbox_disk_mb, \
             budget_usd, mounts, env, secrets, max_turns, allowed_tools, image, source, \
             instructions, skills, skill_names, mcp_servers, egress, template, triggered_by, \
             owner_id, created_at, updated_at, template_id) \
             VALUES ($1, $2, $3, $4, $5, $6, 'idle', $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, \
             $25, $26, $27, $28, $29, $30) \
             RETURNING {SESSION_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(&spec.name)
        .bind(spec.engine.as_str())
        .bind(&spec.model)
        .bind(&spec.system_prompt)
        .bind(spec.permission_mode.as_str())
        .bind(spec.limits.memory_mb)
        .bind(spec.limits.cpus)
        .bind(spec.limits.pids)
        .bind(spec.limits.command_timeout_secs)
        .bind(spec.limits.disk_mb)
        .bind(spec.budget_usd)
        .bind(serde_json::to_string(&spec.mounts).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(serde_json::to_string(&spec.env).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(serde_json::to_string(&spec.secrets).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(spec.max_turns)
        .bind(
            serde_json::to_string(&spec.allowed_tools)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        )
        .bind(&spec.image)
        .bind(json(&spec.source)?)
        .bind(&spec.instructions)
        .bind(json(&spec.skills)?)
        .bind(json(
            &spec
                .skills
                .iter()
                .map(|s| s.header().map(|h| h.name).unwrap_or_default())
                .collect::<Vec<_>>(),
        )?)
        .bind(json(&spec.mcp_servers)?)
        .bind(json(&spec.egress)?)
        .bind(
            spec.template
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        )
        .bind(spec.trigger.as_ref().map(json).transpose()?)
        .bind(owner.map(|o| o.to_string()))
        .bind(&now)
        .bind(&now)
        .bind(spec.template.as_ref().map(|t| t.id.to_string()))
        .persistent(UNCACHED_OPTIONAL_REALS)
        .fetch_one(&self.pool)
        .await?;
        row.try_into()
    }

    async fn get_session(&self, id: SessionId) -> Result<Option<Session>> {
        let row: Option<SessionRow> = sqlx::query_as(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Session::try_from).transpose()
    }

    async fn change_settings(
        &self,
        id: SessionId,
        settings: &SessionSettings,
    ) -> Result<Option<Session>> {
        let row: Option<SessionRow> = sqlx::query_as(&format!(
            "UPDATE sessions SET name = $2, model = $3, permission_mode = $4, budget_usd = $5 \
             WHERE id = $1 RETURNING {SESSION_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(&settings.name)
        .bind(&settings.model)
        .bind(settings.permission_mode.as_str())
        .bind(settings.budget_usd)
        .persistent(UNCACHED_OPTIONAL_REALS)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Session::try_from).transpose()
    }

    async fn delete_session(&self, id: SessionId) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        // The conversations it continued: their next delivery starts a
        // new session, and strangers' keys do not pile up.
        sqlx::query("DELETE FROM trigger_conversations WHERE session_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        // The notifications about it, kept by its template's endpoints:
        // their bodies hold its name, its text, the input of its tools.
        sqlx::query("DELETE FROM notification_messages WHERE session_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn workspace_setup(&self, id: SessionId) -> Result<Option<(String, Vec<Skill>)>> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT instructions, skills FROM sessions WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(instructions, skills)| {
            let skills = serde_json::from_str(&skills)
                .map_err(|e| StoreError::Corrupt(format!("session {id}: skills: {e}")))?;
            Ok((instructions, skills))
        })
        .transpose()
    }

    async fn set_workspace_prepared(
        &self,
        id: SessionId,
        prepared: &PreparedWorkspace,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sessions SET workspace_ready_at = $1, base_commit = $2, work_branch = $3 \
             WHERE id = $4",
        )
        .bind(timestamp(prepared.at))
        .bind(&prepared.base_commit)
        .bind(&prepared.branch)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_status(
        &self,
        id: SessionId,
        status: SessionStatus,
        message: Option<String>,
    ) -> Result<Option<Event>> {
        let kind = EventKind::Status { status, message };
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE sessions SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let event = append_in(&mut tx, id, &kind).await?;
        tx.commit().await?;
        Ok(event)
    }

    async fn record_usage(
        &self,
        id: SessionId,
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
    ) -> Result<Option<Event>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE sessions SET input_tokens = input_tokens + $1, output_tokens = output_tokens + $2, \
             cost_usd = cost_usd + $3, turns = turns + 1, updated_at = $4 WHERE id = $5",
        )
        .bind(input_tokens)
        .bind(output_tokens)
        .bind(cost_usd)
        .bind(timestamp(Utc::now()))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        let kind = EventKind::Usage {
            input_tokens,
            output_tokens,
            cost_usd,
        };
        let event = append_in(&mut tx, id, &kind).await?;
        tx.commit().await?;
        Ok(event)
    }

    async fn engine_state(&self, id: SessionId) -> Result<Option<serde_json::Value>> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT engine_state FROM sessions WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        text.flatten()
            .map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::Corrupt(format!("session {id}: engine_state: {e}")))
            })
            .transpose()
    }

    async fn set_engine_state(&self, id: SessionId, state: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE sessions SET engine_state = $1 WHERE id = $2")
            .bind(state.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_proxy_token(
        &self,
        sha256: &str,
        session: SessionId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO proxy_tokens (token_sha256, session_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(sha256)
        .bind(session.to_string())
        .bind(timestamp(expires_at))
        .bind(timestamp(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn proxy_token_valid(&self, sha256: &str, session: SessionId) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM proxy_tokens WHERE token_sha256 = $1 AND session_id = $2 \
             AND revoked = 0 AND expires_at > $3",
        )
        .bind(sha256)
        .bind(session.to_string())
        .bind(timestamp(Utc::now()))
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn revoke_proxy_tokens(&self, session: SessionId, sha256: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE proxy_tokens SET revoked = 1 WHERE session_id = $1 AND ($2 IS NULL OR token_sha256 = $3)",
        )
        .bind(session.to_string())
        .bind(sha256)
        .bind(sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn meta_or_insert(&self, key: &str, default: String) -> Result<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(default)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn append_event(&self, id: SessionId, kind: &EventKind) -> Result<Option<Event>> {
        let mut tx = self.pool.begin().await?;
        let event = append_in(&mut tx, id, kind).await?;
        tx.commit().await?;
        Ok(event)
    }

    async fn events_after(&self, id: SessionId, after: i64, limit: i64) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT session_id, seq, at, payload FROM events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(id.to_string())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn conversation_after(&self, id: SessionId, after: i64) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT session_id, seq, at, payload FROM events \
             WHERE session_id = $1 AND seq > $2 AND kind <> 'egress' ORDER BY seq",
        )
        .bind(id.to_string())
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn prompted_after(&self, id: SessionId, after: i64) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM events WHERE session_id = $1 AND seq > $2 AND kind = 'user_message' \
             LIMIT 1",
        )
        .bind(id.to_string())
        .bind(after)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }
}

/// Holds the master key's check value for the rest of `tx`, if it is still
/// `key_check`, the one what `tx` writes was sealed under: a rotation waits
/// for `tx`, and `tx` waits for a rotation under way, then finds the check
/// changed and writes nothing ([`StoreError::KeyChanged`]).
async fn hold_key_check(tx: &mut sqlx::Transaction<'_, Any>, key_check: &str) -> Result<()> {
    let held = sqlx::query("UPDATE meta SET value = value WHERE key = $1 AND value = $2")
        .bind(crate::store::accounts::MASTER_KEY_CHECK)
        .bind(key_check)
        .execute(&mut **tx)
        .await?;
    match held.rows_affected() {
        0 => Err(StoreError::KeyChanged),
        _ => Ok(()),
    }
}

/// Appends inside the caller's transaction: the next `seq` is taken from
/// `sessions.last_seq` and the event stored together, so numbers are gapless.
async fn append_in(
    tx: &mut sqlx::Transaction<'_, Any>,
    id: SessionId,
    kind: &EventKind,
) -> Result<Option<Event>> {
    // As stored (to the microsecond): what viewers get live is what a
    // reconnect reads back.
    let at = Utc::now().trunc_subsecs(6);
    // A sandbox's own traffic (what its processes ask the egress proxy)
    // is nobody's activity: it does not keep the session from being idle,
    // which a process left running would do for ever.
    let activity = (!matches!(kind, EventKind::Egress { .. })).then(|| timestamp(at));
    let seq: Option<i64> = sqlx::query_scalar(
        "UPDATE sessions SET last_seq = last_seq + 1, updated_at = COALESCE($1, updated_at), \
         notable_seq = CASE WHEN $2 THEN last_seq + 1 ELSE notable_seq END \
         WHERE id = $3 RETURNING last_seq",
    )
    .bind(activity)
    .bind(notifications::notable(kind))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(seq) = seq else {
        return Ok(None);
    };
    let payload = serde_json::to_string(kind).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO events (session_id, seq, at, kind, payload) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(seq)
    .bind(timestamp(at))
    .bind(kind.name())
    .bind(payload)
    .execute(&mut **tx)
    .await?;
    Ok(Some(Event {
        session_id: id,
        seq,
        at,
        kind: kind.clone(),
    }))
}

#[cfg(test)]
mod tests;
