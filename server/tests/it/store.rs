//! The store's suite, run against each database Paddock supports: a SQLite
//! file and a real PostgreSQL 15 started by the harness
//! (`common::postgres`). Every test opens the store through
//! `store::open(DATABASE_URL)`, as the server does; the last two run a
//! whole Paddock on PostgreSQL, and restart PostgreSQL under load.

use crate::common::{self, postgres, Home};
use app::accounts::{
    ApiToken, AuditAction, CredentialId, CredentialKind, CredentialScope, Login, Role, ShareLevel,
};
use app::agents::TemplateDraft;
use app::api::Backend;
use app::domain::{EnvVar, EventKind, NewSession, SandboxLimits, SessionSpec, SessionStatus};
use app::notifications::EndpointId;
use app::triggers::TriggerId;
use chrono::{Duration, SubsecRound, Utc};
use server::store::accounts::{NewAuditEntry, Reseal, SealedCredential, UserChange};
use server::store::notifications::Redelivery;
use server::store::{self, Database, SealedSecret, Store, StoreError};
use std::sync::Arc;

/// A SQLite file and a PostgreSQL database, each empty; the folder holds
/// the file.
async fn databases() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/nested/paddock.db", dir.path().display());
    (dir, vec![sqlite, postgres::database().await])
}

async fn open(url: &str) -> Arc<dyn Store> {
    store::open(url).await.unwrap()
}

fn name_of(url: &str) -> &'static str {
    Database::of_url(url).unwrap().as_str()
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
async fn sessions_round_trip_and_survive_reopening() {
    let (dir, urls) = databases().await;
    for url in &urls {
        let store = open(url).await;
        if name_of(url) == "sqlite" {
            // Only its owner may read what the SQLite database made.
            use std::os::unix::fs::PermissionsExt;
            for (path, mode) in [("nested", 0o700), ("nested/paddock.db", 0o600)] {
                let meta = std::fs::metadata(dir.path().join(path)).unwrap();
                assert_eq!(meta.permissions().mode() & 0o777, mode, "{path}");
            }
        }
        let full = NewSession {
            name: "first".into(),
            system_prompt: Some("Be brief.\nReally.".into()),
            limits: SandboxLimits {
                memory_mb: Some(512),
                cpus: Some(1.5),
                pids: Some(64),
                command_timeout_secs: Some(30),
                disk_mb: Some(2048),
            },
            budget_usd: Some(2.25),
            env: vec![EnvVar {
                name: "GREETING".into(),
                value: "héllo 👋".into(),
            }],
            max_turns: Some(7),
            allowed_tools: vec!["bash".into()],
            ..Default::default()
        }
        .validate()
        .unwrap();
        // No budget nor CPU limit first, then both: each is told its type
        // apart (on PostgreSQL a statement prepared for the first kept
        // a NULL's type, and refused the next one's numbers).
        // (Several of each: the pool hands its connections out in turn.)
        let plain = open(url).await;
        let mut made = Vec::new();
        for spec in [spec("plain"), full.clone()] {
            for _ in 0..6 {
                made.push(plain.create_session(&spec, None).await.unwrap());
            }
        }
        assert_eq!(made[11].budget_usd, Some(2.25), "{url}");
        for budget_usd in [None, Some(4.5)] {
            for s in &made {
                let settings = app::domain::SessionSettings {
                    budget_usd,
                    ..app::domain::SessionSettings::of(s)
                };
                plain.change_settings(s.id, &settings).await.unwrap();
            }
        }
        for s in made {
            plain.delete_session(s.id).await.unwrap();
        }
        drop(plain);
        let first = store.create_session(&full, None).await.unwrap();
        let second = store.create_session(&spec("second"), None).await.unwrap();
        assert_eq!(second.status, SessionStatus::Idle, "{url}");
        store.record_usage(first.id, 10, 20, 0.5).await.unwrap();
        store
            .set_engine_state(first.id, &serde_json::json!({"resume": "abc"}))
            .await
            .unwrap();
        drop(store);

        let reopened = open(url).await;
        let names: Vec<_> = reopened
            .list_sessions(None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            ["first", "second"],
            "{} (usage touched first)",
            name_of(url)
        );
        let got = reopened.get_session(first.id).await.unwrap().unwrap();
        assert_eq!(got.limits, first.limits, "{url}");
        assert_eq!(got.env, first.env);
        assert_eq!(got.budget_usd, Some(2.25));
        assert_eq!(
            (got.input_tokens, got.output_tokens, got.turns),
            (10, 20, 1)
        );
        assert!((got.cost_usd - 0.5).abs() < 1e-9);
        assert_eq!(
            got.created_at,
            first.created_at,
            "{} keeps microseconds",
            name_of(url)
        );
        assert_eq!(
            reopened.engine_state(first.id).await.unwrap(),
            Some(serde_json::json!({"resume": "abc"}))
        );
        assert_eq!(reopened.engine_state(second.id).await.unwrap(), None);
        assert_eq!(
            reopened.get_session(uuid::Uuid::now_v7()).await.unwrap(),
            None
        );
        assert!(reopened.delete_session(first.id).await.unwrap());
        assert!(!reopened.delete_session(first.id).await.unwrap());
        assert!(reopened
            .events_after(first.id, 0, 10)
            .await
            .unwrap()
            .is_empty());
    }
}

/// Invariant 1 under load: many writers to one session at once, on each
/// database, get the numbers 1..=N exactly once, and the log reads back
/// whole, page by page.
#[tokio::test]
async fn concurrent_writers_to_one_session_are_gapless() {
    const WRITERS: i64 = 32;
    const EACH: i64 = 25;
    let (_dir, urls) = databases().await;
    for url in &urls {
        let store = open(url).await;
        let s = store.create_session(&spec("busy"), None).await.unwrap();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..EACH {
                        // Status changes take numbers from the same counter.
                        let event = if i % 10 == 9 {
                            store.set_status(s.id, SessionStatus::Running, None).await
                        } else {
                            let text = format!("{w}.{i}");
                            store
                                .append_event(s.id, &EventKind::AssistantText { text })
                                .await
                        };
                        seqs.push(event.unwrap().unwrap().seq);
                    }
                    seqs
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for w in writers {
            seqs.extend(w.await.unwrap());
        }
        seqs.sort_unstable();
        let all: Vec<i64> = (1..=WRITERS * EACH).collect();
        assert_eq!(seqs, all, "{}", name_of(url));

        let mut read = Vec::new();
        loop {
            let page = store
                .events_after(s.id, read.last().copied().unwrap_or(0), 100)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            read.extend(page.iter().map(|e| e.seq));
        }
        assert_eq!(read, all, "{}", name_of(url));
        let session = store.get_session(s.id).await.unwrap().unwrap();
        assert_eq!(session.last_seq, WRITERS * EACH);
        assert_eq!(session.status, SessionStatus::Running);
    }
}

#[tokio::test]
async fn unknown_sessions_change_nothing_and_hostile_strings_are_kept() {
    let (_dir, urls) = databases().await;
    for url in &urls {
        let store = open(url).await;
        let unknown = uuid::Uuid::now_v7();
        let kind = EventKind::Error {
            message: "x".into(),
        };
        assert_eq!(store.append_event(unknown, &kind).await.unwrap(), None);
        assert_eq!(
            store
                .set_status(unknown, SessionStatus::Error, None)
                .await
                .unwrap(),
            None
        );
        assert!(store.list_sessions(None).await.unwrap().is_empty());
        // A row naming one deleted meanwhile (a share of a session deleted
        // as it was shared) is a 404, not a 500.
        let refused = store
            .set_share(
                unknown,
                uuid::Uuid::now_v7(),
                app::accounts::ShareLevel::Watch,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                app::domain::AppError::from(refused),
                app::domain::AppError::NotFound(_)
            ),
            "{}",
            name_of(url)
        );

        let name = "'); DROP TABLE sessions; -- <script>alert(1)</script> $1 ? e\u{301} 🦀";
        let s = store.create_session(&spec(name), None).await.unwrap();
        assert_eq!(store.get_session(s.id).await.unwrap().unwrap().name, name);
        // Transcript text may hold any character, NUL too.
        let text = "a\u{0}b \\ \" 🦀 \u{202e}".to_owned();
        store
            .append_event(s.id, &EventKind::AssistantText { text: text.clone() })
            .await
            .unwrap();
        let events = store.events_after(s.id, 0, 10).await.unwrap();
        assert_eq!(
            events[0].kind,
            EventKind::AssistantText { text },
            "{}",
            name_of(url)
        );
        // The sandbox's own traffic is stored, and is no activity of the
        // session's (its idle time goes on).
        let active = store.get_session(s.id).await.unwrap().unwrap().updated_at;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let egress = EventKind::Egress {
            host: "example.com".into(),
            port: 443,
            allowed: false,
            sent: 0,
            received: 0,
            reason: None,
        };
        let stored = store.append_event(s.id, &egress).await.unwrap().unwrap();
        let after = store.get_session(s.id).await.unwrap().unwrap();
        assert_eq!(
            (after.last_seq, after.updated_at),
            (stored.seq, active),
            "{}",
            name_of(url)
        );
    }
}

