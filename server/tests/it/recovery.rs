//! The real `paddock` binary against a real Docker daemon and SQLite file:
//! killed with SIGKILL mid-work and started again, it reaps the sandboxes of
//! sessions that are gone and marks interrupted the sessions that were
//! running, keeping their sandboxes and workspaces.

use crate::common::{self, start_with, Binary};
use app::api::EventPage;
use app::domain::{EventKind, Session, SessionStatus};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

async fn call<T: serde::de::DeserializeOwned>(
    server: &Binary,
    function: &str,
    form: &[(&str, &str)],
) -> T {
    let res = reqwest::Client::new()
        .post(format!("{}/api/{function}", server.url))
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{function}: {}", res.status());
    res.json().await.unwrap()
}

fn container_exists(session: &Session) -> bool {
    let name = format!("paddock-{}", session.id);
    Command::new("docker")
        .args(["inspect", &name])
        .output()
        .unwrap()
        .status
        .success()
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not met within 10 s");
}

/// The scripted model server playing `scenario`, and the environment that
/// points a Paddock at it.
async fn scripted(scenario: serde_json::Value) -> (paddock_model::ScriptedModel, String) {
    common::scripted(&scenario, None).await
}

fn model_env(url: &str) -> [(&str, &str); 2] {
    [
        ("ANTHROPIC_BASE_URL", url),
        ("ANTHROPIC_API_KEY", "sk-test"),
    ]
}

/// A server on a new home folder with `env`, and a session made on it
/// with `body`.
async fn served(
    env: &[(&str, &str)],
    body: serde_json::Value,
) -> (std::path::PathBuf, Binary, Session) {
    let dir = std::fs::canonicalize(tempfile::tempdir().unwrap().keep()).unwrap();
    let server = start_with(&dir, "127.0.0.1:0", env);
    let session = create(&server, body).await;
    (dir, server, session)
}

/// Creates a session through the REST API.
async fn create(server: &Binary, body: serde_json::Value) -> Session {
    let res = reqwest::Client::new()
        .post(format!("{}/api/sessions", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn prompt(server: &Binary, session: &Session, text: &str) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/sessions/{}/prompt", server.url, session.id))
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}

/// Waits (10 s at most) until the session has `status`.
async fn wait_status(server: &Binary, session: &Session, status: SessionStatus) {
    let id = session.id.to_string();
    for _ in 0..200 {
        let s: Session = call(server, "get_session", &[("id", &id)]).await;
        if s.status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("session {id} never became {status:?}");
}

/// SIGKILLs the server and starts it again on the same address.
fn crash_and_restart(server: Binary, dir: &Path, env: &[(&str, &str)]) -> Binary {
    let addr = server.crash();
    start_with(dir, &addr, env)
}

/// Deletes the session, stops the server and removes its files.
async fn finish(mut server: Binary, session: &Session, dir: &Path) {
    let () = call(
        &server,
        "delete_session",
        &[("id", &session.id.to_string())],
    )
    .await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn sigkill_then_restart_reaps_orphans_and_interrupts_running_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.keep()).unwrap();
    let server = start_with(&dir, "127.0.0.1:0", &[]);
    // A second on the same database (on an address of its own, as in
    // another container on the same volume) stops before it takes any.
    let said = common::refused_at_start(&dir, &[]).await;
    assert!(
        said.contains("another Paddock serves the database"),
        "{said}"
    );
    let running: Session = call(&server, "create_session", &[("name", "was running")]).await;
    let deleted: Session = call(&server, "create_session", &[("name", "deleted meanwhile")]).await;
    wait_for(|| container_exists(&running) && container_exists(&deleted)).await;
    let workspaces = dir.join("workspaces");
    std::fs::write(
        workspaces.join(running.id.to_string()).join("work.txt"),
        "half done",
    )
    .unwrap();

    // What a crash leaves: one session mid-turn, one whose row is gone.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/paddock.db", dir.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE sessions SET status = 'running' WHERE id = ?")
        .bind(running.id.to_string())
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM sessions WHERE id = ?")
        .bind(deleted.id.to_string())
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let server = crash_and_restart(server, &dir, &[]);
    assert!(
        !container_exists(&deleted),
        "the orphan's container is reaped"
    );
    assert!(
        !workspaces.join(deleted.id.to_string()).exists(),
        "and its workspace"
    );
    assert!(
        container_exists(&running),
        "the running session's sandbox is kept"
    );
    assert_eq!(
        std::fs::read_to_string(workspaces.join(running.id.to_string()).join("work.txt")).unwrap(),
        "half done"
    );
    let id = running.id.to_string();
    let after: Session = call(&server, "get_session", &[("id", &id)]).await;
    assert_eq!(after.status, SessionStatus::Interrupted);
    let events = call::<EventPage>(&server, "session_events", &[("id", &id), ("after", "0")])
        .await
        .events;
    assert!(
        matches!(&events.last().unwrap().kind, EventKind::Status { status: SessionStatus::Interrupted, message: Some(m) } if m.contains("send a prompt")),
        "{events:?}"
    );

    // Deleting the session removes its container and workspace.
    finish(server, &running, &dir).await;
    assert!(!container_exists(&running));
    assert!(!workspaces.join(&id).exists());
}

#[tokio::test]
async fn sigkill_mid_turn_loses_no_stored_event_and_the_session_resumes() {
    let (_model, url) = scripted(serde_json::json!([
        {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo one > one.txt; sleep 60"}}}]},
        {"expect": {"contains": ["first task", "interrupted", "second task"]}, "reply": "Resumed where we were."}
    ]))
    .await;
    let env = model_env(&url);
    let (dir, server, session) = served(
        &env,
        serde_json::json!({"name": "crashy", "permission_mode": "auto"}),
    )
    .await;
    let id = session.id.to_string();
    prompt(&server, &session, "first task").await;
    let marker = dir.join("workspaces").join(&id).join("one.txt");
    for _ in 0..200 {
        if marker.exists() {
            break; // the tool is running in the sandbox
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = call::<EventPage>(&server, "session_events", &[("id", &id), ("after", "0")])
        .await
        .events;
    assert!(marker.exists(), "the tool never ran: {before:?}");
    assert!(
        before
            .iter()
            .any(|e| matches!(e.kind, EventKind::ToolCall { .. })),
        "{before:?}"
    );
    assert!(
        !before
            .iter()
            .any(|e| matches!(e.kind, EventKind::ToolResult { .. })),
        "still running"
    );

    let server = crash_and_restart(server, &dir, &env); // SIGKILL mid-turn
    let after = call::<EventPage>(&server, "session_events", &[("id", &id), ("after", "0")])
        .await
        .events;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "every stored event survives"
    );
    assert!(matches!(
        &after[before.len()].kind,
        EventKind::Status {
            status: SessionStatus::Interrupted,
            ..
        }
    ));

    prompt(&server, &session, "second task").await;
    wait_status(&server, &session, SessionStatus::Idle).await;
    let events = call::<EventPage>(&server, "session_events", &[("id", &id), ("after", "0")])
        .await
        .events;
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::AssistantText { text } if text == "Resumed where we were.")
    ));
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=events.len() as i64).collect::<Vec<_>>()
    );
    finish(server, &session, &dir).await;
}

