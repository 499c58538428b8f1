use super::*;
use app::domain::NewSession;

async fn temp_store() -> (tempfile::TempDir, SqliteStore, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/paddock.db", dir.path().display());
    let store = SqliteStore::open(&url).await.unwrap();
    (dir, store, url)
}

fn spec(name: &str) -> SessionSpec {
    NewSession {
        name: name.into(),
        ..Default::default()
    }
    .validate()
    .unwrap()
}

#[tokio::test]
async fn creates_missing_file_in_wal_mode() {
    let (dir, store, _) = temp_store().await;
    assert!(dir.path().join("nested/paddock.db").exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn sessions_survive_reopening_newest_first() {
    let (_dir, store, url) = temp_store().await;
    let first = store.create_session(&spec("first"), None).await.unwrap();
    let second = store.create_session(&spec("second"), None).await.unwrap();
    assert_eq!(second.status, app::domain::SessionStatus::Idle);
    store.pool.close().await;

    let reopened = SqliteStore::open(&url).await.unwrap();
    let names: Vec<_> = reopened
        .list_sessions(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["second", "first"]);
    assert_eq!(reopened.get_session(first.id).await.unwrap(), Some(first));
    assert_eq!(
        reopened.get_session(uuid::Uuid::now_v7()).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn concurrent_appends_are_gapless() {
    let (_dir, store, _) = temp_store().await;
    let s = store.create_session(&spec("busy"), None).await.unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_event(
                        s.id,
                        &EventKind::AssistantText {
                            text: format!("{i}"),
                        },
                    )
                    .await
                    .unwrap()
                    .unwrap()
                    .seq
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());

    let stored = store.events_after(s.id, 0, 1000).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
    let tail = store.events_after(s.id, 35, 1000).await.unwrap();
    assert_eq!(tail.first().map(|e| e.seq), Some(36));
    assert_eq!(store.get_session(s.id).await.unwrap().unwrap().last_seq, 40);
}

#[tokio::test]
async fn append_to_unknown_session_writes_nothing() {
    let (_dir, store, _) = temp_store().await;
    let id = uuid::Uuid::now_v7();
    let kind = EventKind::Error {
        message: "x".into(),
    };
    assert_eq!(store.append_event(id, &kind).await.unwrap(), None);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn hostile_strings_are_stored_verbatim() {
    let (_dir, store, _) = temp_store().await;
    let name = "'); DROP TABLE sessions; -- <script>alert(1)</script>";
    let s = store.create_session(&spec(name), None).await.unwrap();
    assert_eq!(store.get_session(s.id).await.unwrap().unwrap().name, name);
}