#[tokio::test]
async fn leases_go_to_one_replica_and_prompts_queue_for_any() {
    let (_dir, urls) = databases().await;
    for url in &urls {
        let db = name_of(url);
        let store = open(url).await;
        let s = store
            .create_session(&spec("leased"), None)
            .await
            .unwrap()
            .id;
        let now = Utc::now();
        let (soon, later) = (now + Duration::seconds(10), now + Duration::seconds(20));

        // One holder at a time; the holder renews, others wait for a lapse.
        assert!(
            store.acquire_lease(s, "a", now, soon).await.unwrap(),
            "{db}"
        );
        assert!(
            !store.acquire_lease(s, "b", now, soon).await.unwrap(),
            "{db}"
        );
        assert!(
            store.acquire_lease(s, "a", now, later).await.unwrap(),
            "{db}"
        );
        assert_eq!(
            store.lease_holder(s, now).await.unwrap().as_deref(),
            Some("a")
        );
        assert!(store.renew_lease(s, "a", later).await.unwrap());
        assert!(!store.renew_lease(s, "b", later).await.unwrap(), "{db}");
        // Lapsed: another takes it, and the old holder's renewal fails.
        let after = later + Duration::seconds(1);
        assert_eq!(store.lease_holder(s, after).await.unwrap(), None, "{db}");
        assert!(store
            .acquire_lease(s, "b", after, after + Duration::seconds(10))
            .await
            .unwrap());
        assert!(!store.renew_lease(s, "a", later).await.unwrap(), "{db}");
        store.release_lease(s, "a").await.unwrap();
        assert_eq!(
            store.lease_holder(s, after).await.unwrap().as_deref(),
            Some("b")
        );
        store.release_lease(s, "b").await.unwrap();
        assert_eq!(store.lease_holder(s, after).await.unwrap(), None, "{db}");
        // Unknown sessions get no lease.
        let unknown = uuid::Uuid::now_v7();
        assert!(
            !store.acquire_lease(unknown, "a", now, soon).await.unwrap(),
            "{db}"
        );

        // The queue: each prompt taken once; Stop drops the rest.
        let prompt = |text: &str| EventKind::UserMessage { text: text.into() };
        assert_eq!(store.queued_prompts(s).await.unwrap(), 0);
        store
            .append_prompt(s, &prompt("one"))
            .await
            .unwrap()
            .unwrap();
        store
            .append_prompt(s, &prompt("two"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store.append_prompt(unknown, &prompt("x")).await.unwrap(),
            None
        );
        assert!(store.take_prompt(s).await.unwrap(), "{db}");
        assert_eq!(store.queued_prompts(s).await.unwrap(), 1);
        store
            .append_prompt(s, &prompt("three"))
            .await
            .unwrap()
            .unwrap();
        store.drop_prompts(s).await.unwrap();
        assert!(!store.take_prompt(s).await.unwrap(), "{db}");
        assert_eq!(
            store.events_after(s, 0, 10).await.unwrap().len(),
            3,
            "kept in the transcript"
        );

        // Work nobody runs: mid-turn or queued, without a live lease (or
        // under the asker's own name).
        let idle = store.create_session(&spec("idle"), None).await.unwrap().id;
        let busy = store.create_session(&spec("busy"), None).await.unwrap().id;
        store
            .set_status(busy, SessionStatus::Running, None)
            .await
            .unwrap();
        let queued = store
            .create_session(&spec("queued"), None)
            .await
            .unwrap()
            .id;
        store.append_prompt(queued, &prompt("go")).await.unwrap();
        let mut both = vec![busy, queued];
        both.sort();
        assert_eq!(
            store.orphaned_sessions("c", now).await.unwrap(),
            both,
            "{db}"
        );
        store.acquire_lease(busy, "a", now, soon).await.unwrap();
        assert_eq!(
            store.orphaned_sessions("c", now).await.unwrap(),
            [queued],
            "{db}"
        );
        assert_eq!(
            store.orphaned_sessions("a", now).await.unwrap(),
            both,
            "{db}"
        );
        assert_eq!(
            store
                .orphaned_sessions("c", soon + Duration::seconds(1))
                .await
                .unwrap(),
            both
        );
        assert!(!both.contains(&idle));
        // A deleted session takes its lease with it.
        store.delete_session(busy).await.unwrap();
        assert_eq!(store.lease_holder(busy, now).await.unwrap(), None, "{db}");
    }
}

#[tokio::test]
async fn users_tokens_browser_sessions_and_shares() {
    let (_dir, urls) = databases().await;
    for url in &urls {
        let store = open(url).await;
        let login: Login = "Ada".parse().unwrap();
        let ada = store
            .create_user(&login, "Ada L.", Role::Admin, "hash-1")
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .create_user(&login, "again", Role::Member, "h")
                .await
                .unwrap()
                .is_none(),
            "{}: a login is taken once",
            name_of(url)
        );
        let bob = store
            .create_user(&"bob".parse().unwrap(), "Bob", Role::Member, "hash-2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.count_users().await.unwrap(), 2);
        assert_eq!(
            store
                .user_by_login(&login)
                .await
                .unwrap()
                .unwrap()
                .password_hash,
            "hash-1"
        );
        // The last active admin stays one.
        let demote = UserChange {
            role: Some(Role::Member),
            ..Default::default()
        };
        assert!(store.change_user(ada.id, &demote).await.unwrap().is_none());
        let changed = store
            .change_user(
                bob.id,
                &UserChange {
                    role: Some(Role::Admin),
                    disabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(changed.disabled, "{}", name_of(url));
        assert_eq!(
            (changed.role, changed.display_name.as_str()),
            (Role::Admin, "Bob")
        );
        let renamed = store
            .change_user(
                bob.id,
                &UserChange {
                    display_name: Some("Robert".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (renamed.display_name.as_str(), renamed.disabled),
            ("Robert", true)
        );
        assert!(
            store.change_user(ada.id, &demote).await.unwrap().is_none(),
            "a disabled admin is none"
        );
        assert_eq!(
            store.user_by_id(ada.id).await.unwrap().unwrap().user.role,
            Role::Admin
        );
        // Stored to the microsecond.
        let now = Utc::now().trunc_subsecs(6);
        store.set_last_sign_in(ada.id, now).await.unwrap();
        let users = store.list_users().await.unwrap();
        assert_eq!(users[0].last_sign_in_at, Some(now));

        // API tokens: found by hash, revoked once, by their owner only.
        let token = ApiToken {
            id: uuid::Uuid::now_v7(),
            name: "ci".into(),
            created_at: now,
            expires_at: Some(now + Duration::days(30)),
            last_used_at: None,
            revoked_at: None,
        };
        store
            .insert_api_token(ada.id, &token, "sha-ci")
            .await
            .unwrap();
        let found = store.api_token_by_hash("sha-ci").await.unwrap().unwrap();
        assert_eq!((found.user, found.token.clone()), (ada.id, token.clone()));
        store.touch_api_token(token.id, now).await.unwrap();
        let revoke = |user: app::domain::UserId, id| store.revoke_api_tokens(user, id);
        assert_eq!(revoke(bob.id, Some(token.id)).await.unwrap(), 0);
        assert_eq!(revoke(ada.id, Some(token.id)).await.unwrap(), 1);
        assert_eq!(revoke(ada.id, Some(token.id)).await.unwrap(), 0);
        // Every live one of theirs at once, and no one else's.
        for (user, name) in [(ada.id, "a"), (ada.id, "b"), (bob.id, "c")] {
            let other = ApiToken {
                id: uuid::Uuid::now_v7(),
                name: name.into(),
                ..token.clone()
            };
            let hash = format!("sha-{name}");
            store.insert_api_token(user, &other, &hash).await.unwrap();
        }
        assert_eq!(revoke(ada.id, None).await.unwrap(), 2);
        assert_eq!(revoke(ada.id, None).await.unwrap(), 0);
        assert_eq!(revoke(bob.id, None).await.unwrap(), 1);
        let listed = store.list_api_tokens(ada.id).await.unwrap();
        assert_eq!(listed[0].last_used_at, Some(now));
        assert!(listed[0].revoked_at.is_some());

        // Browser sessions: created once, expired ones unreadable.
        let later = now + Duration::hours(1);
        assert!(store
            .create_browser_session("b1", Some(ada.id), "{}", later)
            .await
            .unwrap());
        assert!(!store
            .create_browser_session("b1", None, "{}", later)
            .await
            .unwrap());
        store
            .save_browser_session("b1", Some(ada.id), "{\"n\":1}", later)
            .await
            .unwrap();
        assert_eq!(
            store.load_browser_session("b1").await.unwrap().as_deref(),
            Some("{\"n\":1}")
        );
        store
            .save_browser_session("b1", Some(ada.id), "{}", now - Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(store.load_browser_session("b1").await.unwrap(), None);
        store
            .create_browser_session("b2", Some(ada.id), "{}", later)
            .await
            .unwrap();
        assert_eq!(store.delete_browser_sessions_of(ada.id).await.unwrap(), 1);

        // Shares: set, changed in place, listed, removed.
        let s = store
            .create_session(&spec("shared"), Some(ada.id))
            .await
            .unwrap();
        store
            .set_share(s.id, bob.id, ShareLevel::Watch)
            .await
            .unwrap();
        store
            .set_share(s.id, bob.id, ShareLevel::Operate)
            .await
            .unwrap();
        assert_eq!(
            store.share_level(s.id, bob.id).await.unwrap(),
            Some(ShareLevel::Operate)
        );
        assert_eq!(store.shares_of(s.id).await.unwrap().len(), 1);
        assert_eq!(store.list_sessions(Some(bob.id)).await.unwrap().len(), 1);
        assert_eq!(
            store.shared_with(bob.id).await.unwrap(),
            vec![(s.id, ShareLevel::Operate)]
        );
        assert!(store.remove_share(s.id, bob.id).await.unwrap());
        assert!(store.list_sessions(Some(bob.id)).await.unwrap().is_empty());
        assert_eq!(store.list_sessions(Some(ada.id)).await.unwrap().len(), 1);
        // One's own and those shared, each once (one's own shared with
        // oneself too), a session of no one's (the local operator's) among
        // them; not the others'.
        let bobs = store
            .create_session(&spec("bob's"), Some(bob.id))
            .await
            .unwrap();
        let nobodys = store.create_session(&spec("nobody's"), None).await.unwrap();
        store
            .create_session(&spec("ada's alone"), Some(ada.id))
            .await
            .unwrap();
        for shared in [s.id, bobs.id, nobodys.id] {
            store
                .set_share(shared, bob.id, ShareLevel::Watch)
                .await
                .unwrap();
        }
        let mut listed: Vec<_> = store
            .list_sessions(Some(bob.id))
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        listed.sort();
        let mut expected = vec![s.id, bobs.id, nobodys.id];
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(store.list_sessions(None).await.unwrap().len(), 4);
    }
}

/// A secret as if sealed under the key whose check value is `key_check`.
fn sealed(value: &str, key_check: &str) -> SealedSecret {
    SealedSecret {
        sealed: value.into(),
        key_check: key_check.into(),
    }
}

/// A rotation that marks what it seals again, and cannot open the
/// credential named `UNOPENABLE`.
struct Marked;

impl Reseal for Marked {
    fn credential(&self, c: &SealedCredential) -> Result<(Vec<u8>, Vec<u8>), String> {
        match c.id.name.as_str() {
            "UNOPENABLE" => Err("does not open".into()),
            _ => Ok((
                c.nonce.iter().map(|b| b ^ 1).collect(),
                c.ciphertext.clone(),
            )),
        }
    }

    fn trigger_secret(&self, _: TriggerId, sealed: &str) -> Result<String, String> {
        Ok(format!("resealed {sealed}"))
    }

    fn endpoint_secret(&self, _: EndpointId, sealed: &str) -> Result<String, String> {
        Ok(format!("resealed {sealed}"))
    }
}

#[tokio::test]
async fn credentials_audit_proxy_tokens_and_meta() {
    let (_dir, urls) = databases().await;
    for url in &urls {
        let store = open(url).await;
        let sealed = |name: &str, byte: u8| SealedCredential {
            id: CredentialId {
                scope: CredentialScope::Server,
                kind: CredentialKind::Secret,
                name: name.into(),
            },
            // Every byte value survives, NUL included.
            nonce: vec![0, byte, 255],
            ciphertext: (0..=255).collect(),
            hint: "…abcd".into(),
            updated_at: Utc::now(),
            updated_by: "ada".into(),
        };
        let db = name_of(url);
        store
            .meta_or_insert("master_key_check", "old".into())
            .await
            .unwrap();
        let a = sealed("A_TOKEN", 1);
        store.put_credential(&a, "old").await.unwrap();
        store
            .put_credential(&sealed("A_TOKEN", 2), "old")
            .await
            .unwrap();
        let got = store.credential(&a.id).await.unwrap().unwrap();
        assert_eq!(got.nonce, vec![0, 2, 255], "{db}");
        assert_eq!(got.ciphertext, a.ciphertext);
        // Sealed under a key that is not the database's: nothing is written.
        let b = sealed("B_TOKEN", 3);
        let stale = store.put_credential(&b, "other").await.unwrap_err();
        assert!(matches!(stale, StoreError::KeyChanged), "{db}: {stale}");
        assert!(store.credential(&b.id).await.unwrap().is_none(), "{db}");
        // A rotation from a check that is not the database's changes nothing.
        let stale = store
            .rotate_master_key("other", "new", &Marked)
            .await
            .unwrap_err();
        assert!(matches!(stale, StoreError::KeyChanged), "{db}: {stale}");
        assert_eq!(
            store
                .rotate_master_key("old", "new", &Marked)
                .await
                .unwrap(),
            1
        );
        let got = store.credential(&a.id).await.unwrap().unwrap();
        assert_eq!(got.nonce, vec![1, 3, 254], "{db}");
        assert_eq!(got.ciphertext, a.ciphertext);
        let check = |want: &'static str| {
            let store = store.clone();
            async move {
                let got = store
                    .meta_or_insert("master_key_check", "x".into())
                    .await
                    .unwrap();
                assert_eq!(got, want, "{db}");
            }
        };
        check("new").await;
        // What was sealed under the old key is not written any more.
        let stale = store.put_credential(&b, "old").await.unwrap_err();
        assert!(matches!(stale, StoreError::KeyChanged), "{db}: {stale}");
        // A value that does not open leaves everything as it was.
        store
            .put_credential(&sealed("UNOPENABLE", 4), "new")
            .await
            .unwrap();
        let failed = store
            .rotate_master_key("new", "newer", &Marked)
            .await
            .unwrap_err();
        assert!(matches!(failed, StoreError::Corrupt(_)), "{db}: {failed}");
        check("new").await;
        let got = store.credential(&a.id).await.unwrap().unwrap();
        assert_eq!(got.nonce, vec![1, 3, 254], "{db}");
        assert!(store.delete_credential(&a.id).await.unwrap());
        assert!(!store.delete_credential(&a.id).await.unwrap());

        for i in 0..5 {
            store
                .record_audit(&NewAuditEntry {
                    actor: "ada".into(),
                    action: AuditAction::SignIn,
                    target: format!("t{i}"),
                    detail: "ok".into(),
                    address: (i % 2 == 0).then(|| "127.0.0.1".to_owned()),
                })
                .await
                .unwrap();
        }
        // What a caller typed goes through Auth::audit, which keeps it
        // storable on every database: NUL and control characters replaced.
        let auth = server::auth::Auth::new(store.clone(), server::hub::Hub::new(), true);
        auth.audit("a\u{0}b\u{7}", AuditAction::SignInFailed, "", "", None)
            .await;
        let failed = store.audit_log(None, 1).await.unwrap();
        assert_eq!(failed[0].actor, "a\u{FFFD}b\u{FFFD}", "{}", name_of(url));
        let newest = store.audit_log(Some(failed[0].id), 2).await.unwrap();
        assert_eq!(newest.len(), 2);
        assert_eq!(newest[0].target, "t4");
        let older = store.audit_log(Some(newest[1].id), 10).await.unwrap();
        let targets: Vec<_> = older.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(targets, ["t2", "t1", "t0"], "{}", name_of(url));

        let s = store.create_session(&spec("proxy"), None).await.unwrap();
        let soon = Utc::now() + Duration::minutes(5);
        store.insert_proxy_token("live", s.id, soon).await.unwrap();
        store
            .insert_proxy_token("old", s.id, Utc::now() - Duration::seconds(1))
            .await
            .unwrap();
        assert!(store.proxy_token_valid("live", s.id).await.unwrap());
        assert!(!store.proxy_token_valid("old", s.id).await.unwrap());
        assert!(!store
            .proxy_token_valid("live", uuid::Uuid::now_v7())
            .await
            .unwrap());
        store.insert_proxy_token("other", s.id, soon).await.unwrap();
        store.revoke_proxy_tokens(s.id, Some("live")).await.unwrap();
        assert!(!store.proxy_token_valid("live", s.id).await.unwrap());
        assert!(store.proxy_token_valid("other", s.id).await.unwrap());
        store.revoke_proxy_tokens(s.id, None).await.unwrap();
        assert!(!store.proxy_token_valid("other", s.id).await.unwrap());
    }
}

#[tokio::test]
async fn templates_keep_every_version() {
    let (_dir, urls) = databases().await;
    for url in &urls {
        let store = open(url).await;
        let draft = |name: &str| TemplateDraft {
            name: name.into(),
            description: "d".into(),
            session: NewSession {
                name: "from template".into(),
                max_turns: Some(3),
                ..Default::default()
            },
            triggers_require: None,
        };
        let ada = store
            .create_user(&"ada".parse().unwrap(), "Ada", Role::Member, "h")
            .await
            .unwrap()
            .unwrap();
        let mine = store
            .create_template(Some(ada.id), &draft("mine"), "ada")
            .await
            .unwrap();
        let zed = store
            .create_template(None, &draft("zed"), "ada")
            .await
            .unwrap();
        store
            .create_template(None, &draft("Alpha"), "ada")
            .await
            .unwrap();
        store
            .create_template(None, &draft("beta"), "ada")
            .await
            .unwrap();
        let v2 = store
            .update_template(zed.id, Some(1), &draft("Zed two"), "bob")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((v2.version, v2.updated_by.as_str()), (2, "bob"));
        assert!(
            store
                .update_template(zed.id, Some(1), &draft("Zed lost"), "ada")
                .await
                .unwrap()
                .is_none(),
            "{}: a save based on version 1 after version 2",
            name_of(url)
        );
        assert_eq!(v2.draft.session.max_turns, Some(3));
        let versions: Vec<_> = store
            .template_versions(zed.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.version, t.name))
            .collect();
        assert_eq!(versions, [(2, "Zed two".into()), (1, "zed".into())]);
        // An older one, whole.
        let first = store
            .get_template_version(zed.id, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first.version, first.draft.name.as_str()), (1, "zed"));
        assert!(store
            .get_template_version(zed.id, 9)
            .await
            .unwrap()
            .is_none());
        let names: Vec<_> = store
            .list_templates(None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(
            names,
            ["Alpha", "beta", "mine", "Zed two"],
            "{}: without case",
            name_of(url)
        );
        let owned: Vec<_> = store
            .list_templates(Some(ada.id))
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(owned, [mine.id]);
        assert!(store
            .update_template(uuid::Uuid::now_v7(), None, &draft("x"), "ada")
            .await
            .unwrap()
            .is_none());
        assert!(store.delete_template(zed.id).await.unwrap());
        assert!(store.get_template(zed.id).await.unwrap().is_none());
        assert!(store.template_versions(zed.id).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn triggers_claim_each_delivery_once_and_keep_their_conversations() {
    use app::triggers::{Delivery, TriggerDraft, TriggerKind};
    use server::store::triggers::{
        Claim, ConversationClaim, Delivered, DeliveredPrompt, NextRun, SealedTriggerSecrets,
    };
    let (_dir, urls) = databases().await;
    for url in &urls {
        let store = open(url).await;
        let db = name_of(url);
        let template = store
            .create_template(
                None,
                &TemplateDraft {
                    name: "t".into(),
                    description: String::new(),
                    session: NewSession::default(),
                    triggers_require: None,
                },
                "ada",
            )
            .await
            .unwrap();
        let draft = TriggerDraft {
            name: "hook".into(),
            kind: TriggerKind::Webhook,
            prompt: "{{ payload.x }}".into(),
            conversation: None,
            permission_mode: "ask".parse().unwrap(),
            paused: false,
            handle: None,
            schedule: None,
        };
        let id = uuid::Uuid::now_v7();
        store
            .meta_or_insert("master_key_check", "check".into())
            .await
            .unwrap();
        let stale = store
            .create_trigger(
                id,
                template.id,
                &draft,
                &sealed("sealed-0", "other"),
                "ada",
                NextRun::Never,
            )
            .await
            .unwrap_err();
        assert!(matches!(stale, StoreError::KeyChanged), "{db}: {stale}");
        assert!(store.get_trigger(id).await.unwrap().is_none(), "{db}");
        let made = store
            .create_trigger(
                id,
                template.id,
                &draft,
                &sealed("sealed-1", "check"),
                "ada",
                NextRun::Never,
            )
            .await
            .unwrap();
        assert_eq!((made.id, made.template), (id, template.id));
        let (_, secrets) = store.get_trigger(id).await.unwrap().unwrap();
        assert_eq!(
            secrets,
            SealedTriggerSecrets {
                id,
                secret: "sealed-1".into(),
                previous: None
            }
        );
        // Rotated: the old one counts until its time, then not.
        let until = Utc::now() + chrono::Duration::hours(1);
        let stale = store
            .rotate_trigger_secret(id, &sealed("sealed-x", "other"), until)
            .await
            .unwrap_err();
        assert!(matches!(stale, StoreError::KeyChanged), "{db}: {stale}");
        let rotated = store
            .rotate_trigger_secret(id, &sealed("sealed-2", "check"), until)
            .await
            .unwrap()
            .unwrap();
        assert!(rotated.previous_secret_until.is_some(), "{db}");
        let (_, secrets) = store.get_trigger(id).await.unwrap().unwrap();
        assert_eq!(
            (secrets.secret.as_str(), secrets.previous.as_deref()),
            ("sealed-2", Some("sealed-1"))
        );
        store
            .rotate_trigger_secret(
                id,
                &sealed("sealed-3", "check"),
                Utc::now() - chrono::Duration::seconds(1),
            )
            .await
            .unwrap();
        let (t, secrets) = store.get_trigger(id).await.unwrap().unwrap();
        assert_eq!(
            (secrets.previous, t.previous_secret_until),
            (None, None),
            "{db}"
        );
        // The master key rotated: each secret is sealed again, the
        // previous one too.
        store
            .rotate_trigger_secret(id, &sealed("sealed-4", "check"), until)
            .await
            .unwrap();
        store
            .rotate_master_key("check", "check-2", &Marked)
            .await
            .unwrap();
        let (_, secrets) = store.get_trigger(id).await.unwrap().unwrap();
        assert_eq!(
            (secrets.secret.as_str(), secrets.previous.as_deref()),
            ("resealed sealed-4", Some("resealed sealed-3")),
            "{db}"
        );

        // A delivery's id: claimed once; a repeat sees it being handled,
        // then its answer.
        let long_ago = Utc::now() - chrono::Duration::minutes(2);
        let fresh = Claim::New {
            session: None,
            prompted: false,
        };
        assert_eq!(
            store
                .claim_delivery(id, "d1", "c1", long_ago)
                .await
                .unwrap(),
            fresh
        );
        let Claim::Seen(pending) = store
            .claim_delivery(id, "d1", "c2", long_ago)
            .await
            .unwrap()
        else {
            panic!("{db}: claimed twice");
        };
        assert_eq!(pending.status, 0);
        // The log lists answered ones only.
        assert!(store.deliveries(id).await.unwrap().is_empty());
        let session = uuid::Uuid::now_v7();
        assert!(!store
            .note_delivery_session(id, "d1", "c2", session)
            .await
            .unwrap());
        assert!(store
            .note_delivery_session(id, "d1", "c1", session)
            .await
            .unwrap());
        let done = Delivery {
            trigger: id,
            id: "d1".into(),
            received_at: Utc::now(),
            status: 202,
            outcome: "started".into(),
            session: Some(session),
        };
        // Only the claim's holder finishes it.
        assert!(!store.finish_delivery(&done, "c2", None).await.unwrap());
        assert_eq!(store.delivery(id, "d1").await.unwrap().unwrap().status, 0);
        assert!(store.finish_delivery(&done, "c1", None).await.unwrap());
        let Claim::Seen(seen) = store
            .claim_delivery(id, "d1", "c3", long_ago)
            .await
            .unwrap()
        else {
            panic!("{db}: claimed twice");
        };
        assert_eq!((seen.status, seen.session), (202, Some(session)));
        // Deliveries received before the time given are forgotten; with
        // none (a sender that signs no time: Twilio), each is kept.
        let raw = sqlx::AnyPool::connect(url).await.unwrap();
        store
            .claim_delivery(id, "old-1", "c-old", long_ago)
            .await
            .unwrap();
        let answered = Delivery {
            id: "old-1".into(),
            ..done.clone()
        };
        assert!(store
            .finish_delivery(&answered, "c-old", None)
            .await
            .unwrap());
        let aged = (Utc::now() - chrono::Duration::days(40))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        sqlx::query("UPDATE trigger_deliveries SET received_at = $1 WHERE delivery_id = 'old-1'")
            .bind(aged)
            .execute(&raw)
            .await
            .unwrap();
        store.finish_delivery(&done, "c1", None).await.unwrap();
        assert!(store.delivery(id, "old-1").await.unwrap().is_some(), "{db}");
        let month_ago = Some(Utc::now() - chrono::Duration::days(30));
        store.finish_delivery(&done, "c1", month_ago).await.unwrap();
        assert!(store.delivery(id, "old-1").await.unwrap().is_none(), "{db}");
        // One given up is handled again at once, with the session it made
        // and whether it queued its prompt; one being handled since before
        // `abandoned_before` is taken over.
        assert_eq!(
            store
                .claim_delivery(id, "d2", "c4", long_ago)
                .await
                .unwrap(),
            fresh
        );
        let real = store.create_session(&spec("s"), None).await.unwrap().id;
        store
            .note_delivery_session(id, "d2", "c4", real)
            .await
            .unwrap();
        // Its record, its prompt and its note go in one transaction, and
        // only while its claim holds it: a handling taken over queues
        // nothing, so the repeat that took it over prompts once.
        let delivered = |claim| Delivered {
            trigger: id,
            id: "d2",
            claim,
            record: EventKind::Delivery {
                trigger: "t".into(),
                id: "d2".into(),
                verified: "signed".into(),
            },
        };
        let prompt = EventKind::UserMessage { text: "go".into() };
        let queued = |s| {
            let store = store.clone();
            async move {
                (
                    store.events_after(s, 0, 10).await.unwrap().len(),
                    store.queued_prompts(s).await.unwrap(),
                )
            }
        };
        assert!(matches!(
            store
                .append_delivered_prompt(real, &delivered("c3"), &prompt)
                .await
                .unwrap(),
            DeliveredPrompt::Taken
        ));
        assert_eq!(queued(real).await, (0, 0), "{db}");
        assert!(matches!(
            store
                .append_delivered_prompt(uuid::Uuid::now_v7(), &delivered("c4"), &prompt)
                .await
                .unwrap(),
            DeliveredPrompt::SessionGone
        ));
        let DeliveredPrompt::Queued(queued_now) = store
            .append_delivered_prompt(real, &delivered("c4"), &prompt)
            .await
            .unwrap()
        else {
            panic!("{db}: not queued");
        };
        let [record, asked] = *queued_now;
        assert_eq!(
            (record.seq, &record.kind, asked.seq, &asked.kind),
            (1, &delivered("c4").record, 2, &prompt),
            "{db}"
        );
        assert_eq!(queued(real).await, (2, 1), "{db}");
        store.abandon_delivery(id, "d2", "c4").await.unwrap();
        // A finish forgets only old answered ones, not one given up.
        store.finish_delivery(&done, "c1", None).await.unwrap();
        assert_eq!(
            store
                .claim_delivery(id, "d2", "c5", long_ago)
                .await
                .unwrap(),
            Claim::New {
                session: Some(real),
                prompted: true
            },
            "{db}"
        );
        store.abandon_delivery(id, "d2", "c4").await.unwrap();
        assert!(matches!(
            store
                .claim_delivery(id, "d2", "c6", long_ago)
                .await
                .unwrap(),
            Claim::Seen(_)
        ));
        assert!(matches!(
            store
                .claim_delivery(id, "d2", "c7", Utc::now() + chrono::Duration::seconds(5))
                .await
                .unwrap(),
            Claim::New { .. }
        ));
        assert!(matches!(
            store
                .append_delivered_prompt(real, &delivered("c5"), &prompt)
                .await
                .unwrap(),
            DeliveredPrompt::Taken
        ));
        assert_eq!(store.deliveries(id).await.unwrap().len(), 1, "{db}");
        // A handling that renews its claim is not taken for abandoned by
        // one that began after it did, however long it takes.
        let began = Utc::now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(store.renew_delivery(id, "d2", "c7").await.unwrap(), "{db}");
        assert!(!store.renew_delivery(id, "d2", "c6").await.unwrap(), "{db}");
        assert!(
            matches!(
                store.claim_delivery(id, "d2", "c8", began).await.unwrap(),
                Claim::Seen(_)
            ),
            "{db}"
        );

        // A conversation's key: claimed once while its session is made.
        assert_eq!(
            store
                .claim_conversation(id, "thread", "k1", long_ago)
                .await
                .unwrap(),
            ConversationClaim::New
        );
        assert_eq!(
            store
                .claim_conversation(id, "thread", "k2", long_ago)
                .await
                .unwrap(),
            ConversationClaim::Pending
        );
        assert!(!store
            .set_conversation(id, "thread", "k2", session)
            .await
            .unwrap());
        assert!(store
            .set_conversation(id, "thread", "k1", session)
            .await
            .unwrap());
        assert_eq!(
            store
                .claim_conversation(id, "thread", "k2", long_ago)
                .await
                .unwrap(),
            ConversationClaim::Session(session)
        );
        // Its session gone: retaken once; given up, claimed anew.
        assert!(store
            .retake_conversation(id, "thread", "k3", session)
            .await
            .unwrap());
        assert!(!store
            .retake_conversation(id, "thread", "k4", session)
            .await
            .unwrap());
        store
            .release_conversation(id, "thread", "k4")
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_conversation(id, "thread", "k5", long_ago)
                .await
                .unwrap(),
            ConversationClaim::Pending,
            "{db}: only its holder gives it up"
        );
        store
            .release_conversation(id, "thread", "k3")
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_conversation(id, "thread", "k5", long_ago)
                .await
                .unwrap(),
            ConversationClaim::New,
            "{db}"
        );
        // A claim left since before `abandoned_before` is taken over.
        assert_eq!(
            store
                .claim_conversation(
                    id,
                    "thread",
                    "k6",
                    Utc::now() + chrono::Duration::seconds(5)
                )
                .await
                .unwrap(),
            ConversationClaim::New,
            "{db}"
        );

        let changed = TriggerDraft {
            paused: true,
            ..draft.clone()
        };
        assert!(
            store
                .update_trigger(id, &changed, NextRun::Never)
                .await
                .unwrap()
                .unwrap()
                .draft
                .paused
        );
        assert_eq!(store.list_triggers(template.id).await.unwrap().len(), 1);

        // A schedule: due once its time comes; moved on by one caller.
        let at = Utc::now() + chrono::Duration::hours(1);
        let later = at + chrono::Duration::days(1);
        store
            .update_trigger(id, &draft, NextRun::At(at))
            .await
            .unwrap();
        assert!(store.due_schedules(Utc::now()).await.unwrap().is_empty());
        let due = store.due_schedules(at).await.unwrap();
        assert_eq!(due.len(), 1, "{db}");
        assert_eq!(due[0].0, id);
        assert_eq!(due[0].1.timestamp_micros(), at.timestamp_micros());
        assert!(store
            .advance_schedule(id, due[0].1, Some(later))
            .await
            .unwrap());
        assert!(
            !store
                .advance_schedule(id, due[0].1, Some(later))
                .await
                .unwrap(),
            "{db}: moved on twice"
        );
        // Its last time: gone, once.
        assert!(store.advance_schedule(id, later, None).await.unwrap());
        assert!(!store.advance_schedule(id, later, None).await.unwrap());
        // Written with the trigger: an edit that keeps its times keeps the
        // time it has, or sets one where it has none; paused, it has none.
        let next_of = |store: Arc<dyn Store>| async move {
            let due = store.due_schedules(later).await.unwrap();
            due.first().map(|(_, at)| at.timestamp_micros())
        };
        store
            .update_trigger(id, &draft, NextRun::Kept(Some(later)))
            .await
            .unwrap();
        assert_eq!(next_of(store.clone()).await, Some(later.timestamp_micros()));
        store
            .update_trigger(id, &draft, NextRun::Kept(Some(at)))
            .await
            .unwrap();
        store
            .update_trigger(id, &draft, NextRun::Kept(None))
            .await
            .unwrap();
        assert_eq!(
            next_of(store.clone()).await,
            Some(later.timestamp_micros()),
            "{db}"
        );
        assert!(store.due_schedules(at).await.unwrap().is_empty());
        store
            .update_trigger(id, &changed, NextRun::Never)
            .await
            .unwrap();
        assert_eq!(next_of(store.clone()).await, None, "{db}");
        store
            .update_trigger(id, &draft, NextRun::Kept(None))
            .await
            .unwrap();
        assert_eq!(next_of(store.clone()).await, None, "{db}");
        // Nothing of a trigger that is gone.
        assert!(store
            .update_trigger(uuid::Uuid::now_v7(), &draft, NextRun::At(at))
            .await
            .unwrap()
            .is_none());
        store
            .update_trigger(id, &draft, NextRun::At(later))
            .await
            .unwrap();
        // Gone with its template, and its deliveries and schedule.
        assert!(store.delete_template(template.id).await.unwrap());
        assert!(store.get_trigger(id).await.unwrap().is_none(), "{db}");
        assert!(store.deliveries(id).await.unwrap().is_empty());
        assert!(store.delivery(id, "d1").await.unwrap().is_none(), "{db}");
        assert!(store.due_schedules(later).await.unwrap().is_empty());
        assert!(!store.delete_trigger(id).await.unwrap());
    }
}

/// A Paddock on PostgreSQL: a prompt runs a tool in a Docker sandbox and
/// its transcript is numbered without a gap; a second Paddock opened on the
/// same database (a restart) finds the session, its transcript and cost.
#[tokio::test]
async fn a_paddock_on_postgres_runs_a_prompt_and_keeps_it_across_a_restart() {
    let (_model, url) = common::scripted(
        &serde_json::json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo from-postgres"}}}]},
            {"reply": "done"}
        ]),
        None,
    )
    .await;
    let mut flags = common::model_flags(&url, "sk-test");
    flags.push(format!("--database-url={}", postgres::database().await));
    let home = Home::new();
    let paddock = common::open(&home, "docker", &flags).await;
    let session = common::create(
        &paddock,
        NewSession {
            name: "on postgres".into(),
            permission_mode: Some("auto".parse().unwrap()),
            ..Default::default()
        },
    )
    .await;
    let events = common::run(&paddock, session.id, "say where you run").await;
    assert_eq!(common::last_status(&events).0, SessionStatus::Idle);
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::ToolResult { output, .. } if output.contains("from-postgres"))),
        "{:?}",
        common::kinds(&events)
    );
    let cost = paddock
        .store
        .get_session(session.id)
        .await
        .unwrap()
        .unwrap();
    drop(paddock);

    let restarted = common::open(&home, "docker", &flags).await;
    let again = restarted
        .store
        .get_session(session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.turns, again.last_seq), (cost.turns, cost.last_seq));
    assert_eq!(common::events(&restarted, session.id).await, events);
}