/// Prompts sent while a run works go to the next run as one turn, which
/// takes one of their queue entries and leaves the others to be skipped.
/// Cut off by a crash, that run is interrupted, and nothing runs after the
/// restart until someone sends a prompt: the entries it left are not runs
/// with nothing new (which went on with the interrupted work on their own).
#[tokio::test]
async fn prompts_taken_as_one_turn_by_a_run_cut_off_do_not_run_again() {
    let (model, url) = scripted(serde_json::json!([
        {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo one > one.txt; sleep 3"}}}]},
        {"reply": "First done."},
        {"expect": {"contains": ["second task", "third task"]},
         "reply": [{"tool_use": {"name": "bash", "input": {"command": "echo two > two.txt; sleep 60"}}}]},
        {"expect": {"contains": ["fourth task"]}, "reply": "Fourth done."}
    ]))
    .await;
    let env = model_env(&url);
    let (dir, server, session) = served(
        &env,
        serde_json::json!({"name": "queued", "permission_mode": "auto"}),
    )
    .await;
    let workspace = dir.join("workspaces").join(session.id.to_string());
    prompt(&server, &session, "first task").await;
    wait_for(|| workspace.join("one.txt").exists()).await;
    prompt(&server, &session, "second task").await;
    prompt(&server, &session, "third task").await;
    wait_for(|| workspace.join("two.txt").exists()).await;
    assert_eq!(model.requests().len(), 3);

    let server = crash_and_restart(server, &dir, &env);
    wait_status(&server, &session, SessionStatus::Interrupted).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s: Session = call(&server, "get_session", &[("id", &session.id.to_string())]).await;
    assert_eq!(s.status, SessionStatus::Interrupted);
    assert_eq!(model.requests().len(), 3, "nothing ran after the restart");
    // And it says so: nothing queued runs now.
    let events = call::<EventPage>(
        &server,
        "session_events",
        &[("id", &session.id.to_string()), ("after", "0")],
    )
    .await
    .events;
    assert!(
        matches!(&events.last().unwrap().kind, EventKind::Status { status: SessionStatus::Interrupted, message: Some(m) } if m.contains("send a prompt")),
        "{events:?}"
    );

    prompt(&server, &session, "fourth task").await;
    wait_status(&server, &session, SessionStatus::Idle).await;
    assert_eq!(model.requests().len(), 4);
    finish(server, &session, &dir).await;
}

/// Crashes the server while the session's permission request is open,
/// starts it again, allows the request and waits for the run to end.
async fn allow_after_a_crash(
    server: Binary,
    session: &Session,
    dir: &Path,
    env: &[(&str, &str)],
) -> Binary {
    let id = session.id.to_string();
    let request = call::<EventPage>(&server, "session_events", &[("id", &id), ("after", "0")])
        .await
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::PermissionRequest { request_id, .. } => Some(request_id.clone()),
            _ => None,
        })
        .expect("the engine asked");
    let server = crash_and_restart(server, dir, env); // while the question is open
    wait_status(&server, session, SessionStatus::AwaitingPermission).await;
    let res = reqwest::Client::new()
        .post(format!(
            "{}/api/sessions/{id}/permissions/{request}",
            server.url
        ))
        .json(&serde_json::json!({"decision": "allow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    wait_status(&server, session, SessionStatus::Idle).await;
    server
}

#[tokio::test]
async fn a_pending_permission_request_survives_a_restart() {
    let (model, url) = scripted(serde_json::json!([
        {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo yes > approved.txt"}}}]},
        {"expect": {"tool_result_contains": ""}, "reply": "Written after the restart."}
    ]))
    .await;
    let env = model_env(&url);
    let (dir, server, session) = served(
        &env,
        serde_json::json!({"name": "careful", "permission_mode": "ask"}),
    )
    .await;
    let id = session.id.to_string();
    prompt(&server, &session, "write it").await;
    wait_status(&server, &session, SessionStatus::AwaitingPermission).await;
    let server = allow_after_a_crash(server, &session, &dir, &env).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("workspaces").join(&id).join("approved.txt")).unwrap(),
        "yes\n"
    );
    let events = call::<EventPage>(&server, "session_events", &[("id", &id), ("after", "0")])
        .await
        .events;
    assert!(!events.iter().any(|e| matches!(
        e.kind,
        EventKind::Status {
            status: SessionStatus::Interrupted,
            ..
        }
    )));
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::AssistantText { text } if text == "Written after the restart.")
    ));
    assert_eq!(model.turns_left(), 0);
    finish(server, &session, &dir).await;
}

