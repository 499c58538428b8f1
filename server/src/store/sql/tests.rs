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
