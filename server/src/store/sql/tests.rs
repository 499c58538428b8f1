//! What is SQLite's own; the store's suite runs against every database in
//! `server/tests/it/store.rs`.

use super::*;

#[tokio::test]
async fn creates_missing_file_and_folder_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/paddock.db", dir.path().display());
    let store = SqlStore::open(&url).await.unwrap();
    assert_eq!(store.database(), Database::Sqlite);
    assert!(dir.path().join("nested/paddock.db").exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(synchronous, 1, "NORMAL");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn other_databases_are_refused_without_echoing_the_url() {
    let err = SqlStore::open("mysql://root:hunter2@db/paddock")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"mysql\""), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn a_database_a_newer_paddock_migrated_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/paddock.db", dir.path().display());
    let store = SqlStore::open(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (29991231000000, 'from the future', 1, x'00', 0)",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    store.pool.close().await;
    let err = SqlStore::open(&url).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema(29991231000000)),
        "{err}"
    );
    assert!(err.to_string().contains("newer Paddock"), "{err}");
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_not_internal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/paddock.db", dir.path().display());
    let store = SqlStore::open(&url).await.unwrap();
    store.pool.close().await;
    let err = store.ping().await.unwrap_err();
    assert!(err.unreachable(), "{err}");
    assert!(matches!(
        app::domain::AppError::from(err),
        app::domain::AppError::Unavailable(_)
    ));
    let corrupt = StoreError::Corrupt("x".into());
    assert!(!corrupt.unreachable());
    assert_eq!(
        app::domain::AppError::from(corrupt),
        app::domain::AppError::Internal
    );
}

#[tokio::test]
async fn a_write_that_waited_out_a_lock_is_unavailable_not_internal() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/paddock.db", dir.path().display());
    let store = SqlStore::open(&url).await.unwrap();
    // Another process holding the write lock past the busy timeout.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let spec = app::domain::NewSession {
        name: "waits".into(),
        ..Default::default()
    }
    .validate()
    .unwrap();
    let err = store.create_session(&spec, None).await.unwrap_err();
    assert!(err.busy(), "{err}");
    assert!(matches!(
        app::domain::AppError::from(err),
        app::domain::AppError::Unavailable(_)
    ));
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    store.create_session(&spec, None).await.unwrap();
    assert!(!StoreError::Corrupt("x".into()).busy());
}

/// A tmpfs of 1 MiB mounted for one test, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs needs root, as the test suite has"
        );
        Self(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_writes_nothing_half() {
    let disk = SmallDisk::mount();
    let url = format!("sqlite://{}/paddock.db", disk.0.path().display());
    let store = SqlStore::open(&url).await.unwrap();
    let session = store
        .create_session(
            &app::domain::NewSession {
                name: "filling".into(),
                ..Default::default()
            }
            .validate()
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    let big = EventKind::AssistantText {
        text: "x".repeat(64 * 1024),
    };
    let mut stored = 0;
    let err = loop {
        match store.append_event(session.id, &big).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100, "1 MiB cannot hold 100 events of 64 KiB");
    };
    assert!(err.disk_full(), "{err}");
    let message = app::domain::AppError::from(err).to_string();
    assert!(message.contains("disk is full"), "{message}");
    let events = store.events_after(session.id, 0, 1000).await.unwrap();
    assert_eq!(events.len(), stored, "nothing half-written");
    let last_seq = store
        .get_session(session.id)
        .await
        .unwrap()
        .unwrap()
        .last_seq;
    assert_eq!(last_seq, stored as i64);
    store.pool.close().await;
}