/// A request asked before a restart that its resumed run does not ask
/// again (the session was set to auto meanwhile): the tool runs, and the
/// request is closed as expired, not left open for ever.
#[tokio::test]
async fn a_request_no_longer_asked_after_a_restart_is_closed() {
    let (model, url) = scripted(serde_json::json!([
        {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo yes > ran.txt"}}}]},
        {"expect": {"tool_result_contains": ""}, "reply": "Ran after the restart."}
    ]))
    .await;
    let env = model_env(&url);
    let (dir, server, session) = served(
        &env,
        serde_json::json!({"name": "changed", "permission_mode": "ask"}),
    )
    .await;
    let id = session.id.to_string();
    prompt(&server, &session, "run it").await;
    wait_status(&server, &session, SessionStatus::AwaitingPermission).await;
    let res = reqwest::Client::new()
        .put(format!("{}/api/sessions/{id}/settings", server.url))
        .json(&serde_json::json!({
            "name": "changed",
            "model": session.model,
            "permission_mode": "auto",
            "budget_usd": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let server = crash_and_restart(server, &dir, &env);
    wait_status(&server, &session, SessionStatus::Idle).await;
    assert!(dir.join("workspaces").join(&id).join("ran.txt").exists());
    let events = call::<EventPage>(&server, "session_events", &[("id", &id), ("after", "0")])
        .await
        .events;
    let asked: Vec<&String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PermissionRequest { request_id, .. } => Some(request_id),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 1, "{events:#?}");
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::PermissionDecision { request_id, decision: app::domain::Decision::Expired, .. }
                if request_id == asked[0])),
        "{events:#?}"
    );
    assert_eq!(model.turns_left(), 0);
    finish(server, &session, &dir).await;
}

#[tokio::test]
async fn a_run_resumed_after_a_restart_is_not_run_again_for_its_merged_prompts() {
    let (model, url) = scripted(serde_json::json!([
        {"reply": "Zero.", "delay_ms": 1500},
        {"expect": {"contains": ["first queued", "second queued"]},
         "reply": [{"tool_use": {"name": "bash", "input": {"command": "echo yes > approved.txt"}}}]},
        {"expect": {"tool_result_contains": ""}, "reply": "Both done after the restart."}
    ]))
    .await;
    let env = model_env(&url);
    let (dir, server, session) = served(
        &env,
        serde_json::json!({"name": "merged", "permission_mode": "ask"}),
    )
    .await;
    let id = session.id.to_string();
    prompt(&server, &session, "zero").await;
    wait_status(&server, &session, SessionStatus::Running).await;
    // Queued behind "zero": the next run gives both, as one turn, and asks.
    prompt(&server, &session, "first queued").await;
    prompt(&server, &session, "second queued").await;
    wait_status(&server, &session, SessionStatus::AwaitingPermission).await;
    let server = allow_after_a_crash(server, &session, &dir, &env).await;
    // The second prompt's place in the queue runs nothing: it went with
    // the first, in the run that was resumed (it ran the model again on a
    // conversation ending with its answer).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = call::<EventPage>(&server, "session_events", &[("id", &id), ("after", "0")])
        .await
        .events;
    assert_eq!(common::errors(&events), Vec::<String>::new());
    assert_eq!(model.requests().len(), 3);
    assert_eq!(model.turns_left(), 0);
    finish(server, &session, &dir).await;
}

