//! The store: sessions, their event logs, the proxy's tokens and the
//! [`accounts`] (users, tokens, shares, credentials, audit), the agent
//! [`templates`] and the [`leases`] replicas share sessions by, behind the
//! [`Store`] trait. [`SqlStore`] implements it once for the databases
//! Paddock runs on, each with its own migrations (`migrations/<database>/`):
//! SQLite, the embedded default, and PostgreSQL, a server of its own.
//!
//! What every implementation must keep (invariant 1, see the README): an
//! event's `seq` is taken from its session's `last_seq` in the same
//! transaction that stores it, so each transcript is numbered 1, 2, 3 …
//! without a hole, and a status change is stored with its event in one
//! transaction.

pub mod accounts;
pub mod leases;
pub mod notifications;
mod sql;
pub mod templates;
pub mod triggers;

pub use accounts::Accounts;
pub use leases::Leases;
pub use notifications::Notifications;
pub use sql::{Database, SqlStore};
pub use templates::Templates;
pub use triggers::Triggers;

use app::domain::UserId;
use app::domain::{
    AppError, Event, EventKind, PreparedWorkspace, Session, SessionId, SessionSettings,
    SessionSpec, SessionStatus,
};
use app::skills::Skill;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Text from outside (a login typed, a receiver's answer) as it is kept:
/// at most `max_chars`, readable, and storable in every database: control
/// characters but newlines, NUL among them (which PostgreSQL's text cannot
/// hold), become U+FFFD.
pub fn storable(text: &str, max_chars: usize) -> String {
    text.chars()
        .take(max_chars)
        .map(|c| {
            if c.is_control() && c != '\n' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create {path} for the database: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    /// A row written a moment ago was deleted before it was read back
    /// (its trigger or template deleted meanwhile).
    #[error("{0} was deleted meanwhile")]
    Gone(String),
    #[error(
        "the database was migrated by a newer Paddock (its migration {0} is unknown to this \
         one): run that version or a newer one"
    )]
    NewerSchema(i64),
    #[error(
        "DATABASE_URL names a database Paddock does not support ({0:?}): use sqlite://PATH or \
         postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    Unsupported(String),
    /// A sealed value's write found the master key's check value no
    /// longer the one it was sealed under (the key was rotated since this
    /// server started): nothing was written.
    #[error("the master key was rotated since this server started")]
    KeyChanged,
}

impl StoreError {
    /// Whether the database could not be reached (down, restarting, the
    /// pool exhausted): worth trying again, not a fault of the request or
    /// of the server.
    pub fn unreachable(&self) -> bool {
        let StoreError::Db(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // PostgreSQL's connection exceptions (08…) and operator
            // intervention (57P…: shutting down, cannot connect now).
            sqlx::Error::Database(d) => d
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether the database was too busy to answer in time (SQLite's
    /// `SQLITE_BUSY` or `SQLITE_LOCKED` once its 5 s busy timeout ran out;
    /// PostgreSQL's serialization failure or deadlock): the same request
    /// may pass a moment later.
    pub fn busy(&self) -> bool {
        let StoreError::Db(sqlx::Error::Database(d)) = self else {
            return false;
        };
        let Some(code) = d.code() else {
            return false;
        };
        match d.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
            // Extended result codes carry the primary one in their low byte.
            Some(_) => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
            None => code == "40001" || code == "40P01",
        }
    }

    /// Whether the database's disk is full (SQLite's `SQLITE_FULL`,
    /// PostgreSQL's `disk_full`): what failed wrote nothing.
    pub fn disk_full(&self) -> bool {
        matches!(self, StoreError::Db(sqlx::Error::Database(d))
            if d.code().is_some_and(|code| code == "13" || code == "53100"))
    }
}

impl StoreError {
    /// Whether a row it would write names one deleted meanwhile (a
    /// session, a template), which a foreign key refused, or the row it
    /// wrote was deleted with it before it was read back.
    pub fn names_a_gone_row(&self) -> bool {
        matches!(self, StoreError::Gone(_))
            || matches!(self, StoreError::Db(sqlx::Error::Database(d))
                if matches!(d.kind(), sqlx::error::ErrorKind::ForeignKeyViolation))
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        if e.names_a_gone_row() {
            tracing::info!("store: {e}");
            return AppError::NotFound("The session or agent it names (deleted meanwhile?)".into());
        }
        if matches!(e, StoreError::KeyChanged) {
            return AppError::Unavailable(
                "The master key was rotated since this Paddock started: restart it, then save \
                 again."
                    .into(),
            );
        }
        if e.disk_full() {
            tracing::error!("store: {e}");
            return AppError::Unavailable(
                "The database's disk is full: nothing was saved. Free some space, then try again."
                    .into(),
            );
        }
        if e.unreachable() {
            tracing::warn!("store: {e}");
            return AppError::Unavailable(
                "The database does not answer; try again in a moment.".into(),
            );
        }
        if e.busy() {
            tracing::warn!("store: {e}");
            return AppError::Unavailable("The database is busy: try again in a moment.".into());
        }
        tracing::error!("store: {e}");
        AppError::Internal
    }
}

/// A trigger's or an endpoint's secret sealed under the master key, with
/// that key's check value: the store writes it only while the check is
/// still the database's ([`StoreError::KeyChanged`] if not).
#[derive(Clone, Debug)]
pub struct SealedSecret {
    pub sealed: String,
    pub key_check: String,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens the database `url` names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(SqlStore::open(url).await?))
}

#[async_trait::async_trait]
pub trait Store:
    Accounts + Templates + Triggers + Notifications + Leases + Send + Sync + 'static
{
    /// Succeeds when the database answers a query.
    async fn ping(&self) -> Result<()>;

    /// Sessions with the most recent activity first: all of them, or those
    /// `visible_to` a user (owned by them or shared with them).
    async fn list_sessions(&self, visible_to: Option<UserId>) -> Result<Vec<Session>>;
    /// How many sessions there are in each status (statuses with none are
    /// left out).
    async fn sessions_by_status(&self) -> Result<Vec<(SessionStatus, i64)>>;
    async fn create_session(&self, spec: &SessionSpec, owner: Option<UserId>) -> Result<Session>;
    async fn get_session(&self, id: SessionId) -> Result<Option<Session>>;
    /// Stores a session's changed settings; the session then, `None` when
    /// it does not exist.
    async fn change_settings(
        &self,
        id: SessionId,
        settings: &SessionSettings,
    ) -> Result<Option<Session>>;
    /// Deletes a session and its transcript; `false` if it did not exist.
    async fn delete_session(&self, id: SessionId) -> Result<bool>;
    /// What the session's workspace is prepared with besides its source:
    /// the project instructions and the skills (kept out of [`Session`],
    /// which every list carries). `None` when the session does not exist.
    async fn workspace_setup(&self, id: SessionId) -> Result<Option<(String, Vec<Skill>)>>;
    /// Records that the session's workspace was prepared.
    async fn set_workspace_prepared(
        &self,
        id: SessionId,
        prepared: &PreparedWorkspace,
    ) -> Result<()>;

    /// Sets a session's status and records the change as an event, in one
    /// transaction. `None` when the session does not exist.
    async fn set_status(
        &self,
        id: SessionId,
        status: SessionStatus,
        message: Option<String>,
    ) -> Result<Option<Event>>;
    /// Adds one model call's tokens and cost to the session's counters,
    /// and appends its `usage` event, in one transaction (a page read
    /// between them would count the call twice). `None` when the session
    /// does not exist.
    async fn record_usage(
        &self,
        id: SessionId,
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
    ) -> Result<Option<Event>>;
    /// Engine-specific resume state of a session (e.g. the Claude Code
    /// session id), `None` when nothing was saved yet.
    async fn engine_state(&self, id: SessionId) -> Result<Option<serde_json::Value>>;
    async fn set_engine_state(&self, id: SessionId, state: &serde_json::Value) -> Result<()>;

    /// Appends an event to a session's log: the next `seq` is taken and the
    /// event stored in one transaction, so numbers are gapless and unique.
    /// `None` when the session does not exist.
    async fn append_event(&self, id: SessionId, kind: &EventKind) -> Result<Option<Event>>;
    /// Up to `limit` events of a session with `seq > after`, in order.
    async fn events_after(&self, id: SessionId, after: i64, limit: i64) -> Result<Vec<Event>>;
    /// The session's events with `seq > after`, in order, but the records
    /// of its sandbox's connections (egress), which no run reads and a
    /// process polling a host makes by the thousand a day: what the
    /// engines and the runner read a conversation from.
    async fn conversation_after(&self, id: SessionId, after: i64) -> Result<Vec<Event>>;
    /// Whether the session holds a prompt (a `user_message`) with
    /// `seq > after`.
    async fn prompted_after(&self, id: SessionId, after: i64) -> Result<bool>;

    /// Stores a proxy token's hash for `session`, valid until `expires_at`.
    async fn insert_proxy_token(
        &self,
        sha256: &str,
        session: SessionId,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// Whether a token with this hash is live (not revoked, not expired) and
    /// belongs to `session`.
    async fn proxy_token_valid(&self, sha256: &str, session: SessionId) -> Result<bool>;
    /// Revokes one token (by hash), or every token of `session` when `None`.
    async fn revoke_proxy_tokens(&self, session: SessionId, sha256: Option<&str>) -> Result<()>;

    /// The value stored under `key`, setting it to `default` if absent.
    async fn meta_or_insert(&self, key: &str, default: String) -> Result<String>;
}