/// PostgreSQL restarted under load: 8 writers append to one session while
/// the server shuts down and comes back. An append either succeeds or
/// fails as "unreachable" (503 over HTTP, where the API answers that while
/// the database is away), a failed append leaves nothing behind, and once
/// the server is back the writers go on: the log is gapless, and holds
/// every append that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing() {
    let cluster = tokio::task::spawn_blocking(postgres::Cluster::own)
        .await
        .unwrap();
    let server = cluster.serve();
    let url = cluster.database().await;
    let home = Home::new();
    let paddock = common::open(&home, "local", &[format!("--database-url={url}")]).await;
    let served = common::serve(paddock.clone()).await;
    let s = paddock
        .store
        .create_session(&spec("under load"), None)
        .await
        .unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (store, stop) = (paddock.store.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut refused) = (Vec::new(), 0);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let text = format!("{w}.{i}");
                    i += 1;
                    match store
                        .append_event(s.id, &EventKind::AssistantText { text: text.clone() })
                        .await
                    {
                        Ok(event) => ok.push((event.unwrap().seq, text)),
                        Err(e) => {
                            assert!(e.unreachable(), "{e}");
                            refused += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let watched = paddock
        .store
        .create_session(&spec("watched"), None)
        .await
        .unwrap();
    let mut transcript = reqwest::get(served.url(&format!("/api/sessions/{}/events", watched.id)))
        .await
        .unwrap();
    assert_eq!(transcript.status(), 200);
    // Caught up (there is nothing to read) before the outage.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The writers keep writing while the server shuts down.
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    // An access change meanwhile: the open stream's check of its viewer
    // cannot be answered, which ends nothing.
    paddock.hub.deliver_access_change(None);
    let down = reqwest::get(served.url("/api/sessions")).await.unwrap();
    assert_eq!(down.status(), 503, "{}", down.text().await.unwrap());
    let server = cluster.serve();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut refused) = (Vec::new(), 0);
    for w in writers {
        let (o, r) = w.await.unwrap();
        ok.extend(o);
        refused += r;
    }
    assert!(refused > 0, "the restart was noticed");
    assert!(
        stays_open(&mut transcript).await,
        "the stream ended in the outage"
    );
    let up = reqwest::get(served.url("/api/sessions")).await.unwrap();
    assert_eq!(up.status(), 200);

    let stored = paddock
        .store
        .events_after(s.id, 0, 1_000_000)
        .await
        .unwrap();
    let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "gapless"
    );
    for (seq, text) in &ok {
        assert_eq!(
            stored[(*seq - 1) as usize].kind,
            EventKind::AssistantText { text: text.clone() },
            "append {seq} as it succeeded"
        );
    }
    // A commit whose answer was lost in the shutdown is the one kind of
    // append stored without its writer knowing.
    assert!(stored.len() >= ok.len() && stored.len() <= ok.len() + 8);
    drop(served);
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
}

