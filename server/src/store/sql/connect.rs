//! Opening each database the [`SqlStore`](super::SqlStore) runs on: a pool
//! of sqlx `Any` connections, set up and migrated the way that database
//! needs.

use crate::store::{Result, StoreError};
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::AnyPool;
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;

/// The databases Paddock runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    /// One file, embedded: the default.
    Sqlite,
    /// A database server apart from Paddock.
    Postgres,
}

impl Database {
    /// The database a `DATABASE_URL` names, `None` for any other.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Opens and migrates the database `url` names.
pub(super) async fn open(url: &str) -> Result<(AnyPool, Database)> {
    sqlx::any::install_default_drivers();
    let database = Database::of_url(url).ok_or_else(|| {
        // Only the scheme: the rest may hold a password.
        StoreError::Unsupported(url.split(':').next().unwrap_or_default().to_owned())
    })?;
    let pool = match database {
        Database::Sqlite => {
            create_sqlite_file(url).await?;
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // Per connection; WAL itself is kept by the file.
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await?;
            migrated(sqlx::migrate!("../migrations/sqlite").run(&pool).await)?;
            pool
        }
        Database::Postgres => {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                // A request waits this long for a connection while the
                // server is down or restarting, then is told so (503).
                .acquire_timeout(std::time::Duration::from_secs(5))
                .connect(url)
                .await?;
            // Replicas starting together take turns: sqlx holds an advisory
            // lock while it migrates PostgreSQL.
            migrated(sqlx::migrate!("../migrations/postgres").run(&pool).await)?;
            pool
        }
    };
    Ok((pool, database))
}

/// A migration run's outcome; a database a newer Paddock migrated (it
/// applied a migration this binary does not have) is refused by name.
fn migrated(result: Result<(), sqlx::migrate::MigrateError>) -> Result<()> {
    result.map_err(|e| match e {
        sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::NewerSchema(version),
        e => e.into(),
    })
}

/// Creates the SQLite file (and its folder) if missing and puts it in WAL
/// mode, so readers never wait for the writer. Every later connection
/// finds WAL set: it is a property of the file. What it creates only its
/// owner may read (mode 0700 and 0600; SQLite gives its journal files the
/// database's): it holds password hashes, transcripts and the audit log.
async fn create_sqlite_file(url: &str) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let file = options.get_filename();
    let folder_error = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| StoreError::Folder { path, source }
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(folder_error(dir))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(folder_error(file)(e)),
    }
    options.connect().await?.close().await?;
    Ok(())
}
