//! One serving process per replica name. Two processes of one name each
//! take the other's sessions for their own (a lease held by "their" name,
//! runs "they" left at a restart), so the second stops at start, saying
//! why:
//!
//! - On SQLite, which one process serves (the replica `local`), a lock
//!   file beside the database: a second Paddock on the same address stops
//!   at the bind, but one in another container on the same volume binds an
//!   address of its own.
//! - On PostgreSQL, an advisory lock on the name, held on a connection of
//!   its own for as long as the process runs. PostgreSQL lets it go when
//!   that connection ends: at once when the process dies, and within
//!   seconds when its machine does (the connection's keepalives), so a
//!   replica restarted after a crash waits for its old lock a moment
//!   ([`TAKE_WITHIN`]) before it gives up. Lost with its connection (the
//!   database restarted), the lock is taken again once the database
//!   answers; should another process of the name hold it by then, that is
//!   logged as an error until it can be taken.

use crate::config::Config;
use crate::store::Database;
use crate::sync;
use anyhow::Context;
use sqlx::postgres::PgConnection;
use sqlx::Connection;
use std::time::Duration;

/// How often the name's connection is asked whether it still holds, and
/// a lost one is opened again.
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// How long the name's connection may take to answer a ping.
const PING_WITHIN: Duration = Duration::from_secs(5);

/// How long a replica starting waits for its name's lock: about as long
/// as PostgreSQL takes to find the connection of a machine that died
/// ([`KEEPALIVES`]).
const TAKE_WITHIN: Duration = Duration::from_secs(15);

/// The lock's connection, as PostgreSQL checks it: first after 5 s of
/// silence, then every 2 s, ended after 3 unanswered (TCP only).
const KEEPALIVES: &str = "SELECT set_config('tcp_keepalives_idle', '5', false), \
     set_config('tcp_keepalives_interval', '2', false), \
     set_config('tcp_keepalives_count', '3', false)";

/// Held while this process serves as its replica.
pub enum ReplicaLock {
    /// The lock file, locked.
    File(std::fs::File),
    /// The task that holds the advisory lock; ended when dropped.
    Postgres(tokio::task::JoinHandle<()>),
    /// Neither database (refused later, when the store opens).
    None,
}

impl Drop for ReplicaLock {
    fn drop(&mut self) {
        if let Self::Postgres(task) = self {
            task.abort();
        }
    }
}

/// Takes the lock of `config`'s replica name, whose name is set.
pub async fn hold(config: &Config) -> anyhow::Result<ReplicaLock> {
    match Database::of_url(&config.database_url) {
        Some(Database::Sqlite) => lock_file(config),
        Some(Database::Postgres) => {
            let name = config.replica_name();
            let mut conn = PgConnection::connect(&config.database_url)
                .await
                .context("cannot connect to the database")?;
            let asked = std::time::Instant::now();
            while !take(&mut conn, &name).await? {
                if asked.elapsed() < TAKE_WITHIN {
                    if asked.elapsed() < Duration::from_secs(1) {
                        tracing::warn!(
                            "another process holds the replica name {name:?}: waiting up to \
                             {TAKE_WITHIN:?} for it (one whose machine died lets it go by then)"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                anyhow::bail!(
                    "another Paddock replica named {name:?} serves this database: stop it \
                     first, or give this one a name of its own (PADDOCK_REPLICA; the default \
                     is the host name and port). Two of one name would take each other's \
                     sessions"
                );
            }
            let url = config.database_url.clone();
            Ok(ReplicaLock::Postgres(tokio::spawn(keep(url, name, conn))))
        }
        None => Ok(ReplicaLock::None),
    }
}

fn lock_file(config: &Config) -> anyhow::Result<ReplicaLock> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(database) = config.sqlite_file() else {
        return Ok(ReplicaLock::None);
    };
    let lock = std::path::PathBuf::from(format!("{}.lock", database.display()));
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot make the folder {}", dir.display()))?;
    }
    match sync::try_lock_file(&lock).with_context(|| format!("cannot lock {}", lock.display()))? {
        Some(held) => Ok(ReplicaLock::File(held)),
        None => anyhow::bail!(
            "another Paddock serves the database {} (it holds {}): stop it first, or give \
             this one a database of its own (two on one SQLite database would take each \
             other's sessions; replicas share PostgreSQL)",
            database.display(),
            lock.display()
        ),
    }
}

/// Whether `conn` now holds the advisory lock of the replica `name`.
async fn take(conn: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query(KEEPALIVES).execute(&mut *conn).await?;
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("paddock replica {name}"))
        .fetch_one(conn)
        .await
}

/// Keeps the lock: asks its connection every [`CHECK_EVERY`], and takes
/// the lock again on a new one when that connection is lost.
async fn keep(url: String, name: String, conn: PgConnection) {
    let mut held = Some(conn);
    // When the connection was lost: PostgreSQL holds the lock for it a
    // while yet, as for the machine that died.
    let mut lost = std::time::Instant::now();
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if let Some(conn) = &mut held {
            // Within the time PostgreSQL gives a silent connection: a ping
            // on one half-open would wait for TCP's retries.
            if matches!(
                tokio::time::timeout(PING_WITHIN, conn.ping()).await,
                Ok(Ok(()))
            ) {
                continue;
            }
            tracing::warn!("the connection holding this replica's name was lost: taking it again");
            held = None;
            lost = std::time::Instant::now();
        }
        let mut conn = match PgConnection::connect(&url).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("cannot connect to take this replica's name again: {e}");
                continue;
            }
        };
        match take(&mut conn, &name).await {
            Ok(true) => {
                tracing::info!("this replica's name is held again");
                held = Some(conn);
            }
            Ok(false) if lost.elapsed() < 2 * TAKE_WITHIN => tracing::warn!(
                "this replica's name is still held, by the connection it lost (until \
                 PostgreSQL lets it go) or by another process"
            ),
            Ok(false) => tracing::error!(
                "another Paddock replica named {name:?} holds this replica's name, taken while \
                 this one's database connection was lost: the two take each other's sessions. \
                 Stop one of them"
            ),
            Err(e) => tracing::warn!("cannot take this replica's name again: {e}"),
        }
    }
}