/// Whether a streamed answer stays open: what came is read, and no end
/// comes within a second of quiet.
async fn stays_open(res: &mut reqwest::Response) -> bool {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(1), res.chunk()).await {
            Err(_) => return true,
            Ok(Ok(Some(_))) => {}
            Ok(_) => return false,
        }
    }
}

#[tokio::test]
async fn notification_cursors_see_each_event_once_in_log_order() {
    use app::domain::TemplateRef;
    use app::notifications::{EndpointDraft, Message, MessageState, NotifiedEvent, Scope};
    let (_dir, urls) = databases().await;
    for url in &urls {
        let store = open(url).await;
        let db = name_of(url);
        let template = store
            .create_template(
                None,
                &TemplateDraft {
                    name: "t".into(),
                    description: String::new(),
                    session: NewSession::default(),
                    triggers_require: None,
                },
                "ada",
            )
            .await
            .unwrap();
        let of_template = |name: &str| SessionSpec {
            template: Some(TemplateRef {
                id: template.id,
                name: "t".into(),
                version: 1,
            }),
            ..spec(name)
        };
        // Before the endpoint: not its to tell.
        let old = store
            .create_session(&of_template("old"), None)
            .await
            .unwrap();
        store
            .set_status(old.id, SessionStatus::Idle, None)
            .await
            .unwrap();
        let other = store.create_session(&spec("other"), None).await.unwrap();
        let id = uuid::Uuid::now_v7();
        let draft = EndpointDraft {
            url: "https://hooks.example.com/x".into(),
            events: NotifiedEvent::ALL.to_vec(),
        };
        store
            .meta_or_insert("master_key_check", "check".into())
            .await
            .unwrap();
        let made = |key_check: &'static str| {
            let (store, draft) = (store.clone(), draft.clone());
            async move {
                store
                    .create_endpoint(
                        id,
                        Scope::Template(template.id),
                        None,
                        &draft,
                        &sealed("sealed", key_check),
                        "ada",
                    )
                    .await
            }
        };
        let stale = made("other").await.unwrap_err();
        assert!(matches!(stale, StoreError::KeyChanged), "{db}: {stale}");
        assert!(store.get_endpoint(id).await.unwrap().is_none(), "{db}");
        let endpoint = made("check").await.unwrap();
        store
            .rotate_master_key("check", "check-2", &Marked)
            .await
            .unwrap();
        let (_, secret) = store.get_endpoint(id).await.unwrap().unwrap();
        assert_eq!(secret.secret, "resealed sealed", "{db}");
        let behind = || store.sessions_behind(&endpoint, 10);
        assert!(behind().await.unwrap().is_empty(), "{db}");
        let due = || async {
            let due = store.endpoints_due(Utc::now()).await.unwrap();
            due.iter().map(|d| d.id).collect::<Vec<_>>()
        };
        assert!(!due().await.contains(&id), "{db}: nothing to tell yet");
        // A log that grew by nothing that may notify (a process polling a
        // host all day, text) gives the endpoint nothing to look at: such
        // sessions, never active, would be read first, 50 at a time, and
        // could keep a finished session's notice waiting.
        let chatty = store
            .create_session(&of_template("chatty"), None)
            .await
            .unwrap();
        for kind in [
            EventKind::AssistantText { text: "hm".into() },
            EventKind::Egress {
                host: "api.example.com".into(),
                port: 443,
                allowed: true,
                sent: 10,
                received: 20,
                reason: None,
            },
        ] {
            store.append_event(chatty.id, &kind).await.unwrap();
        }
        // A conversation is read without the sandbox's connections.
        let kinds = |events: Vec<app::domain::Event>| {
            events.iter().map(|e| e.kind.name()).collect::<Vec<_>>()
        };
        let all = store.events_after(chatty.id, 0, 100).await.unwrap();
        assert_eq!(kinds(all), ["assistant_text", "egress"], "{db}");
        let talk = store.conversation_after(chatty.id, 0).await.unwrap();
        assert_eq!(kinds(talk), ["assistant_text"], "{db}");
        assert!(!due().await.contains(&id), "{db}: nothing that notifies");
        assert!(behind().await.unwrap().is_empty(), "{db}");
        // A status stored by a replica of an older version, which keeps no
        // `notable_seq`: caught up with.
        let ended = store
            .set_status(chatty.id, SessionStatus::Idle, None)
            .await
            .unwrap()
            .unwrap();
        let raw = sqlx::AnyPool::connect(url).await.unwrap();
        sqlx::query("UPDATE sessions SET notable_seq = 0 WHERE id = $1")
            .bind(chatty.id.to_string())
            .execute(&raw)
            .await
            .unwrap();
        assert!(!due().await.contains(&id), "{db}: unseen until caught up");
        store
            .catch_up_notable(Utc::now() - Duration::hours(2))
            .await
            .unwrap();
        assert_eq!(behind().await.unwrap(), [(chatty.id, ended.seq)], "{db}");
        store
            .advance_cursor(id, chatty.id, ended.seq)
            .await
            .unwrap();
        // After: its sessions' logs, not the others'.
        let new = store
            .create_session(&of_template("new"), None)
            .await
            .unwrap();
        store
            .append_event(new.id, &EventKind::AssistantText { text: "hi".into() })
            .await
            .unwrap();
        store
            .set_status(new.id, SessionStatus::Idle, None)
            .await
            .unwrap();
        store
            .set_status(old.id, SessionStatus::Error, None)
            .await
            .unwrap();
        store
            .set_status(other.id, SessionStatus::Idle, None)
            .await
            .unwrap();
        assert!(due().await.contains(&id), "{db}: sessions behind");
        let behind = store.sessions_behind(&endpoint, 10).await.unwrap();
        let ids: Vec<_> = behind.iter().map(|(s, _)| *s).collect();
        assert_eq!(ids.len(), 2, "{db}");
        assert!(ids.contains(&new.id) && ids.contains(&old.id), "{db}");
        let events = store.events_behind(id, new.id, 10).await.unwrap();
        assert_eq!(events.len(), 1, "{db}: status changes only");
        let last = store
            .events_before(new.id, events[0].seq, "assistant_text", 5)
            .await
            .unwrap();
        assert_eq!(last.len(), 1);
        // A message stored moves the cursor past its event, at once.
        let now = Utc::now().round_subsecs(6);
        let message = Message {
            endpoint: id,
            id: "m1".into(),
            session: new.id,
            event: NotifiedEvent::Finished,
            state: MessageState::Pending,
            attempts: 0,
            response_code: None,
            error: None,
            created_at: now,
            updated_at: now,
            tried_since: now,
            next_attempt_at: Some(now),
        };
        store
            .queue_message(&message, "{}", events[0].seq)
            .await
            .unwrap();
        assert!(due().await.contains(&id), "{db}: a message due");
        assert!(store
            .events_behind(id, new.id, 10)
            .await
            .unwrap()
            .is_empty());
        let (next, body) = store.next_message(id).await.unwrap().unwrap();
        assert_eq!(
            (next.clone(), body.as_str()),
            (message.clone(), "{}"),
            "{db}"
        );
        let delivered = Message {
            state: MessageState::Delivered,
            attempts: 1,
            response_code: Some(204),
            next_attempt_at: None,
            ..message
        };
        store.update_message(&delivered).await.unwrap();
        assert!(store.next_message(id).await.unwrap().is_none());
        assert_eq!(
            store.messages(id).await.unwrap(),
            std::slice::from_ref(&delivered)
        );
        // Sent again by hand, later: tried anew from then.
        let later = now + Duration::hours(30);
        assert_eq!(
            store
                .redeliver(id, "m1", later + Duration::hours(1))
                .await
                .unwrap(),
            Redelivery::Queued
        );
        // Waiting for its next try: sent now instead.
        assert_eq!(
            store.redeliver(id, "m1", later).await.unwrap(),
            Redelivery::Queued
        );
        assert_eq!(
            store.redeliver(id, "nothing", later).await.unwrap(),
            Redelivery::Missing
        );
        // Due now (being tried, or about to be): not again.
        assert_eq!(
            store.redeliver(id, "m1", later).await.unwrap(),
            Redelivery::Pending
        );
        // Its next try is later: nothing else is sent before it, though
        // a session is still behind.
        assert!(!due().await.contains(&id), "{db}: a message waits");
        let again = store.next_message(id).await.unwrap().unwrap().0;
        assert_eq!(
            (
                again.state,
                again.attempts,
                again.tried_since,
                again.next_attempt_at
            ),
            (MessageState::Pending, 0, later, Some(later)),
            "{db}"
        );
        // A try read before that writes nothing over it.
        store
            .update_message(&Message {
                state: MessageState::Failed,
                ..delivered
            })
            .await
            .unwrap();
        let still = store.next_message(id).await.unwrap().unwrap().0;
        assert_eq!(still.state, MessageState::Pending, "{db}");
        // The log forgets what is no longer pending, past its days.
        store
            .update_message(&Message {
                state: MessageState::Failed,
                ..again
            })
            .await
            .unwrap();
        store
            .forget_messages(later - Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(store.messages(id).await.unwrap().len(), 1);
        store
            .forget_messages(later + Duration::seconds(1))
            .await
            .unwrap();
        assert!(store.messages(id).await.unwrap().is_empty(), "{db}");
        // Never moved back.
        store.advance_cursor(id, new.id, 1).await.unwrap();
        assert!(store
            .events_behind(id, new.id, 10)
            .await
            .unwrap()
            .is_empty());
        // Held by one server at a time, until let go.
        let later = now + Duration::seconds(60);
        assert!(store.hold_endpoint(id, "a", now, later).await.unwrap());
        assert!(
            !store.hold_endpoint(id, "b", now, later).await.unwrap(),
            "{db}"
        );
        assert!(store.hold_endpoint(id, "a", now, later).await.unwrap());
        assert!(store
            .hold_endpoint(id, "b", later + Duration::seconds(1), later)
            .await
            .unwrap());
        store.release_endpoints("b").await.unwrap();
        assert!(store.hold_endpoint(id, "c", now, later).await.unwrap());
        // A deleted session's messages go with it (their bodies hold its
        // name, its text, the input of the tools it asked for).
        let of_new = Message {
            id: "m2".into(),
            response_code: None,
            ..still
        };
        store
            .queue_message(&of_new, "{}", events[0].seq)
            .await
            .unwrap();
        assert_eq!(store.messages(id).await.unwrap(), [of_new], "{db}");
        assert!(store.delete_session(new.id).await.unwrap());
        assert!(store.messages(id).await.unwrap().is_empty(), "{db}");
        // Gone with its template.
        assert!(store.delete_template(template.id).await.unwrap());
        assert!(store.get_endpoint(id).await.unwrap().is_none(), "{db}");
    }
}

