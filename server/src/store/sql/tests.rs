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