/// More sessions than the dashboard lists (its newest 1,000): a start
/// keeps the workspace of every session that exists, however long ago it
/// was last active, and reaps only those whose session is gone.
#[tokio::test]
async fn a_start_keeps_the_workspaces_of_sessions_beyond_the_newest_thousand() {
    use app::domain::NewSession;
    let home = common::Home::new();
    let paddock = common::open(&home, "local", &[]).await;
    let named = |name: &str| NewSession {
        name: name.into(),
        ..Default::default()
    };
    let oldest = common::create(&paddock, named("oldest")).await;
    let workspace = home.workspace(oldest.id);
    wait_for(|| workspace.exists()).await;
    std::fs::write(workspace.join("work.txt"), "a month of work").unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..1000 {
        common::session(&paddock, named(&format!("newer {i}"))).await;
    }
    let gone = home.workspace(app::domain::SessionId::new_v4());
    std::fs::create_dir_all(&gone).unwrap();

    let recovery = paddock.recover().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(workspace.join("work.txt")).unwrap(),
        "a month of work"
    );
    assert!(!gone.exists(), "a workspace with no session is reaped");
    assert_eq!(recovery.reaped.len(), 1, "{recovery:?}");
}

/// A session taken over while it waited for a decision its engine cannot
/// ask for again (the Claude Code CLI that asked is gone): interrupted,
/// with the question answered as expired, so nobody is offered it and a
/// decision is refused.
#[tokio::test]
async fn a_question_left_by_a_cli_that_is_gone_expires_with_the_takeover() {
    use app::api::Backend;
    use app::domain::{Decision, Engine, NewSession};
    let home = common::Home::new();
    let paddock = common::open(&home, "local", &[]).await;
    let session = common::session(
        &paddock,
        NewSession {
            name: "asked".into(),
            engine: Some(Engine::ClaudeCode),
            ..Default::default()
        },
    )
    .await;
    let asked = EventKind::PermissionRequest {
        request_id: "req-1".into(),
        tool_use_id: "toolu_1".into(),
        tool: "Bash".into(),
        input: serde_json::json!({"command": "ls"}),
    };
    paddock.journal.record(session.id, asked).await.unwrap();
    paddock
        .journal
        .set_status(session.id, SessionStatus::AwaitingPermission, None)
        .await
        .unwrap();

    let recovery = paddock.recover().await.unwrap();
    assert_eq!(recovery.interrupted, vec![session.id], "{recovery:?}");
    let events = common::events(&paddock, session.id).await;
    let decided: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PermissionDecision {
                request_id,
                decision,
                ..
            } => Some((request_id.as_str(), *decision)),
            _ => None,
        })
        .collect();
    assert_eq!(decided, [("req-1", Decision::Expired)]);
    let refused = paddock
        .decide(
            &app::accounts::Caller::local_operator(),
            session.id,
            "req-1".into(),
            Decision::Allow,
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(app::domain::AppError::NotFound(_))),
        "{refused:?}"
    );
}

/// A sandbox whose session is gone while the server runs (a run here made
/// it again while another replica deleted the session) is removed within
/// a lease, not at the next start.
#[tokio::test]
async fn a_sandbox_whose_session_is_gone_is_removed_while_the_server_runs() {
    use app::domain::NewSession;
    let home = common::Home::new();
    let paddock = common::open(&home, "local", &["--lease-secs=3".to_owned()]).await;
    let made = common::create(
        &paddock,
        NewSession {
            name: "deleted elsewhere".into(),
            ..Default::default()
        },
    )
    .await;
    let kept = common::create(
        &paddock,
        NewSession {
            name: "kept".into(),
            ..Default::default()
        },
    )
    .await;
    let (gone, stays) = (home.workspace(made.id), home.workspace(kept.id));
    wait_for(|| gone.exists() && stays.exists()).await;
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/paddock.db", home.path().display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM sessions WHERE id = ?")
        .bind(made.id.to_string())
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    wait_for(|| !gone.exists()).await;
    assert!(stays.exists(), "a session's own sandbox is kept");
}