/// A run whose lease cannot be renewed for a lease's time (its database
/// unreachable for the leases) ends: another replica may have taken the
/// session over by then, and a session must not run twice. Before, only a
/// renewal answered "not yours" ended it.
#[tokio::test]
async fn a_run_whose_lease_is_not_renewed_for_a_lease_ends() {
    let (_model, url) = common::scripted(
        &serde_json::json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "sleep 30"}}}]},
            {"reply": "done"}
        ]),
        None,
    )
    .await;
    let database = postgres::database().await;
    let mut flags = common::model_flags(&url, "sk-test");
    flags.push(format!("--database-url={database}"));
    flags.push("--lease-secs=3".into());
    let home = Home::new();
    let paddock = common::open(&home, "local", &flags).await;
    server::replicas::spawn_heartbeat(&paddock.runner, std::time::Duration::from_secs(3));
    let session = common::create(
        &paddock,
        NewSession {
            name: "leased".into(),
            permission_mode: Some("auto".parse().unwrap()),
            ..Default::default()
        },
    )
    .await;
    paddock
        .send_prompt(
            &app::accounts::Caller::local_operator(),
            session.id,
            "sleep".into(),
        )
        .await
        .unwrap();
    common::wait_for_tool_call(&paddock, session.id).await;
    // The leases' table away: every renewal fails.
    let admin = sqlx::PgPool::connect(&database).await.unwrap();
    sqlx::query("ALTER TABLE session_leases RENAME TO session_leases_away")
        .execute(&admin)
        .await
        .unwrap();
    let mut ended = false;
    for _ in 0..100 {
        if !paddock.runner.is_running(session.id) {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sqlx::query("ALTER TABLE session_leases_away RENAME TO session_leases")
        .execute(&admin)
        .await
        .unwrap();
    assert!(ended, "the run went on for 10 s without its lease renewed");
}

/// Two admins demoting each other at the same moment, many times over:
/// one change goes through each time, and one active admin is left.
#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one() {
    let (_dir, urls) = databases().await;
    for url in urls {
        let store = open(&url).await;
        let mut admins = Vec::new();
        for name in ["ada", "bob"] {
            let user = store
                .create_user(&name.parse().unwrap(), name, Role::Admin, "h")
                .await
                .unwrap()
                .unwrap();
            admins.push(user.id);
        }
        let demote = UserChange {
            role: Some(Role::Member),
            ..Default::default()
        };
        let promote = UserChange {
            role: Some(Role::Admin),
            ..Default::default()
        };
        for round in 0..30 {
            let (a, b) = tokio::join!(
                store.change_user(admins[0], &demote),
                store.change_user(admins[1], &demote)
            );
            let done = [a.unwrap().is_some(), b.unwrap().is_some()];
            assert_eq!(
                done.iter().filter(|d| **d).count(),
                1,
                "{}: round {round}: {done:?}",
                name_of(&url)
            );
            for id in &admins {
                store.change_user(*id, &promote).await.unwrap().unwrap();
            }
        }
    }
}

