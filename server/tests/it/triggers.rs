//! Triggers over a real server: deliveries signed by the senders' own
//! libraries (PyPI `standardwebhooks`, in the virtual environment
//! `scripts/setup --tests` makes), each good one a session of the template
//! running against the scripted model; every bad one refused with nothing
//! created, nothing queued, and an audit line.

use crate::common::git_server::GitServer;
use crate::common::senders::sender_sign;
use crate::common::{self, Home, Served};
use app::domain::{EventKind, Session};
use app::triggers::TriggerSecret;
use chrono::Utc;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use server::paddock::Paddock;
use server::store::triggers::NextRun;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

/// The `webhook-signature` the `standardwebhooks` library makes.
fn sign(secret: &str, id: &str, at: i64, body: &str) -> String {
    sender_sign(&["standard-webhooks", secret, id, &at.to_string()], body)
}

struct Setup {
    home: Home,
    flags: Vec<String>,
    paddock: Arc<Paddock>,
    served: Served,
    http: Client,
}

impl Setup {
    async fn new(turns: Value, extra: &[&str]) -> (Self, paddock_model::ScriptedModel) {
        let (model, url) = common::scripted(&turns, None).await;
        let home = Home::new();
        let mut flags = common::model_flags(&url, "sk-test");
        flags.extend(extra.iter().map(|s| s.to_string()));
        let paddock = common::open(&home, "local", &flags).await;
        let served = common::serve(paddock.clone()).await;
        let setup = Self {
            home,
            flags,
            paddock,
            served,
            http: Client::new(),
        };
        (setup, model)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(self.served.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// A template that would run its sessions unattended, and a trigger
    /// on it.
    async fn trigger(&self, draft: Value) -> TriggerSecret {
        self.trigger_on(
            json!({"permission_mode": "auto", "allowed_tools": ["bash"]}),
            draft,
        )
        .await
    }

    /// A template with these session settings, and a trigger on it.
    async fn trigger_on(&self, session: Value, draft: Value) -> TriggerSecret {
        let (status, template) = self
            .post(
                "/api/templates",
                json!({"name": "on call", "session": session}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{template}");
        let (status, made) = self
            .post(
                &format!(
                    "/api/templates/{}/triggers",
                    template["id"].as_str().unwrap()
                ),
                draft,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        serde_json::from_value(made).unwrap()
    }

    /// Posts a delivery with `headers` (and JSON's content type unless
    /// another is given).
    async fn deliver(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.post(self.served.url(path)).body(body.to_owned());
        if !headers.iter().any(|(n, _)| *n == "content-type") {
            req = req.header("content-type", "application/json");
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        (status, res.json().await.unwrap_or(Value::Null), headers)
    }

    /// A delivery signed as its sender signs it.
    async fn signed(
        &self,
        made: &TriggerSecret,
        secret: &str,
        id: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let at = Utc::now().timestamp();
        let headers = signed_headers(secret, id, at, body);
        let (status, answer, _) = self.deliver(&made.path, body, &headers).await;
        (status, answer)
    }

    async fn sessions(&self) -> Vec<Session> {
        self.get_json("/api/sessions").await
    }

    /// What the API answers a GET of `path` with.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(self.served.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The secret Paddock made for a trigger, shown once.
trait Shown {
    fn key(&self) -> &str;
}

impl Shown for TriggerSecret {
    fn key(&self) -> &str {
        self.secret.as_deref().expect("a secret Paddock made")
    }
}

/// A request's headers: name and value.
type Headers = Vec<(&'static str, String)>;

/// A delivery's headers as its sender signs it, with an `Authorization`
/// of the sender's own (some send one): not Paddock's, and no matter.
fn signed_headers(secret: &str, id: &str, at: i64, body: &str) -> Headers {
    vec![
        ("authorization", "Bearer the-senders-own".into()),
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", at.to_string()),
        ("webhook-signature", sign(secret, id, at, body)),
    ]
}

#[tokio::test]
async fn a_signed_delivery_starts_a_session_and_its_conversation_continues_it() {
    let (s, model) = Setup::new(
        json!([{"reply": "Looking at the build."}, {"reply": "Looking again."}]),
        &[],
    )
    .await;
    let made = s
        .trigger(json!({
            "name": "builds",
            "prompt": "The build {{ payload.job }} failed on {{ payload.branch }}:\n{{ payload.log }}",
            "conversation": "{{ payload.branch }}"
        }))
        .await;
    assert!(made.key().starts_with("whsec_"));
    assert_eq!(made.path, format!("/hooks/{}", made.trigger.id));
    // (A character that turns text around, as a payload may hold.)
    let body = r#"{"job": "te\u202est", "branch": "main", "log": "assertion failed"}"#;
    let (status, answer) = s.signed(&made, made.key(), "msg_1", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let session: app::domain::SessionId = answer["session"].as_str().unwrap().parse().unwrap();
    let events = common::wait_idle(&s.paddock, session).await;
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Delivery {
                trigger,
                id,
                verified,
            } => Some(format!("delivery {trigger} {id} {verified}")),
            EventKind::UserMessage { text } => Some(text.clone()),
            EventKind::AssistantText { text } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(
        texts[0].starts_with("delivery builds msg_1 Standard Webhooks"),
        "{texts:?}"
    );
    assert_eq!(
        texts[1],
        "The build te\u{202E}st failed on main:\nassertion failed"
    );
    assert_eq!(texts[2], "Looking at the build.");
    // Its template said auto; a trigger's sessions ask unless it says so.
    let sessions = s.sessions().await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].name, "builds: The build test failed on main:");
    assert_eq!(sessions[0].permission_mode.to_string(), "ask");
    assert!(sessions[0].allowed_tools.is_empty());
    assert_eq!(sessions[0].template.as_ref().unwrap().name, "on call");
    assert_eq!(
        sessions[0].trigger,
        Some(app::domain::TriggerRef {
            id: made.trigger.id,
            name: "builds".into()
        })
    );

    // The same delivery again: answered the same way, nothing new.
    let (again, repeat) = s.signed(&made, made.key(), "msg_1", body).await;
    assert_eq!((again, &repeat), (StatusCode::ACCEPTED, &answer));
    // Another on the same branch continues that session.
    let next = r#"{"job": "lint", "branch": "main", "log": "unused import"}"#;
    let (status, continued) = s.signed(&made, made.key(), "msg_2", next).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{continued}");
    assert_eq!(continued["session"], answer["session"]);
    assert_eq!(continued["outcome"], format!("continued session {session}"));
    let events = common::wait_idle(&s.paddock, session).await;
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::AssistantText { text } if text == "Looking again.")));
    assert_eq!(s.sessions().await.len(), 1);
    assert_eq!(model.turns_used(), 2);

    // The delivery log, for the owner.
    let log: Vec<app::triggers::Delivery> = runs(&s, made.trigger.id).await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|d| d.status == 202));

    // A rotation's body over the limit: refused in JSON, nothing rotated.
    let (status, refused) = s
        .post(
            &format!("/api/triggers/{}/rotate", made.trigger.id),
            json!({"overlap_secs": 3600, "secret": "x".repeat(100 * 1024)}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{refused}");
    assert!(refused["error"]["message"].is_string(), "{refused}");
    let unchanged: Value = s
        .get_json(&format!("/api/triggers/{}", made.trigger.id))
        .await;
    assert_eq!(
        unchanged.get("previous_secret_until"),
        Some(&Value::Null),
        "{unchanged}"
    );
    // Rotated: the new secret works, and the old one for the overlap.
    let (status, rotated) = s
        .post(
            &format!("/api/triggers/{}/rotate", made.trigger.id),
            json!({"overlap_secs": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let rotated: TriggerSecret = serde_json::from_value(rotated).unwrap();
    assert_ne!(rotated.secret, made.secret);
    assert!(rotated.trigger.previous_secret_until.is_some());
    let other = r#"{"job": "docs", "branch": "main", "log": "404"}"#;
    assert_eq!(
        s.signed(&made, made.key(), "msg_3", other).await.0,
        StatusCode::ACCEPTED
    );
    let (status, last) = s
        .post(
            &format!("/api/triggers/{}/rotate", made.trigger.id),
            json!({"overlap_secs": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let last: TriggerSecret = serde_json::from_value(last).unwrap();
    // The secret before it, with no overlap, no longer counts.
    assert_eq!(
        s.signed(&made, rotated.key(), "msg_4", other).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A new master key seals the trigger's secret again: a server on the
    // new key verifies it (a signed body that is not JSON: past the
    // signature, refused as not JSON).
    let config = s.home.config("local", &s.flags);
    let old = server::vault::MasterKey::load(&config).unwrap();
    let new = server::vault::MasterKey::generate();
    server::vault::rotate(s.paddock.store.as_ref(), &old, &new)
        .await
        .unwrap();
    std::fs::remove_file(&config.master_key_file).unwrap();
    new.write_new(&config.master_key_file).unwrap();
    let reopened = common::open(&s.home, "local", &s.flags).await;
    let served = common::serve(reopened).await;
    let at = Utc::now().timestamp();
    let res = s
        .http
        .post(served.url(&last.path))
        .header("content-type", "application/json")
        .headers(
            signed_headers(last.key(), "msg_5", at, "{not json")
                .into_iter()
                .map(|(n, v)| {
                    (
                        reqwest::header::HeaderName::from_static(n),
                        v.parse().unwrap(),
                    )
                })
                .collect(),
        )
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_deliveries_are_refused_with_nothing_created() {
    let (s, model) = Setup::new(json!([]), &["--trigger-deliveries-per-minute=40"]).await;
    let made = s
        .trigger(json!({"name": "hook", "prompt": "{{ payload.task }}"}))
        .await;
    let body = r#"{"task": "nothing"}"#;
    let now = Utc::now().timestamp();
    let good = |id: &str| signed_headers(made.key(), id, now, body);
    let without = |name: &str| {
        good("msg_x")
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect::<Vec<_>>()
    };
    let other_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let cases: Vec<(&str, String, Headers, StatusCode)> = vec![
        (
            "no signature",
            body.into(),
            without("webhook-signature"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no id",
            body.into(),
            without("webhook-id"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no timestamp",
            body.into(),
            without("webhook-timestamp"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another secret",
            body.into(),
            signed_headers(other_secret, "msg_a", now, body),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "stale",
            body.into(),
            signed_headers(made.key(), "msg_b", now - 600, body),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "from the future",
            body.into(),
            signed_headers(made.key(), "msg_c", now + 600, body),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another body",
            r#"{"task": "rm -rf /"}"#.into(),
            good("msg_d"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "garbage signature",
            body.into(),
            vec![
                ("webhook-id", "msg_e".into()),
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", "v1,!!!".into()),
            ],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "form body",
            body.into(),
            [
                good("msg_f"),
                vec![("content-type", "application/x-www-form-urlencoded".into())],
            ]
            .concat(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "not JSON",
            "{not json".into(),
            signed_headers(made.key(), "msg_g", now, "{not json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "huge",
            "x".repeat(2 * 1024 * 1024),
            good("msg_h"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, body, headers, expected) in cases {
        let (status, answer, _) = s.deliver(&made.path, &body, &headers).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{what}: {answer}");
    }
    for path in [
        "/hooks/not-a-trigger",
        "/hooks/%FF",
        &format!("/hooks/{}", uuid::Uuid::now_v7()),
    ] {
        let (status, answer, _) = s.deliver(path, body, &good("msg_i")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer["error"]["type"], "not_found", "{path}: {answer}");
    }
    // A prompt template that makes nothing of a delivery: refused, and
    // the same again.
    let empty = r#"{"other": 1}"#;
    let (status, first) = s.signed(&made, made.key(), "msg_j", empty).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{first}");
    assert_eq!(
        s.signed(&made, made.key(), "msg_j", empty).await,
        (status, first)
    );
    // Paused, it takes nothing.
    let res = s
        .http
        .put(s.served.url(&format!("/api/triggers/{}", made.trigger.id)))
        .json(&json!({"name": "hook", "prompt": "{{ payload.task }}", "paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        s.signed(&made, made.key(), "msg_k", body).await.0,
        StatusCode::CONFLICT
    );

    // Nothing was made, nothing ran; each refusal is in the audit log.
    assert!(s.sessions().await.is_empty());
    assert_eq!(model.turns_used(), 0);
    let audit = s.paddock.store.audit_log(None, 200).await.unwrap();
    let refused = audit
        .iter()
        .filter(|e| e.action.as_str() == "delivery_refused")
        .count();
    // Each refusal (the repeat of the 422 once; the unknown triggers have
    // no audit line).
    assert_eq!(refused, 13);

    // A stranger's flood of bad signatures: past the trigger's rate, 429
    // with Retry-After; a signed delivery is still heard.
    let garbage = vec![
        ("webhook-id", "flood".to_owned()),
        ("webhook-timestamp", now.to_string()),
        ("webhook-signature", format!("v1,{}", "A".repeat(44))),
    ];
    let mut statuses = Vec::new();
    for _ in 0..45 {
        let (status, _, headers) = s.deliver(&made.path, body, &garbage).await;
        statuses.push((status, headers.get("retry-after").is_some()));
    }
    assert_eq!(statuses[0], (StatusCode::UNAUTHORIZED, false));
    assert_eq!(statuses[44], (StatusCode::TOO_MANY_REQUESTS, true));
    let (status, _) = s.signed(&made, made.key(), "msg_l", body).await;
    assert_eq!(status, StatusCode::CONFLICT, "paused, but heard");

    // Bad drafts change nothing.
    let (status, _) = s
        .post(
            &format!("/api/templates/{}/triggers", made.trigger.template),
            json!({"name": "broken", "prompt": "{% if %}"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s
        .post(
            &format!("/api/templates/{}/triggers", uuid::Uuid::now_v7()),
            json!({"name": "nowhere", "prompt": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An agent has at most 20.
    let path = format!("/api/templates/{}/triggers", made.trigger.template);
    let all: Vec<Value> = s.get_json(&path).await;
    for n in all.len()..20 {
        let (status, body) = s
            .post(&path, json!({"name": format!("more {n}"), "prompt": "x"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = s
        .post(&path, json!({"name": "one too many", "prompt": "x"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("at most 20 triggers"), "{body}");
}

/// A template that asks for more memory than a delivery may have
/// (minijinja's fuel counts instructions, not bytes) ends its own
/// rendering process, not the server's: the delivery is refused, and the
/// next is heard.
#[tokio::test]
async fn a_template_past_its_memory_is_refused_and_the_server_goes_on() {
    let (s, model) = Setup::new(json!([{"reply": "Heard."}]), &[]).await;
    // 1.6 GB in a variable, more held on the way.
    let bomb = r#"{% set a = "x" * 100000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{% set e = d ~ d %}{{ e|length }} {{ payload.task }}"#;
    let made = s.trigger(json!({"name": "bomb", "prompt": bomb})).await;
    let body = r#"{"task": "go"}"#;
    let (status, answer) = s.signed(&made, made.key(), "msg_1", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.to_string().contains("MiB of memory"), "{answer}");
    assert!(s.sessions().await.is_empty());
    let fine = s
        .trigger(json!({"name": "fine", "prompt": "{{ payload.task }}"}))
        .await;
    let (status, answer) = s.signed(&fine, fine.key(), "msg_2", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let session = answer["session"].as_str().unwrap().parse().unwrap();
    common::wait_idle(&s.paddock, session).await;
    assert_eq!(model.turns_used(), 1);
}

/// A rendering cut off mid-way (its delivery's request gone) leaves no
/// answer behind for the next delivery: its process is let go, and each
/// delivery after gets its own prompt.
#[tokio::test]
async fn a_rendering_cut_off_leaves_nothing_for_the_next() {
    let (s, _model) = Setup::new(json!([]), &[]).await;
    let renderers = &s.paddock.template_renderers;
    let slow =
        r#"{% set a = "x" * 90000000 %}{% set b = a ~ a %}{% set c = a ~ b %}{{ c|length }}"#;
    for _ in 0..3 {
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            renderers.render(slow.into(), None, json!({})),
        )
        .await;
        assert!(cut.is_err(), "not cut off");
    }
    for n in 0..4 {
        let made = renderers
            .render(
                "{{ payload.n }}".into(),
                Some("{{ payload.n }}".into()),
                json!({"payload": {"n": n}}),
            )
            .await;
        let Ok((prompt, key)) = made else {
            panic!("delivery {n} not rendered")
        };
        assert_eq!((prompt, key), (n.to_string(), Some(n.to_string())));
    }
}

#[tokio::test]
async fn one_new_conversations_deliveries_at_once_share_one_session() {
    let turns: Vec<Value> = (0..6)
        .map(|i| json!({"reply": format!("Reply {i}.")}))
        .collect();
    let (s, _model) = Setup::new(json!(turns), &[]).await;
    let made = s
        .trigger(json!({
            "name": "threads",
            "prompt": "{{ payload.text }}",
            "conversation": "{{ payload.thread }}"
        }))
        .await;
    let (s, made) = (Arc::new(s), Arc::new(made));
    let mut sent = Vec::new();
    for i in 0..5 {
        let (s, made) = (s.clone(), made.clone());
        sent.push(tokio::spawn(async move {
            let body = json!({"text": format!("message {i}"), "thread": "t-1"}).to_string();
            s.signed(&made, made.key(), &format!("m{i}"), &body).await
        }));
    }
    let mut sessions = std::collections::HashSet::new();
    for answer in sent {
        let (status, answer) = answer.await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        sessions.insert(answer["session"].as_str().unwrap().to_owned());
    }
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(s.sessions().await.len(), 1);
    // A key with a control character is refused, the same each time.
    let body = json!({"text": "hi", "thread": "a\u{7}b"}).to_string();
    let (status, first) = s.signed(&made, made.key(), "bell", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{first}");
    assert_eq!(s.signed(&made, made.key(), "bell", &body).await.0, status);
    assert_eq!(s.sessions().await.len(), 1);
}

/// The `X-Hub-Signature-256` GitHub's own library makes (npm
/// `@octokit/webhooks-methods`).
fn octokit_sign(secret: &str, body: &str) -> String {
    let script = "import { sign } from '@octokit/webhooks-methods'; \
        const chunks = []; for await (const c of process.stdin) chunks.push(c); \
        console.log(await sign(process.argv[1], Buffer.concat(chunks).toString()));";
    let mut child = Command::new("node")
        .args(["--input-type=module", "-e", script, secret])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "npm packages (scripts/setup)");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn github_headers(secret: &str, event: &str, delivery: &str, body: &str) -> Headers {
    vec![
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        ("x-hub-signature-256", octokit_sign(secret, body)),
    ]
}

fn comment(number: u64, body: &str, by: &str) -> String {
    json!({
        "action": "created",
        "issue": {
            "number": number, "title": "The login page crashes",
            "body": "Steps: open /login.", "html_url": format!("https://github.example/org/app/issues/{number}")
        },
        "comment": {
            "body": body, "user": {"login": by, "type": "User"},
            "author_association": if by == "eve" { "NONE" } else { "MEMBER" },
            "html_url": format!("https://github.example/org/app/issues/{number}#comment-1")
        },
        "repository": {"full_name": "org/app"},
        "sender": {"login": by}
    })
    .to_string()
}

#[tokio::test]
async fn github_mentions_start_a_session_per_issue_signed_by_octokit() {
    let (s, model) = Setup::new(
        json!([{"reply": "Looking into the crash."}, {"reply": "Still on it."}]),
        &[],
    )
    .await;
    let made = s
        .trigger(json!({
            "name": "github",
            "kind": "github",
            "handle": "@paddock-bot",
            "prompt": "{{ github.sender }} asks on {{ github.repository }}#{{ github.number }} ({{ github.url }}): {{ github.title }}\n{{ github.body }}\n{{ github.comment }}"
        }))
        .await;
    assert_eq!(made.trigger.draft.handle.as_deref(), Some("paddock-bot"));
    assert!(!made.key().starts_with("whsec_"));
    let body = comment(7, "@paddock-bot can you fix this?", "ada");
    let headers = github_headers(made.key(), "issue_comment", "guid-1", &body);
    let (status, answer, _) = s.deliver(&made.path, &body, &headers).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let session: app::domain::SessionId = answer["session"].as_str().unwrap().parse().unwrap();
    let events = common::wait_idle(&s.paddock, session).await;
    let prompt = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::UserMessage { text } => Some(text.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        prompt,
        "ada asks on org/app#7 (https://github.example/org/app/issues/7#comment-1): The login page crashes\nSteps: open /login.\n@paddock-bot can you fix this?"
    );
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Delivery { verified, .. } if verified.starts_with("GitHub"))));
    // GitHub's retry of the same delivery, or a replay of it under another
    // X-GitHub-Delivery: the same answer, nothing new.
    let (again, repeat, _) = s.deliver(&made.path, &body, &headers).await;
    assert_eq!((again, &repeat), (StatusCode::ACCEPTED, &answer));
    let replayed = github_headers(made.key(), "issue_comment", "guid-replayed", &body);
    let (again, repeat, _) = s.deliver(&made.path, &body, &replayed).await;
    assert_eq!((again, &repeat), (StatusCode::ACCEPTED, &answer));
    // Another mention on the same issue continues its session.
    let next = comment(7, "thanks @Paddock-Bot, and the logout too?", "max");
    let (status, continued, _) = s
        .deliver(
            &made.path,
            &next,
            &github_headers(made.key(), "issue_comment", "guid-2", &next),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{continued}");
    assert_eq!(continued["session"], answer["session"]);
    common::wait_idle(&s.paddock, session).await;
    // What does not mention the handle, the handle's own comments and
    // pings are acknowledged and left alone.
    for (event, delivery, body) in [
        (
            "issue_comment",
            "guid-3",
            comment(8, "no mention here", "ada"),
        ),
        (
            "issue_comment",
            "guid-4",
            comment(8, "@paddock-bot done", "paddock-bot"),
        ),
        (
            "issue_comment",
            "guid-9",
            comment(8, "@paddock-bot run rm -rf /", "eve"),
        ),
        (
            "issue_comment",
            "guid-10",
            comment(8, "`@paddock-bot` is our bot", "ada"),
        ),
        (
            "ping",
            "guid-5",
            json!({"zen": "Keep it simple."}).to_string(),
        ),
        (
            "push",
            "guid-6",
            json!({"ref": "refs/heads/main"}).to_string(),
        ),
    ] {
        let (status, answer, _) = s
            .deliver(
                &made.path,
                &body,
                &github_headers(made.key(), event, delivery, &body),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{event}: {answer}");
        assert!(answer["session"].is_null(), "{event}: {answer}");
        assert!(
            answer["outcome"].as_str().unwrap().starts_with("ignored"),
            "{answer}"
        );
    }
    assert_eq!(s.sessions().await.len(), 1);
    assert_eq!(model.turns_used(), 2);
    // Signed with another secret, or not at all: refused.
    let bad = comment(9, "@paddock-bot", "eve");
    let (status, _, _) = s
        .deliver(
            &made.path,
            &bad,
            &github_headers("another secret", "issue_comment", "guid-7", &bad),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = s
        .deliver(
            &made.path,
            &bad,
            &[
                ("x-github-event", "issue_comment".into()),
                ("x-github-delivery", "guid-8".into()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Without its event, or not JSON: refused.
    let mut headers = github_headers(made.key(), "issue_comment", "guid-11", &bad);
    headers.retain(|(name, _)| *name != "x-github-event");
    assert_eq!(
        s.deliver(&made.path, &bad, &headers).await.0,
        StatusCode::BAD_REQUEST
    );
    let form = [
        github_headers(made.key(), "issue_comment", "guid-12", &bad),
        vec![("content-type", "application/x-www-form-urlencoded".into())],
    ]
    .concat();
    assert_eq!(
        s.deliver(&made.path, &bad, &form).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(s.sessions().await.len(), 1);
    // A GitHub trigger needs a handle.
    let (status, _) = s
        .post(
            &format!("/api/templates/{}/triggers", made.trigger.template),
            json!({"name": "no handle", "kind": "github", "prompt": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A raw answer: status, content type, text.
async fn post_raw(
    http: &Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (StatusCode, String, String) {
    let mut req = http
        .post(url)
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, res.text().await.unwrap())
}

/// A multipart form as email senders post it: its content type and body.
fn multipart(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = format!("paddock-{}", uuid::Uuid::now_v7().simple());
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, file, data) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The prompts a session was given.
fn prompts(events: &[app::domain::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::UserMessage { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// The public URL Twilio posts to (behind a proxy, it would be the proxy's):
/// on loopback, as sign-in is off in these tests; on the default port, so
/// that a signature over the URL with the port written out counts too.
const PUBLIC: &str = "http://127.0.0.1";

#[tokio::test]
async fn twilio_messages_signed_by_twilios_library_start_and_continue_a_conversation() {
    // Twilio signs the URL it posts to: no Twilio trigger without a
    // public URL.
    let (bare, _) = Setup::new(json!([]), &[]).await;
    let (status, template) = bare.post("/api/templates", json!({"name": "t"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, refused) = bare
        .post(
            &format!(
                "/api/templates/{}/triggers",
                template["id"].as_str().unwrap()
            ),
            json!({"name": "sms", "kind": "twilio", "prompt": "{{ sms.body }}", "secret": "token"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("PADDOCK_PUBLIC_URL"));

    let (s, model) = Setup::new(
        json!([{"reply": "Looking at the site."}, {"reply": "It is back."}]),
        &[&format!("--public-url={PUBLIC}")],
    )
    .await;
    let token = "twilio-auth-token-1";
    let made = s
        .trigger(json!({
            "name": "pager",
            "kind": "twilio",
            "prompt": "Text from {{ sms.from }}: {{ sms.body }}",
            "secret": token
        }))
        .await;
    assert_eq!(made.secret, None, "the sender's own key is not shown back");
    let url = format!("{PUBLIC}{}", made.path);
    // (A repeated parameter: Twilio signs each of its values, sorted.)
    let text = |sid: &str, body: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("MessageSid", sid)
            .append_pair("AccountSid", "AC1")
            .append_pair("From", "+15550001")
            .append_pair("To", "+15559999")
            .append_pair("Body", body)
            .append_pair("NumMedia", "0")
            .append_pair("Label", "zeta")
            .append_pair("Label", "alpha")
            .finish()
    };
    // A message id as Twilio makes them.
    let sid = |n: u32| format!("SM{n:032x}");
    // (No signature: no header at all.)
    let send = |form: String, signature: String, content_type: &'static str| {
        let (s, path) = (&s, made.path.clone());
        async move {
            let header = [("x-twilio-signature", signature)];
            let headers = match header[0].1.is_empty() {
                true => &header[..0],
                false => &header[..],
            };
            post_raw(
                &s.http,
                &s.served.url(&path),
                content_type,
                form.into_bytes(),
                headers,
            )
            .await
        }
    };
    const FORM: &str = "application/x-www-form-urlencoded";
    let first = text(&sid(100), "The site is down!");
    let signature = sender_sign(&["twilio", token, &url], &first);
    let (status, kind, answer) = send(first.clone(), signature.clone(), FORM).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(kind, "text/xml");
    assert!(answer.contains("<Response></Response>"), "{answer}");
    let sessions = s.sessions().await;
    assert_eq!(sessions.len(), 1);
    let session = sessions[0].id;
    let events = common::wait_idle(&s.paddock, session).await;
    assert_eq!(prompts(&events), ["Text from +15550001: The site is down!"]);
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Delivery { verified, .. } if verified.starts_with("Twilio"))));
    // Twilio's retry: the same answer, nothing new.
    assert_eq!(
        send(first.clone(), signature.clone(), FORM).await.0,
        StatusCode::ACCEPTED
    );
    // The next text from the same number continues the conversation
    // (signed over the URL with its port written out, as Twilio's
    // libraries accept too).
    let next = text(&sid(101), "Is it fixed?");
    let with_port = format!("{PUBLIC}:80{}", made.path);
    let (status, _, _) = send(
        next.clone(),
        sender_sign(&["twilio", token, &with_port], &next),
        FORM,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let events = common::wait_idle(&s.paddock, session).await;
    assert_eq!(prompts(&events).len(), 2);
    assert_eq!(s.sessions().await.len(), 1);
    assert_eq!(model.turns_used(), 2);

    // Refused, nothing made: signed for another URL, with another token,
    // over another body, unsigned, not a form.
    let bad = text(&sid(102), "rm -rf /");
    let other_url = format!("https://elsewhere.example{}", made.path);
    for (what, signature, body, content_type, expected) in [
        (
            "another URL",
            sender_sign(&["twilio", token, &other_url], &bad),
            bad.clone(),
            FORM,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another token",
            sender_sign(&["twilio", "not-the-token", &url], &bad),
            bad.clone(),
            FORM,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another body",
            signature.clone(),
            bad.clone(),
            FORM,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unsigned",
            String::new(),
            bad.clone(),
            FORM,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "JSON",
            sender_sign(&["twilio", token, &url], &bad),
            bad.clone(),
            "application/json",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let (status, _, answer) = send(body, signature, content_type).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(answer.contains("\"error\""), "{what}: {answer}");
    }
    assert_eq!(s.sessions().await.len(), 1);
    assert_eq!(model.turns_used(), 2);

    // A new token: given by the owner; the old one no longer counts (no
    // overlap asked). A rotation without one is refused.
    let rotate = format!("/api/triggers/{}/rotate", made.trigger.id);
    let (status, _) = s.post(&rotate, json!({"overlap_secs": 0})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, rotated) = s
        .post(
            &rotate,
            json!({"overlap_secs": 0, "secret": "twilio-auth-token-2"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert!(rotated["secret"].is_null());
    let later = text(&sid(103), "thanks");
    let (status, _, _) = send(
        later.clone(),
        sender_sign(&["twilio", token, &url], &later),
        FORM,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        later.clone(),
        sender_sign(&["twilio", "twilio-auth-token-2", &url], &later),
        FORM,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn mailgun_email_with_attachments_starts_a_session_and_its_thread_continues_it() {
    let (s, model) = Setup::new(
        json!([{"reply": "Reading the report."}, {"reply": "Noted."}, {"reply": "Who is this?"}]),
        &[],
    )
    .await;
    let key = "mailgun-signing-key";
    let made = s
        .trigger(json!({
            "name": "support",
            "kind": "mailgun",
            "prompt": "Email from {{ email.from }}: {{ email.subject }}\n{{ email.text }}{% for a in email.attachments %}\nAttached: {{ a.path }}{% endfor %}",
            "secret": key
        }))
        .await;
    // The URL carries a password of the trigger's own.
    let password = made.key().to_owned();
    let url = made.url(&s.served.url(""));
    assert!(url.contains(&format!("://paddock:{password}@")), "{url}");
    let now = Utc::now().timestamp().to_string();
    // Sent through the envelope sender `sender`, whose SPF Mailgun found
    // to pass.
    let email_via = |sender: &str,
                     token: &str,
                     at: &str,
                     signature: &str,
                     id: &str,
                     references: &str,
                     subject: &str| {
        let headers = json!([
            ["X-Mailgun-Spf", "Pass"],
            ["From", "Ada <ada@example.org>"],
            ["Message-Id", id],
            ["References", references]
        ])
        .to_string();
        let fields = [
            ("recipient", "support@mail.example"),
            ("sender", sender),
            ("from", "Ada <ada@example.org>"),
            ("subject", subject),
            ("body-plain", "The export fails.\n\n> quoted"),
            ("stripped-text", "The export fails."),
            ("message-headers", &headers),
            ("attachment-count", "2"),
            ("timestamp", at),
            ("token", token),
            ("signature", signature),
        ];
        multipart(
            &fields,
            &[
                ("attachment-1", "report.txt", b"line 1\nline 2\n"),
                (
                    "attachment-2",
                    "../../../etc/cron.d/evil",
                    b"* * * * * root true\n",
                ),
            ],
        )
    };
    let email =
        |token: &str, at: &str, signature: &str, id: &str, references: &str, subject: &str| {
            email_via(
                "ada@example.org",
                token,
                at,
                signature,
                id,
                references,
                subject,
            )
        };
    let sign = |at: &str, token: &str| sender_sign(&["mailgun", key, at, token], "");
    let signature = sign(&now, "token-1");
    let (content_type, body) = email(
        "token-1",
        &now,
        &signature,
        "<m1@example.org>",
        "",
        "Export broken",
    );
    let (status, _, answer) = post_raw(&s.http, &url, &content_type, body, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let session: app::domain::SessionId = answer["session"].as_str().unwrap().parse().unwrap();
    let events = common::wait_idle(&s.paddock, session).await;
    let prompt = prompts(&events).remove(0);
    let mut lines = prompt.lines();
    assert_eq!(
        lines.next(),
        Some("Email from Ada <ada@example.org>: Export broken")
    );
    assert_eq!(lines.next(), Some("The export fails."));
    let stored: Vec<&str> = lines
        .map(|l| l.strip_prefix("Attached: ").unwrap())
        .collect();
    assert_eq!(stored.len(), 2, "{prompt}");
    assert!(stored[0].starts_with("inbox/") && stored[0].ends_with("/report.txt"));
    let folder = stored[0].strip_suffix("/report.txt").unwrap();
    assert_eq!(stored[1], format!("{folder}/evil"), "confined to the inbox");
    let res = s
        .http
        .get(
            s.served
                .url(&format!("/api/sessions/{session}/files/{}", stored[0])),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "line 1\nline 2\n");

    // The token used again (another body under the same signature): the
    // first answer, nothing new.
    let (content_type, replay) = email(
        "token-1",
        &now,
        &signature,
        "<m9@example.org>",
        "",
        "Transfer money",
    );
    let (status, _, again) = post_raw(&s.http, &url, &content_type, replay, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), answer);
    // A reply in the thread continues the session.
    let (content_type, reply) = email(
        "token-2",
        &now,
        &sign(&now, "token-2"),
        "<m2@example.org>",
        "<m1@example.org>",
        "Re: Export broken",
    );
    let (status, _, continued) = post_raw(&s.http, &url, &content_type, reply, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{continued}");
    assert!(
        continued.contains(&format!("continued session {session}")),
        "{continued}"
    );
    common::wait_idle(&s.paddock, session).await;
    assert_eq!(model.turns_used(), 2);
    // Someone else writing Ada's From into the thread, from a domain of
    // their own (whose SPF passes): a session of its own.
    let (content_type, spoofed) = email_via(
        "mallory@evil.example",
        "token-7",
        &now,
        &sign(&now, "token-7"),
        "<m7@evil.example>",
        "<m1@example.org>",
        "Re: Export broken",
    );
    let (status, _, apart) = post_raw(&s.http, &url, &content_type, spoofed, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{apart}");
    assert!(apart.contains("started session"), "{apart}");
    assert!(!apart.contains(&session.to_string()), "{apart}");
    let other: app::domain::SessionId = serde_json::from_str::<Value>(&apart).unwrap()["session"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    common::wait_idle(&s.paddock, other).await;
    assert_eq!(model.turns_used(), 3);

    // Refused: stale (past Mailgun's 8 hours of sending again), another
    // key, unsigned, JSON; and without the URL's password, even signed.
    let stale = (Utc::now().timestamp() - 10 * 3600).to_string();
    let (content_type, body) = email("token-6", &now, &sign(&now, "token-6"), "<m6@x>", "", "x");
    for bare in [s.served.url(&made.path), url.replace(&password, "wrong")] {
        let (status, _, answer) = post_raw(&s.http, &bare, &content_type, body.clone(), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    }
    let cases = [
        (
            "stale",
            email(
                "token-3",
                &stale,
                &sign(&stale, "token-3"),
                "<m3@x>",
                "",
                "x",
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another key",
            email(
                "token-4",
                &now,
                &sender_sign(&["mailgun", "other", &now, "token-4"], ""),
                "<m4@x>",
                "",
                "x",
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unsigned",
            email("token-5", &now, "", "<m5@x>", "", "x"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "JSON",
            ("application/json".to_owned(), b"{}".to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (what, (content_type, body), expected) in cases {
        let (status, _, answer) = post_raw(&s.http, &url, &content_type, body, &[]).await;
        assert_eq!(status, expected, "{what}: {answer}");
    }
    assert_eq!(
        s.sessions().await.len(),
        2,
        "the thread's and the stranger's"
    );
}

#[tokio::test]
async fn sendgrid_email_with_the_urls_password_stores_attachments_within_the_cap() {
    let (s, model) = Setup::new(json!([{"reply": "Got the logs."}]), &[]).await;
    let made = s
        .trigger(json!({
            "name": "inbox",
            "kind": "sendgrid",
            "prompt": "{{ email.subject }} from {{ email.from }}{% for a in email.attachments %}\n{{ a.name }} {{ a.size }} {{ a.path or 'not stored' }}{% endfor %}"
        }))
        .await;
    let secret = made.key().to_owned();
    // The URL SendGrid is given carries the password.
    let url = made.url(&s.served.url(""));
    assert!(
        url.contains(&format!("://paddock:{secret}@127.0.0.1")),
        "{url}"
    );
    // An attachment past what is kept, in an email larger than the
    // attachments' cap: its text and its other files still come.
    let big = vec![b'x'; 2 * server::triggers::email::ATTACHMENTS_MAX_BYTES];
    let email = |message_id: &str| {
        let headers = format!("Message-ID: {message_id}\nSubject: Logs\nTo: inbox@mail.example\n");
        multipart(
            &[
                ("headers", &headers),
                ("from", "Max <max@example.org>"),
                ("to", "inbox@mail.example"),
                ("subject", "Logs"),
                ("text", "See attached."),
                (
                    "envelope",
                    r#"{"to":["inbox@mail.example"],"from":"max@example.org"}"#,
                ),
                ("attachments", "2"),
            ],
            &[
                ("attachment1", "huge.bin", &big),
                ("attachment2", "app.log", b"ERROR boom\n"),
            ],
        )
    };
    let (content_type, body) = email("<s1@example.org>");
    let (status, _, answer) = post_raw(&s.http, &url, &content_type, body.clone(), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let session = s.sessions().await[0].id;
    let events = common::wait_idle(&s.paddock, session).await;
    let prompt = prompts(&events).remove(0);
    let lines: Vec<&str> = prompt.lines().collect();
    assert_eq!(lines[0], "Logs from Max <max@example.org>");
    assert_eq!(lines[1], format!("huge.bin {} not stored", big.len()));
    assert!(lines[2].starts_with("app.log 11 inbox/"), "{prompt}");
    // SendGrid sending it again: the same answer.
    let (status, _, again) = post_raw(&s.http, &url, &content_type, body.clone(), &[]).await;
    assert_eq!((status, again), (StatusCode::ACCEPTED, answer));
    assert_eq!(model.turns_used(), 1);

    // Refused: no password, a wrong one, not multipart, too large.
    let plain = s.served.url(&made.path);
    let wrong = url.replace(&secret, "wrong");
    // SendGrid's raw mode is refused, with what to change.
    let (raw_type, raw) = multipart(&[("email", "From: x\r\n\r\nhi"), ("to", "a@b")], &[]);
    let (status, _, answer) = post_raw(&s.http, &url, &raw_type, raw, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer.contains("raw, full MIME"), "{answer}");
    let (status, _, _) = post_raw(&s.http, &plain, &content_type, body.clone(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = post_raw(&s.http, &wrong, &content_type, body.clone(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = post_raw(
        &s.http,
        &url,
        "application/x-www-form-urlencoded",
        b"subject=x".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = vec![b'x'; server::triggers::EMAIL_MAX_BYTES as usize + 1];
    let (content_type, body) = multipart(&[("subject", "x")], &[("attachment1", "a", &huge)]);
    let (status, _, _) = post_raw(&s.http, &url, &content_type, body, &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.sessions().await.len(), 1);
}

/// Anyone may email an inbound address, and its provider adds the URL's
/// password: emails are read a few at a time, and one that waits too long
/// for its turn is asked to come again (503) while the others go on.
#[tokio::test]
async fn emails_are_read_a_few_at_a_time() {
    use base64::Engine;
    use tokio::io::AsyncWriteExt;
    let (s, model) = Setup::new(json!([{"reply": "Got it."}]), &[]).await;
    let made = s
        .trigger(json!({"name": "inbox", "kind": "sendgrid", "prompt": "{{ email.subject }}"}))
        .await;
    let url = made.url(&s.served.url(""));
    let target = reqwest::Url::parse(&url).unwrap();
    let addr = format!("127.0.0.1:{}", target.port().unwrap());
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("paddock:{}", made.key()));
    // Emails whose bodies stop after their first bytes hold every turn.
    let mut stalled = Vec::new();
    for _ in 0..server::trigger_limits::EMAIL_READS_AT_ONCE {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n",
            target.path()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (content_type, body) = multipart(
        &[
            (
                "headers",
                "Message-ID: <turn@example.org>\nSubject: Waited\n",
            ),
            ("from", "Max <max@example.org>"),
            ("subject", "Waited"),
            ("text", "hello"),
        ],
        &[],
    );
    let (status, _, answer) = post_raw(&s.http, &url, &content_type, body.clone(), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(s.sessions().await.is_empty());
    // Once they are gone, sent again, it is read and handled.
    drop(stalled);
    let (status, _, answer) = post_raw(&s.http, &url, &content_type, body, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let session = s.sessions().await[0].id;
    common::wait_idle(&s.paddock, session).await;
    assert_eq!(model.turns_used(), 1);
}

/// A SendGrid email to `url` from Max with one attachment, `notes.txt`.
async fn email_with_attachment(s: &Setup, url: &str, message_id: &str) -> (StatusCode, String) {
    let headers = format!("Message-ID: {message_id}\nSubject: Notes\n");
    let (content_type, body) = multipart(
        &[
            ("headers", &headers),
            ("from", "Max <max@example.org>"),
            ("to", "inbox@mail.example"),
            ("subject", "Notes"),
            ("text", "See attached."),
            ("attachments", "1"),
        ],
        &[("attachment1", "notes.txt", b"remember the milk\n")],
    );
    let (status, _, answer) = post_raw(&s.http, url, &content_type, body, &[]).await;
    (status, answer)
}

#[tokio::test]
async fn an_emails_attachments_go_into_the_agents_cloned_repository_or_leave_nothing_behind() {
    let (s, model) = Setup::new(json!([{"reply": "Read them."}]), &[]).await;
    let git = GitServer::start(None).await;
    git.repo("app.git", &[("README.md", b"# App\n")]);
    // A repository with a file where the attachments' folder goes.
    git.repo("blocked.git", &[("inbox", b"not a folder\n")]);
    let trigger_at = |name: &str, url: String| {
        s.trigger_on(
            json!({"permission_mode": "auto", "source": {"kind": "git", "url": url}}),
            json!({"name": name, "kind": "sendgrid", "prompt": "{{ email.subject }}{% for a in email.attachments %}\n{{ a.path }}{% endfor %}"}),
        )
    };
    let trigger_on = |repo: &str| trigger_at(repo, format!("{}/{repo}", git.url));

    // The repository is cloned before the attachment is stored beside it
    // (stored first, it would leave the clone a folder that is not empty).
    let app = trigger_on("app.git").await;
    let (status, answer) =
        email_with_attachment(&s, &app.url(&s.served.url("")), "<a1@example.org>").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let session = s.sessions().await[0].id;
    let events = common::wait_idle(&s.paddock, session).await;
    assert_eq!(common::errors(&events), Vec::<String>::new());
    let prompt = prompts(&events).remove(0);
    let stored = prompt.lines().nth(1).unwrap().to_owned();
    assert!(
        stored.starts_with("inbox/") && stored.ends_with("/notes.txt"),
        "{prompt}"
    );
    for (path, content) in [
        (stored.as_str(), "remember the milk\n"),
        ("README.md", "# App\n"),
    ] {
        let read: String = s
            .http
            .get(
                s.served
                    .url(&format!("/api/sessions/{session}/files/{path}")),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(read, content, "{path}");
    }

    // Where the workspace cannot take them, the delivery is refused (in
    // the trigger's log, with why) and the session made for it goes too.
    let refused = trigger_on("blocked.git").await;
    let (status, answer) =
        email_with_attachment(&s, &refused.url(&s.served.url("")), "<b1@example.org>").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.contains("attachments cannot be stored"), "{answer}");
    let left: Vec<_> = s.sessions().await.into_iter().map(|s| s.id).collect();
    assert_eq!(left, [session]);
    let delivered = runs(&s, refused.trigger.id).await;
    assert_eq!(
        (delivered.len(), delivered[0].status, delivered[0].session),
        (1, 422, None)
    );
    assert!(delivered[0].outcome.contains("inbox"), "{:?}", delivered[0]);
    // Where its repository is gone, the clone would fail the same way
    // each time the sender tried again: the delivery is refused too.
    let gone = trigger_on("missing.git").await;
    let (status, answer) =
        email_with_attachment(&s, &gone.url(&s.served.url("")), "<c1@example.org>").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.contains("not found"), "{answer}");
    let left: Vec<_> = s.sessions().await.into_iter().map(|s| s.id).collect();
    assert_eq!(left, [session]);
    let delivered = runs(&s, gone.trigger.id).await;
    assert_eq!(
        (delivered.len(), delivered[0].status, delivered[0].session),
        (1, 422, None)
    );
    // Where its forge cannot be reached now, the sender is asked to send
    // it again, and the session made for it says why.
    let later = trigger_at("down", "http://127.0.0.1:1/app.git".into()).await;
    let url = later.url(&s.served.url(""));
    let (status, answer) = email_with_attachment(&s, &url, "<d1@example.org>").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    let kept = s.sessions().await;
    assert_eq!(kept.len(), 2);
    let waiting = kept.iter().find(|k| k.id != session).unwrap().id;
    let (status, _) = email_with_attachment(&s, &url, "<d1@example.org>").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.sessions().await.len(), 2, "sent again: the same session");
    let errors = common::errors(&common::events(&s.paddock, waiting).await);
    assert!(
        errors.iter().any(|e| e.contains("could not be prepared")),
        "{errors:?}"
    );
    assert_eq!(model.turns_used(), 1);
}

/// A delivery put off (503) after it made its session, then refused for
/// good when sent again (422), leaves nothing behind: the session it made
/// goes too, as a refused delivery's does.
#[tokio::test]
async fn a_delivery_put_off_then_refused_leaves_no_session() {
    let (s, _model) = Setup::new(json!([]), &["--git-timeout-secs=2"]).await;
    let git = GitServer::start(None).await;
    let bare = git.repo("slow.git", &[("README.md", b"# App\n")]);
    // Slower than the clone may be: a 503, to send again.
    *git.delay.lock().unwrap() = std::time::Duration::from_secs(4);
    let slow = s
        .trigger_on(
            json!({"permission_mode": "auto", "source": {"kind": "git", "url": format!("{}/slow.git", git.url)}}),
            json!({"name": "slow", "kind": "sendgrid", "prompt": "{{ email.subject }}"}),
        )
        .await;
    let url = slow.url(&s.served.url(""));
    let (status, answer) = email_with_attachment(&s, &url, "<e1@example.org>").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(s.sessions().await.len(), 1);
    // Gone by the time it comes again: refused for good.
    std::fs::remove_dir_all(&bare).unwrap();
    *git.delay.lock().unwrap() = std::time::Duration::ZERO;
    let (status, answer) = email_with_attachment(&s, &url, "<e1@example.org>").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(s.sessions().await.is_empty());
}

#[tokio::test]
async fn an_owner_disabled_or_made_a_viewer_runs_nothing_more_from_their_triggers() {
    use app::accounts::Role;
    use app::api::Backend;
    let (s, model) = Setup::new(json!([{"reply": "Looking."}]), &["--auth=on"]).await;
    let p = &s.paddock;
    let password = "correct horse battery staple";
    let admin = p
        .auth
        .add_user("test", "root", "Root", Role::Admin, password, None)
        .await
        .unwrap()
        .caller();
    let ada = p
        .auth
        .add_user("test", "ada", "Ada", Role::Member, password, None)
        .await
        .unwrap();
    let template = p
        .save_template(
            &ada.caller(),
            None,
            None,
            serde_json::from_value(
                json!({"name": "builds", "session": {"permission_mode": "auto"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let draft = json!({"name": "builds", "prompt": "{{ payload.job }}", "conversation": "{{ payload.branch }}"});
    let made = p
        .create_trigger(
            &ada.caller(),
            template.id,
            serde_json::from_value(draft.clone()).unwrap(),
            None,
        )
        .await
        .unwrap();
    let body = |job: &str| format!(r#"{{"job": "{job}", "branch": "main"}}"#);
    let (status, answer) = s.signed(&made, made.key(), "msg_1", &body("first")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let session: app::domain::SessionId = answer["session"].as_str().unwrap().parse().unwrap();
    common::wait_idle(p, session).await;

    // Made a viewer, then disabled: the conversation's next message, like
    // a new one, is refused, and nothing is queued in Ada's session.
    for (n, (role, disabled)) in [(Some(Role::Viewer), None), (Some(Role::Member), Some(true))]
        .into_iter()
        .enumerate()
    {
        p.change_user(&admin, ada.id, role, disabled).await.unwrap();
        let id = format!("msg_{}", n + 2);
        let (status, answer) = s.signed(&made, made.key(), &id, &body("next")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(
            answer.to_string().contains("cannot run sessions any more"),
            "{answer}"
        );
    }
    assert_eq!(prompts(&common::events(p, session).await), ["first"]);
    assert_eq!(model.turns_used(), 1);
    // A viewer sets up no trigger, changes and rotates none.
    let forbidden = |e: app::domain::AppError| {
        assert!(matches!(e, app::domain::AppError::Forbidden(_)), "{e}");
    };
    p.change_user(&admin, ada.id, None, Some(false))
        .await
        .unwrap();
    let viewer = p
        .change_user(&admin, ada.id, Some(Role::Viewer), None)
        .await
        .unwrap()
        .caller();
    let refused = p
        .create_trigger(
            &viewer,
            template.id,
            serde_json::from_value(draft.clone()).unwrap(),
            None,
        )
        .await
        .unwrap_err();
    forbidden(refused);
    let refused = p
        .rotate_trigger_secret(&viewer, made.trigger.id, std::time::Duration::ZERO, None)
        .await
        .unwrap_err();
    forbidden(refused);
    // Pausing stays theirs, and only pausing.
    let mut paused = draft.clone();
    paused["paused"] = json!(true);
    let mut changed = paused.clone();
    changed["prompt"] = json!("{{ payload }}");
    let refused = p
        .update_trigger(
            &viewer,
            made.trigger.id,
            serde_json::from_value(changed).unwrap(),
        )
        .await
        .unwrap_err();
    forbidden(refused);
    let paused = p
        .update_trigger(
            &viewer,
            made.trigger.id,
            serde_json::from_value(paused).unwrap(),
        )
        .await
        .unwrap();
    assert!(paused.draft.paused);
}

/// A look for the schedules due at `at` by a server that had not looked
/// before (whatever was due long before is missed).
async fn look(paddock: &Paddock, at: chrono::DateTime<Utc>) {
    paddock.run_schedules(at, at).await;
}

/// The answered deliveries (runs) of a trigger, newest first.
async fn runs(s: &Setup, trigger: app::triggers::TriggerId) -> Vec<app::triggers::Delivery> {
    s.get_json(&format!("/api/triggers/{trigger}/deliveries"))
        .await
}

#[tokio::test]
async fn a_schedule_runs_at_its_time_on_one_replica_and_skips_what_it_must() {
    use chrono::{Duration, Timelike};
    let (s, model) = Setup::new(
        json!([
            {"reply": "Nightly checks are running now.", "chunk": 4, "delay_ms": 150},
            {"reply": "Caught up."}
        ]),
        &[&format!(
            "--database-url={}",
            common::postgres::database().await
        )],
    )
    .await;
    let made = s
        .trigger(json!({
            "name": "nightly",
            "kind": "schedule",
            "prompt": "It is {{ schedule.local }} in {{ schedule.timezone }}{% if schedule.late %}, late{% endif %}: run the checks.",
            "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Paris"}
        }))
        .await;
    assert_eq!(made.secret, None, "nothing is sent to a schedule");
    let next = made.trigger.next_runs.clone();
    assert_eq!(next.len(), 3);
    let paris = |at: chrono::DateTime<Utc>| at.with_timezone(&chrono_tz::Europe::Paris);
    assert!(next
        .iter()
        .all(|at| paris(*at).hour() == 2 && at.minute() == 0));
    assert_eq!(next[1] - next[0], Duration::days(1));
    // Its URL takes nothing.
    let (status, _, _) = s.deliver(&made.path, "{}", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A second replica on the same database.
    let other = common::open(&s.home, "local", &s.flags).await;
    let second = Duration::seconds(1);
    look(&s.paddock, next[0] - second).await;
    assert!(s.sessions().await.is_empty(), "not before its time");
    // At its time, both replicas look at once: one runs it.
    tokio::join!(
        look(&s.paddock, next[0] + second),
        look(&other, next[0] + second)
    );
    look(&other, next[0] + second * 2).await;
    let sessions = s.sessions().await;
    assert_eq!(sessions.len(), 1, "run once");
    let session = sessions[0].id;
    let local = paris(next[0]).format("%Y-%m-%d %H:%M");
    // Never two runs at once: the next time comes while it still works.
    let mut running = false;
    for _ in 0..100 {
        let status = s
            .paddock
            .store
            .get_session(session)
            .await
            .unwrap()
            .unwrap()
            .status;
        running = status == app::domain::SessionStatus::Running;
        if running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(running, "the first run works");
    look(&s.paddock, next[1] + second).await;
    // Either replica may be the one that runs it.
    common::wait_idle(&other, session).await;
    let events = common::wait_idle(&s.paddock, session).await;
    assert_eq!(
        prompts(&events),
        [format!("It is {local} in Europe/Paris: run the checks.")]
    );
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Delivery { verified, .. } if verified.starts_with("Schedule: 0 2 * * * in Europe/Paris"))));
    let log = runs(&s, made.trigger.id).await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].status, 409);
    assert!(log[0].outcome.contains("is still going"), "{log:?}");
    assert_eq!(log[1].status, 202);

    // Down for a day and more: a missed time is skipped.
    look(&s.paddock, next[2] + Duration::hours(3)).await;
    assert_eq!(s.sessions().await.len(), 1);
    let log = runs(&s, made.trigger.id).await;
    assert!(
        log[0].outcome.contains("while no server was running"),
        "{log:?}"
    );
    // Set to run missed times once: they run once, late.
    let res = s
        .http
        .put(s.served.url(&format!("/api/triggers/{}", made.trigger.id)))
        .json(&json!({
            "name": "nightly",
            "kind": "schedule",
            "prompt": "It is {{ schedule.local }} in {{ schedule.timezone }}{% if schedule.late %}, late{% endif %}: run the checks.",
            "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Paris", "missed": "once"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let changed: app::triggers::Trigger = res.json().await.unwrap();
    // (The time skipped above is not run again: its run is answered.)
    let missed = changed.next_runs[2] + Duration::days(1);
    let down_until = missed + Duration::hours(5);
    look(&s.paddock, down_until).await;
    look(&other, down_until).await;
    let sessions = s.sessions().await;
    assert_eq!(sessions.len(), 2, "once for all it missed");
    let late = sessions.iter().find(|x| x.id != session).unwrap().id;
    let events = common::wait_idle(&s.paddock, late).await;
    let local = paris(missed).format("%Y-%m-%d %H:%M");
    assert_eq!(
        prompts(&events),
        [format!(
            "It is {local} in Europe/Paris, late: run the checks."
        )]
    );
    assert_eq!(model.turns_used(), 2);

    // A time that came due, not yet taken, stays due through an edit of
    // the prompt alone.
    let due_at = Utc::now() - Duration::seconds(5);
    let (now_is, _) = s
        .paddock
        .store
        .get_trigger(made.trigger.id)
        .await
        .unwrap()
        .unwrap();
    s.paddock
        .store
        .update_trigger(made.trigger.id, &now_is.draft, NextRun::At(due_at))
        .await
        .unwrap();
    let res = s
        .http
        .put(s.served.url(&format!("/api/triggers/{}", made.trigger.id)))
        .json(&json!({
            "name": "nightly",
            "kind": "schedule",
            "prompt": "Run the checks.",
            "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Paris", "missed": "once"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let due = s.paddock.store.due_schedules(Utc::now()).await.unwrap();
    assert!(
        due.iter().any(|(t, _)| *t == made.trigger.id),
        "still due: {due:?}"
    );

    // Paused, it runs nothing and shows no next runs.
    let res = s
        .http
        .put(s.served.url(&format!("/api/triggers/{}", made.trigger.id)))
        .json(&json!({
            "name": "nightly",
            "kind": "schedule",
            "prompt": "x",
            "paused": true,
            "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Paris"}
        }))
        .send()
        .await
        .unwrap();
    let paused: app::triggers::Trigger = res.json().await.unwrap();
    assert!(paused.next_runs.is_empty());
    look(&s.paddock, down_until + Duration::days(30)).await;
    assert_eq!(s.sessions().await.len(), 2);

    // Bad schedules are refused.
    for bad in [
        json!({"cron": "* * * * * *", "timezone": "UTC"}),
        json!({"cron": "0 25 * * *", "timezone": "UTC"}),
        json!({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}),
        json!({"cron": "", "timezone": "UTC"}),
        json!({"cron": "0 0 30 2 *", "timezone": "UTC"}),
    ] {
        let (status, answer) = s
            .post(
                &format!("/api/templates/{}/triggers", made.trigger.template),
                json!({"name": "bad", "kind": "schedule", "prompt": "x", "schedule": bad}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
}

/// A run that came due while this server worked through a slow pass of
/// others is late by that only: it runs, not skipped as one missed while
/// no server was running.
#[tokio::test]
async fn a_schedule_due_during_a_slow_pass_is_not_missed() {
    use chrono::Duration;
    let (s, model) = Setup::new(json!([{"reply": "Checked."}]), &[]).await;
    let made = s
        .trigger(json!({
            "name": "often",
            "kind": "schedule",
            "prompt": "Run the checks.",
            "schedule": {"cron": "*/5 * * * *", "timezone": "UTC"}
        }))
        .await;
    let due = made.trigger.next_runs[0];
    // Taken three minutes late, by a server looking since before it.
    s.paddock
        .run_schedules(due + Duration::minutes(3), due - Duration::seconds(1))
        .await;
    let sessions = s.sessions().await;
    assert_eq!(sessions.len(), 1);
    common::wait_idle(&s.paddock, sessions[0].id).await;
    let log = runs(&s, made.trigger.id).await;
    assert_eq!(log[0].status, 202, "{log:?}");
    assert_eq!(model.turns_used(), 1);
}

#[tokio::test]
async fn an_agent_holds_its_triggered_sessions_to_ask_or_read_only() {
    let (s, model) = Setup::new(json!([{"reply": "Read it."}]), &[]).await;
    let (status, template) = s
        .post(
            "/api/templates",
            json!({"name": "careful", "triggers_require": "ask", "session": {"permission_mode": "auto"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let id = template["id"].as_str().unwrap().to_owned();
    let triggers = format!("/api/templates/{id}/triggers");
    // A trigger that would run unattended is refused; one that asks is not.
    for mode in ["auto", "accept-edits"] {
        let (status, answer) = s
            .post(
                &triggers,
                json!({"name": "x", "prompt": "{{ payload.task }}", "permission_mode": mode}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{mode}: {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("holds"));
    }
    let (status, made) = s
        .post(
            &triggers,
            json!({"name": "asks", "prompt": "{{ payload.task }}", "permission_mode": "ask", "conversation": "{{ payload.thread }}"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let made: TriggerSecret = serde_json::from_value(made).unwrap();
    let body = r#"{"task": "read the logs", "thread": "t1"}"#;
    let (status, first) = s.signed(&made, made.key(), "m1", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let session: app::domain::SessionId = first["session"].as_str().unwrap().parse().unwrap();
    common::wait_idle(&s.paddock, session).await;
    // The agent now holds them to read-only: the trigger's ask is refused,
    // the same each time, and nothing runs.
    let res = s
        .http
        .put(s.served.url(&format!("/api/templates/{id}")))
        .json(&json!({"name": "careful", "triggers_require": "read-only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (status, refused) = s.signed(&made, made.key(), "m2", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused["outcome"].as_str().unwrap().contains("read-only"),
        "{refused}"
    );
    assert_eq!(s.signed(&made, made.key(), "m2", body).await.0, status);
    // The trigger brought to read-only: a laxer mode is refused, pausing
    // it is not; its conversation's session, made in ask, takes nothing
    // more.
    let put = |body: Value| {
        let url = s.served.url(&format!("/api/triggers/{}", made.trigger.id));
        let http = s.http.clone();
        async move { http.put(url).json(&body).send().await.unwrap().status() }
    };
    let draft = |mode: &str, paused: bool| {
        json!({"name": "asks", "prompt": "{{ payload.task }}", "permission_mode": mode,
               "conversation": "{{ payload.thread }}", "paused": paused})
    };
    assert_eq!(put(draft("ask", true)).await, StatusCode::OK);
    assert_eq!(put(draft("auto", false)).await, StatusCode::BAD_REQUEST);
    assert_eq!(put(draft("read-only", false)).await, StatusCode::OK);
    let (status, continued) = s.signed(&made, made.key(), "m3", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{continued}");
    assert!(
        continued["outcome"].as_str().unwrap().contains("ask"),
        "{continued}"
    );
    assert_eq!(s.sessions().await.len(), 1);
    assert_eq!(model.turns_used(), 1);
    // An agent cannot hold them to a mode laxer than ask.
    let (status, _) = s
        .post(
            "/api/templates",
            json!({"name": "lax", "triggers_require": "auto"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