/// A credential saved while the master key is rotated is either sealed
/// again with the rest or refused (503): never left under the old key,
/// never dropped. A transaction holding the key's check value stands for a
/// save between its check and its write; the rotation starts behind it,
/// and a save after the rotation.
#[tokio::test]
async fn a_save_during_a_master_key_rotation_is_kept_or_refused() {
    use app::domain::AppError;
    use server::vault::{self, MasterKey, Vault};
    let (_dir, urls) = databases().await;
    for url in &urls {
        let db = name_of(url);
        let store = open(url).await;
        let home = Home::new();
        let config = home.config("local", &[format!("--database-url={url}")]);
        let (old, new) = (MasterKey::generate(), MasterKey::generate());
        let vault = Arc::new(Vault::open(&old, store.clone(), &config).await.unwrap());
        let auth = Arc::new(server::auth::Auth::new(
            store.clone(),
            server::hub::Hub::new(),
            true,
        ));
        let secret = |name: &str| CredentialId::secret(CredentialScope::Server, name);
        vault
            .save_audited(&auth, "ada", None, secret("FIRST"), "first-secret")
            .await
            .unwrap();

        let raw = sqlx::AnyPool::connect(url).await.unwrap();
        let mut held = raw.begin().await.unwrap();
        sqlx::query("UPDATE meta SET value = value WHERE key = 'master_key_check'")
            .execute(&mut *held)
            .await
            .unwrap();
        let rotation = tokio::spawn({
            let (store, old, new) = (store.clone(), old.clone(), new.clone());
            async move { vault::rotate(&*store, &old, &new).await }
        });
        let a_moment = std::time::Duration::from_millis(300);
        tokio::time::sleep(a_moment).await;
        let save = tokio::spawn({
            let (vault, auth, id) = (vault.clone(), auth.clone(), secret("SECOND"));
            async move {
                vault
                    .save_audited(&auth, "ada", None, id, "second-secret")
                    .await
            }
        });
        tokio::time::sleep(a_moment).await;
        held.commit().await.unwrap();
        let resealed = rotation.await.unwrap().unwrap();
        let kept: Vec<String> = match save.await.unwrap() {
            Ok(_) => vec!["FIRST".into(), "SECOND".into()],
            Err(e) => {
                assert!(matches!(e, AppError::Unavailable(_)), "{db}: {e}");
                vec!["FIRST".into()]
            }
        };
        assert_eq!(resealed, kept.len(), "{db}");
        let listed: Vec<_> = store
            .list_credentials()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id.name)
            .collect();
        assert_eq!(listed, kept, "{db}");
        let reopened = Vault::open(&new, store.clone(), &config).await.unwrap();
        let values = reopened.secrets(None, &kept).await.unwrap();
        assert_eq!(values[0].1, "first-secret", "{db}");
        if let Some((_, second)) = values.get(1) {
            assert_eq!(second, "second-secret", "{db}");
        }
        // The old key's server seals nothing more.
        let refused = vault
            .save_audited(&auth, "ada", None, secret("THIRD"), "third-secret")
            .await
            .unwrap_err();
        assert!(
            matches!(refused, AppError::Unavailable(_)),
            "{db}: {refused}"
        );
    }
}
