//! The native agent loop end to end: real Docker sandboxes, a real SQLite
//! file, and the project's scripted model server speaking the Messages API.

use crate::common::{self, kinds, Home};
use app::accounts::Caller;
use app::api::Backend;
use app::domain::{Decision, Event, EventKind, Session, SessionStatus};
use paddock_model::ScriptedModel;
use serde_json::json;
use server::paddock::Paddock;
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    home: Home,
    paddock: Arc<Paddock>,
    model: ScriptedModel,
}

async fn harness(scenario: serde_json::Value, extra: &[&str]) -> Harness {
    let (model, url) = common::scripted(&scenario, Some("sk-real-key")).await;
    let mut args = vec![format!("--anthropic-base-url={url}")];
    if !extra.iter().any(|a| a.starts_with("--anthropic-api-key")) {
        args.push("--anthropic-api-key=sk-real-key".into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let home = Home::new();
    let paddock = common::open(&home, "docker", &args).await;
    Harness {
        home,
        paddock,
        model,
    }
}

impl Harness {
    /// Stops the session, and its transcript once it is idle.
    async fn stop(&self, s: &Session) -> Vec<Event> {
        self.paddock
            .stop(&Caller::local_operator(), s.id)
            .await
            .unwrap();
        self.wait_idle(s).await
    }

    async fn session(&self, mode: &str) -> Session {
        let new = app::domain::NewSession {
            name: "test".into(),
            permission_mode: Some(mode.parse().unwrap()),
            ..Default::default()
        };
        common::session(&self.paddock, new).await
    }

    async fn prompt(&self, s: &Session, text: &str) {
        self.paddock
            .send_prompt(&Caller::local_operator(), s.id, text.into())
            .await
            .unwrap();
    }

    async fn wait_idle(&self, s: &Session) -> Vec<Event> {
        common::wait_idle(&self.paddock, s.id).await
    }

    /// The newest permission request's id.
    async fn wait_for_permission(&self, s: &Session) -> String {
        let requests = common::wait_for_permissions(&self.paddock, s.id, 1).await;
        requests.last().map(|(id, _)| id.clone()).unwrap()
    }
}

fn status_of(events: &[Event]) -> SessionStatus {
    common::last_status(events).0
}

#[tokio::test]
async fn a_tool_call_writes_a_file_on_the_host_and_the_loop_finishes() {
    let scenario: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../paddock-model/scenarios/write-file.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let h = harness(scenario, &[]).await;
    let s = h.session("auto").await;
    h.prompt(&s, "Please create hello.txt").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(
        kinds(&events),
        [
            "user_message",
            "status",
            "thinking",
            "assistant_text",
            "tool_call",
            "usage",
            "tool_result",
            "assistant_text",
            "usage",
            "status"
        ]
    );
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let file = h.home.workspace(s.id).join("hello.txt");
    assert_eq!(
        std::fs::read_to_string(file).unwrap(),
        "Hello from Paddock!\n"
    );
    let session = h.paddock.store.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(session.status, SessionStatus::Idle);
    assert_eq!(session.turns, 2);
    assert!(session.cost_usd > 0.0 && session.input_tokens > 0);
    // The second request carried the tool result for the first's tool_use.
    let second = &h.model.requests()[1];
    assert_eq!(second["messages"][2]["content"][0]["type"], "tool_result");
}

/// An answer its token limit cut off in the middle of a tool call's input
/// is kept and charged; the cut call is not run, and the model is told why
/// and goes on.
#[tokio::test]
async fn a_call_cut_off_by_the_output_limit_is_answered_not_run() {
    let big = "line\n".repeat(400);
    let h = harness(
        json!([
            {
                "reply": [
                    {"text": "Writing the whole log."},
                    {"tool_use": {"name": "write_file", "input": {"path": "big.txt", "content": big}, "cut_at": 60}}
                ],
                "stop_reason": "max_tokens",
                "usage": {"input_tokens": 100, "output_tokens": 8192}
            },
            {"expect": {"tool_result_contains": "max_tokens"}, "reply": "I will write it in parts."}
        ]),
        &[],
    )
    .await;
    let s = h.session("auto").await;
    h.prompt(&s, "Write the log").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(
        status_of(&events),
        SessionStatus::Idle,
        "{:?}",
        kinds(&events)
    );
    let result = events.iter().find_map(|e| match &e.kind {
        EventKind::ToolResult {
            output, is_error, ..
        } => Some((output.clone(), *is_error)),
        _ => None,
    });
    let (output, is_error) = result.expect("the cut call is answered");
    assert!(is_error && output.contains("max_tokens"), "{output}");
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::AssistantText { text } if text == "Writing the whole log.")
    ));
    assert!(!h.home.workspace(s.id).join("big.txt").exists(), "not run");
    let session = h.paddock.store.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(session.turns, 2);
    assert!(session.output_tokens >= 8192, "the cut answer is charged");
}

/// An answer whose last call the output limit cut off, after a call that
/// waits for a decision: the cut call is answered before anyone is asked,
/// so a restart while the question waits does not find it open and run it
/// with an empty input.
#[tokio::test]
async fn a_cut_off_call_is_answered_before_the_calls_beside_it_wait() {
    let h = harness(
        json!([
            {
                "reply": [
                    {"tool_use": {"name": "bash", "input": {"command": "echo first"}}},
                    {"tool_use": {"name": "bash", "input": {"command": "echo second"}, "cut_at": 5}}
                ],
                "stop_reason": "max_tokens"
            },
            {"reply": "Done."}
        ]),
        &[],
    )
    .await;
    let s = h.session("ask").await;
    h.prompt(&s, "Run both").await;
    h.wait_for_permission(&s).await;
    let events = common::events(&h.paddock, s.id).await;
    let kinds = common::kinds(&events);
    let answered = kinds.iter().position(|k| *k == "tool_result");
    let asked = kinds.iter().position(|k| *k == "permission_request");
    assert!(answered.is_some() && answered < asked, "{kinds:?}");
    h.stop(&s).await;
}

#[tokio::test]
async fn a_failing_tool_is_reported_to_the_model_which_recovers() {
    let h = harness(
        json!([
            {"reply": [{"tool_use": {"name": "read_file", "input": {"path": "missing.txt"}}}]},
            {"expect": {"tool_result_contains": "does not exist"}, "reply": "That file does not exist; nothing to read."}
        ]),
        &[],
    )
    .await;
    let s = h.session("ask").await;
    h.prompt(&s, "read missing.txt").await;
    let events = h.wait_idle(&s).await;
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::ToolResult { is_error: true, .. })));
    assert_eq!(status_of(&events), SessionStatus::Idle);
    assert_eq!(h.model.turns_left(), 0);
}

/// What the assistant said, in order.
fn assistant_texts(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AssistantText { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The model declines a prompt partway (its answer stops as a refusal):
/// the transcript says so, and the next prompt's conversation holds
/// neither the declined prompt nor what the model began, as the API asks
/// (a conversation that holds them is declined again).
/// A request the API finds too long, by a count the rough one fell short
/// of (text of few characters a token): fitted again within as much less,
/// the oldest text let go, and answered. And a prompt refused as too long
/// itself is let go of by the next one.
#[tokio::test]
async fn a_request_the_api_finds_too_long_is_fitted_again_and_answered() {
    let too_long = |real: u32| {
        json!({"error": {"status": 400, "type": "invalid_request_error",
            "message": format!("prompt is too long: {real} tokens > 200000 maximum")}})
    };
    let h = harness(
        json!([
            {"reply": "Read it."},
            too_long(400_000),
            {"expect": {"contains": ["This text was removed", "Go on"]}, "reply": "Done."},
            too_long(900_000),
            too_long(900_000),
            {"expect": {"contains": ["This text was removed", "Shorter"]}, "reply": "Better."}
        ]),
        &[],
    )
    .await;
    let s = h.session("ask").await;
    h.prompt(&s, &"log line\n".repeat(40_000)).await;
    h.wait_idle(&s).await;
    h.prompt(&s, "Go on").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Idle);
    assert_eq!(assistant_texts(&events), ["Read it.", "Done."]);
    // One the model cannot take however it is fitted (the prompt itself),
    // then the next: sent without it.
    h.prompt(&s, &"字".repeat(200_000)).await;
    let events = h.wait_idle(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Error);
    h.prompt(&s, "Shorter").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Idle);
    assert_eq!(assistant_texts(&events).last().copied(), Some("Better."));
}

#[tokio::test]
async fn a_declined_turn_is_left_out_of_the_conversation() {
    let h = harness(
        json!([
            {"reply": "First answer."},
            {"reply": "Sure, the steps are", "stop_reason": "refusal"},
            {"expect": {"contains": ["First answer.", "Something else"]}, "reply": "Gladly."}
        ]),
        &[],
    )
    .await;
    let s = h.session("ask").await;
    h.prompt(&s, "A first question").await;
    h.wait_idle(&s).await;
    h.prompt(&s, "The declined request").await;
    let events = h.wait_idle(&s).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Refused { .. })),
        "{:?}",
        common::kinds(&events)
    );
    assert_eq!(assistant_texts(&events), ["First answer."]);
    h.prompt(&s, "Something else").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Idle);
    assert_eq!(assistant_texts(&events), ["First answer.", "Gladly."]);
    let sent = h.model.requests()[2]["messages"].to_string();
    assert!(!sent.contains("The declined request"), "{sent}");
    assert!(!sent.contains("the steps are"), "{sent}");
}

#[tokio::test]
async fn a_follow_up_carries_the_first_exchange_and_queued_prompts_run_in_order() {
    let h = harness(
        json!([
            {"reply": "The capital of France is Paris.", "delay_ms": 100},
            {"expect": {"contains": ["capital of France", "Paris", "And of Italy?"]}, "reply": "Rome.", "delay_ms": 300},
            {"expect": {"contains": ["And of Spain?"]}, "reply": "Madrid."}
        ]),
        &[],
    )
    .await;
    let s = h.session("ask").await;
    h.prompt(&s, "What is the capital of France?").await;
    h.wait_idle(&s).await;
    h.prompt(&s, "And of Italy?").await;
    while h.model.requests().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Queued behind the one the model is answering (sent before that one
    // ran, the two would be one turn).
    h.prompt(&s, "And of Spain?").await;
    let events = h.wait_idle(&s).await;
    let texts = assistant_texts(&events);
    assert_eq!(
        texts,
        ["The capital of France is Paris.", "Rome.", "Madrid."]
    );
    assert_eq!(h.model.turns_left(), 0);
}

#[tokio::test]
async fn a_prompt_sent_while_a_tool_runs_is_the_next_turn_after_it() {
    let h = harness(
        json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "sleep 2; echo slept"}}}]},
            {"expect": {"tool_result_contains": "slept"}, "reply": "Slept."},
            {"expect": {"contains": ["And now?", "And then?"]}, "reply": "Now awake."}
        ]),
        &[],
    )
    .await;
    let s = h.session("auto").await;
    h.prompt(&s, "Sleep a little.").await;
    common::wait_for_tool_call(&h.paddock, s.id).await;
    // Sent while the tool runs: they wait for the turn to end, and then the
    // conversation holds the tool's one result and ends on these prompts
    // (replayed where they were stored, they gave the call a second
    // result, which the API refuses), as one turn: the second's place in
    // the queue runs nothing (it ran the model again, on a conversation
    // ending with its answer, and said the session finished twice).
    h.prompt(&s, "And now?").await;
    h.prompt(&s, "And then?").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(common::errors(&events), Vec::<String>::new());
    let texts = assistant_texts(&events);
    assert_eq!(texts, ["Slept.", "Now awake."]);
    let requests = h.model.requests();
    assert_eq!(requests.len(), 3);
    let last = requests[2]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"][0]["text"], "And now?", "{last}");
    assert_eq!(last["content"][1]["text"], "And then?", "{last}");
    let statuses: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Status { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            SessionStatus::Running,
            SessionStatus::Idle,
            SessionStatus::Running,
            SessionStatus::Idle
        ]
    );
}

#[tokio::test]
async fn a_session_deleted_as_its_sandbox_starts_leaves_nothing() {
    let h = harness(json!([]), &[]).await;
    let mut deleted = Vec::new();
    for wait in [0, 100, 200, 400, 800] {
        // Made as the dashboard makes it: its warm-up is starting the
        // sandbox as it is deleted.
        let new = app::domain::NewSession {
            name: "short-lived".into(),
            ..Default::default()
        };
        let s = h
            .paddock
            .create_session(&Caller::local_operator(), new)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(wait)).await;
        h.paddock
            .delete_session(&Caller::local_operator(), s.id)
            .await
            .unwrap();
        deleted.push(s.id);
    }
    // A start that went on past the deletion would have made its
    // container and workspace by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let found = h.paddock.sandbox.list().await.unwrap();
    assert!(
        !found.iter().any(|f| deleted.contains(&f.session)),
        "{found:?}"
    );
    for id in deleted {
        assert!(!h.home.workspaces().join(id.to_string()).exists());
    }
}

#[tokio::test]
async fn stop_cancels_a_stream_and_a_long_tool() {
    let h = harness(
        json!([
            {"reply": "This answer streams very slowly so it can be stopped midway.", "delay_ms": 300, "chunk": 4},
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "sleep 300"}}}]},
            {"reply": "after the stop"}
        ]),
        &[],
    )
    .await;
    let s = h.session("auto").await;
    h.prompt(&s, "talk").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let events = h.stop(&s).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::AssistantText { .. })),
        "the half answer is not stored"
    );
    assert!(
        matches!(&events.last().unwrap().kind, EventKind::Status { status: SessionStatus::Idle, message: Some(m) } if m == "Stopped.")
    );

    h.prompt(&s, "run something long").await;
    common::wait_for_tool_call(&h.paddock, s.id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = h.stop(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Idle);
    let ps = std::process::Command::new("docker")
        .args([
            "exec",
            &format!("paddock-{}", s.id),
            "pgrep",
            "-f",
            "sleep 300",
        ])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "the tool's process is gone");
    // The next prompt continues; the cut-off tool call was answered.
    h.prompt(&s, "continue").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Idle);
    let last = h.model.requests().last().cloned().unwrap();
    assert!(last.to_string().contains("interrupted"), "{last}");
}

#[tokio::test]
async fn overloaded_mid_stream_is_retried_and_a_bad_key_is_a_clear_error() {
    let h = harness(
        json!([
            {"reply": "partial", "stream_error": {"after": 3}},
            {"reply": "recovered"}
        ]),
        &[],
    )
    .await;
    let s = h.session("ask").await;
    h.prompt(&s, "hi").await;
    let events = h.wait_idle(&s).await;
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::AssistantText { text } if text == "recovered")));

    let bad = harness(
        json!([{"reply": "never"}]),
        &["--anthropic-api-key=sk-wrong"],
    )
    .await;
    let s = bad.session("ask").await;
    bad.prompt(&s, "hi").await;
    let events = bad.wait_idle(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Error);
    assert!(
        events.iter().any(
            |e| matches!(&e.kind, EventKind::Error { message } if message.contains("API key"))
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn max_turns_stops_a_looping_model() {
    let turn = json!({"reply": [{"tool_use": {"name": "list_files", "input": {}}}]});
    let h = harness(
        json!([turn.clone(), turn.clone(), turn]),
        &["--max-turns=2"],
    )
    .await;
    let s = h.session("auto").await;
    h.prompt(&s, "loop").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Error);
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Error { message } if message.contains("limit of 2 model turns"))));
    assert_eq!(h.model.turns_left(), 1);
}

#[tokio::test]
async fn a_spent_budget_stops_further_model_calls() {
    let turn = json!({"reply": [{"tool_use": {"name": "list_files", "input": {}}}]});
    let h = harness(json!([turn.clone(), turn]), &[]).await;
    let spec = app::domain::NewSession {
        name: "thrifty".into(),
        permission_mode: Some("auto".parse().unwrap()),
        budget_usd: Some(1e-9),
        ..Default::default()
    }
    .validate()
    .unwrap();
    let s = h.paddock.store.create_session(&spec, None).await.unwrap();
    assert_eq!(s.budget_usd, Some(1e-9));
    h.prompt(&s, "spend").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Error);
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Error { message } if message.contains("budget"))),
        "{events:?}"
    );
    assert_eq!(h.model.turns_left(), 1, "the second call was never made");
}

#[tokio::test]
async fn permission_allow_deny_and_timeout() {
    let write = |n: u32| json!({"reply": [{"tool_use": {"name": "bash", "input": {"command": format!("echo {n} > n{n}.txt")}}}]});
    let h = harness(
        json!([
            write(1), {"reply": "ok 1"},
            write(2), {"expect": {"tool_result_contains": "not today"}, "reply": "ok 2"},
            write(3), {"expect": {"tool_result_contains": "denied"}, "reply": "ok 3"}
        ]),
        &["--permission-timeout-secs=1"],
    )
    .await;
    let s = h.session("ask").await;
    let ws = h.home.workspace(s.id);

    h.prompt(&s, "one").await;
    let request = h.wait_for_permission(&s).await;
    let awaiting = h.paddock.store.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(awaiting.status, SessionStatus::AwaitingPermission);
    h.paddock
        .permissions
        .decide(s.id, &request, Decision::Allow, None, None)
        .unwrap();
    assert!(
        h.paddock
            .permissions
            .decide(s.id, &request, Decision::Deny, None, None)
            .is_err(),
        "decided once"
    );
    h.wait_idle(&s).await;
    assert!(ws.join("n1.txt").exists());

    h.prompt(&s, "two").await;
    let mut request2 = h.wait_for_permission(&s).await;
    while request2 == request {
        tokio::time::sleep(Duration::from_millis(50)).await;
        request2 = h.wait_for_permission(&s).await;
    }
    h.paddock
        .permissions
        .decide(
            s.id,
            &request2,
            Decision::Deny,
            Some("not today".into()),
            None,
        )
        .unwrap();
    h.wait_idle(&s).await;
    assert!(!ws.join("n2.txt").exists());

    h.prompt(&s, "three").await; // nobody answers: denied after the timeout
    let events = h.wait_idle(&s).await;
    assert!(!ws.join("n3.txt").exists());
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::PermissionDecision {
            decision: Decision::Expired,
            ..
        }
    )));
    assert_eq!(status_of(&events), SessionStatus::Idle);
    assert_eq!(h.model.turns_left(), 0);
}

#[tokio::test]
async fn a_stop_while_a_permission_waits_closes_the_request() {
    let h = harness(
        json!([{"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo no > no.txt"}}}]}]),
        &[],
    )
    .await;
    let s = h.session("ask").await;
    h.prompt(&s, "write").await;
    let request = h.wait_for_permission(&s).await;
    let events = h.stop(&s).await;
    // Recorded as expired, so no page offers Allow for a run that is gone.
    assert!(
        events.iter().any(|e| matches!(
            &e.kind,
            EventKind::PermissionDecision { request_id, decision: Decision::Expired, reason: Some(r), .. }
                if *request_id == request && r.contains("stopped")
        )),
        "{events:#?}"
    );
    let late = h
        .paddock
        .decide(
            &Caller::local_operator(),
            s.id,
            request,
            Decision::Allow,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(late, app::domain::AppError::NotFound(_)), "{late}");
    assert!(!h.home.workspace(s.id).join("no.txt").exists());
}

#[tokio::test]
async fn the_rest_api_runs_prompts_and_refuses_bad_ones() {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;

    let h = harness(
        json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo hi > api.txt"}}}]},
            {"reply": "done"}
        ]),
        &[],
    )
    .await;
    let served = common::serve(h.paddock.clone()).await;
    let base = served.url.clone();
    let http = reqwest::Client::new();

    let s: Session = http
        .post(format!("{base}/api/sessions"))
        .json(&json!({"name": "via REST", "permission_mode": "ask"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = http
        .post(format!("{base}/api/sessions"))
        .json(&json!({"name": "cc", "engine": "claude-code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "the engine is chosen per session");
    let cc: Session = res.json().await.unwrap();
    assert_eq!(cc.engine, app::domain::Engine::ClaudeCode);
    let prompt_url = format!("{base}/api/sessions/{}/prompt", s.id);
    for (body, status) in [
        (json!({"text": "  "}), 400),
        (json!({"text": "x".repeat(1024 * 1024 + 1)}), 400),
        (json!({"txt": "typo"}), 400),
    ] {
        let res = http.post(&prompt_url).json(&body).send().await.unwrap();
        assert_eq!(res.status(), status);
        let err: serde_json::Value = res.json().await.unwrap();
        assert!(err["error"]["message"].is_string());
    }
    let res = http
        .post(&prompt_url)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http
        .post(format!(
            "{base}/api/sessions/{}/prompt",
            uuid::Uuid::now_v7()
        ))
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        h.paddock
            .store
            .events_after(s.id, 0, 100)
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );

    let res = http
        .post(&prompt_url)
        .json(&json!({"text": "write api.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);

    // Watch the stream until the permission request, allow it, then wait for idle.
    let mut events = http
        .get(format!("{base}/api/sessions/{}/events", s.id))
        .send()
        .await
        .unwrap()
        .bytes_stream()
        .eventsource();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(frame) = tokio::time::timeout_at(deadline, events.next())
        .await
        .expect("the run ends within a minute")
    {
        let frame = frame.unwrap();
        if frame.event != "event" {
            continue;
        }
        let event: Event = serde_json::from_str(&frame.data).unwrap();
        assert_eq!(frame.id, event.seq.to_string());
        seen.push(event.seq);
        match event.kind {
            EventKind::PermissionRequest { request_id, .. } => {
                let url = format!("{base}/api/sessions/{}/permissions/{request_id}", s.id);
                let bad = http
                    .post(&url)
                    .json(&json!({"decision": "maybe"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(bad.status(), 400);
                let ok = http
                    .post(&url)
                    .json(&json!({"decision": "allow"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(ok.status(), 204);
                let again = http
                    .post(&url)
                    .json(&json!({"decision": "deny"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(again.status(), 404, "decided once");
            }
            EventKind::Status {
                status: SessionStatus::Idle,
                ..
            } => break,
            _ => {}
        }
    }
    assert_eq!(seen, (1..=seen.len() as i64).collect::<Vec<_>>(), "gapless");
    assert!(h.home.workspace(s.id).join("api.txt").exists());
    let stop = http
        .post(format!("{base}/api/sessions/{}/stop", s.id))
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 202);
}

#[tokio::test]
async fn the_agents_commands_get_the_session_environment() {
    let h = harness(
        json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo \"greeting=$GREETING\""}}}]},
            {"expect": {"tool_result_contains": "greeting=hello from the session"}, "reply": "It says hello."}
        ]),
        &[],
    )
    .await;
    let new = app::domain::NewSession {
        name: "env".into(),
        permission_mode: Some("auto".parse().unwrap()),
        env: vec![app::domain::EnvVar {
            name: "GREETING".into(),
            value: "hello from the session".into(),
        }],
        ..Default::default()
    };
    let s = common::session(&h.paddock, new).await;
    assert_eq!(
        h.paddock
            .store
            .get_session(s.id)
            .await
            .unwrap()
            .unwrap()
            .env,
        s.env
    );
    h.prompt(&s, "what does it say?").await;
    let events = h.wait_idle(&s).await;
    assert_eq!(status_of(&events), SessionStatus::Idle);
    assert_eq!(
        h.model.turns_left(),
        0,
        "the model saw the variable's value"
    );
}

#[tokio::test]
async fn a_session_sets_its_own_turns_command_time_and_tools_allowed() {
    let slow = json!({"reply": [{"tool_use": {"name": "bash", "input": {"command": "sleep 30; echo late"}}}]});
    let h = harness(
        json!([
            slow.clone(),
            {"expect": {"tool_result_contains": "timed out"}, "reply": [{"tool_use": {"name": "list_files", "input": {}}}]},
            slow
        ]),
        &[],
    )
    .await;
    let new = app::domain::NewSession {
        name: "limited".into(),
        permission_mode: Some("ask".parse().unwrap()),
        max_turns: Some(2),
        allowed_tools: vec!["bash".into()],
        limits: app::domain::SandboxLimits {
            command_timeout_secs: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let s = common::session(&h.paddock, new).await;
    assert_eq!(s.max_turns, Some(2));
    assert_eq!(s.allowed_tools, ["bash"]);
    h.prompt(&s, "go").await;
    let events = h.wait_idle(&s).await;
    assert!(
        !kinds(&events).contains(&"permission_request"),
        "bash is allowed without asking: {events:?}"
    );
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Error { message } if message.contains("limit of 2 model turns"))), "{events:?}");
    assert_eq!(
        h.model.turns_left(),
        1,
        "the third turn was never asked for"
    );
}

#[tokio::test]
async fn a_full_workspace_is_reported_in_the_transcript_and_the_dashboard() {
    let fill = "dd if=/dev/zero of=big bs=1M count=100 status=none";
    let h = harness(
        json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": fill}}}]},
            {"expect": {"tool_result_contains": "the workspace is full"}, "reply": [{"text": "It is full."}]}
        ]),
        &[],
    )
    .await;
    let new = app::domain::NewSession {
        name: "small disk".into(),
        allowed_tools: vec!["bash".into()],
        limits: app::domain::SandboxLimits {
            disk_mb: Some(16),
            ..Default::default()
        },
        ..Default::default()
    };
    let s = common::session(&h.paddock, new).await;
    assert_eq!(s.limits.disk_mb, Some(16));
    h.prompt(&s, "fill the disk").await;
    let events = h.wait_idle(&s).await;
    let output = common::first_tool_output(&events);
    assert!(output.contains("No space left on device"), "{output}");
    assert!(output.contains("[the workspace is full: "), "{output}");
    assert_eq!(status_of(&events), SessionStatus::Idle, "{events:?}");
    assert_eq!(h.model.turns_left(), 0);
    let disk = h
        .paddock
        .disk_use(&Caller::local_operator(), s.id)
        .await
        .unwrap();
    assert!(
        disk.is_full() && disk.limit_bytes <= Some(16 << 20),
        "{disk:?}"
    );
    // Deleting the session gives the space back to the host.
    h.paddock
        .delete_session(&Caller::local_operator(), s.id)
        .await
        .unwrap();
    assert!(!h.home.workspaces().join(format!("{}.disk", s.id)).exists());
}

#[tokio::test]
async fn an_image_the_docker_host_lacks_is_a_clear_error() {
    let h = harness(json!([]), &[]).await;
    // Asked for at creation: a name no image has on the Docker host, or
    // one Docker reads as no image's name, is refused, and makes nothing.
    for image in [
        "paddock-no-such-image:0",
        "Paddock-Agent:1",
        "paddock-agent:1:2",
    ] {
        let new = app::domain::NewSession {
            name: "imaged".into(),
            image: Some(image.into()),
            ..Default::default()
        };
        match h
            .paddock
            .create_session(&Caller::local_operator(), new)
            .await
        {
            Err(app::domain::AppError::Invalid(m)) => {
                assert!(m.contains(image) && m.contains("no image"), "{m}")
            }
            other => panic!("{image}: {other:?}"),
        }
    }
    let made = h
        .paddock
        .list_sessions(&Caller::local_operator())
        .await
        .unwrap();
    assert!(made.is_empty(), "{made:?}");
    // An image that declares volumes: their files would be kept outside
    // the workspace and its disk limit.
    let volumed = format!("paddock-test-volumes:{}", uuid::Uuid::now_v7().simple());
    let mut build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &volumed, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    build
        .stdin
        .take()
        .unwrap()
        .write_all(format!("FROM {}\nVOLUME /data\n", server::config::DEFAULT_IMAGE).as_bytes())
        .unwrap();
    assert!(build.wait().unwrap().success());
    let refused = h
        .paddock
        .create_session(
            &Caller::local_operator(),
            app::domain::NewSession {
                name: "imaged".into(),
                image: Some(volumed.clone()),
                ..Default::default()
            },
        )
        .await;
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &volumed])
        .output();
    assert!(
        matches!(&refused, Err(app::domain::AppError::Invalid(m)) if m.contains("declares volumes (/data)")),
        "{refused:?}"
    );
    // The image of the sandbox's own is there.
    let new = app::domain::NewSession {
        name: "imaged".into(),
        image: Some(server::config::DEFAULT_IMAGE.into()),
        ..Default::default()
    };
    h.paddock
        .create_session(&Caller::local_operator(), new)
        .await
        .unwrap();
    // One gone after its session was made: the run says so.
    let new = app::domain::NewSession {
        name: "imaged".into(),
        image: Some("paddock-no-such-image:0".into()),
        ..Default::default()
    };
    let s = common::session(&h.paddock, new).await;
    assert_eq!(s.image.as_deref(), Some("paddock-no-such-image:0"));
    h.prompt(&s, "hello").await;
    let events = h.wait_idle(&s).await;
    assert!(
        common::errors(&events)
            .iter()
            .any(|m| m.contains("paddock-no-such-image:0") && m.contains("not found")),
        "{events:?}"
    );
}

/// Whether the session's container runs, as Docker says.
fn container_running(s: &Session) -> bool {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}"])
        .arg(server::sandbox::DockerSandbox::container_name(s.id))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

/// Waits until the session's container runs or not, as `running` says.
async fn wait_container(s: &Session, running: bool) {
    for _ in 0..300 {
        if container_running(s) == running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the container's running is still not {running}");
}

#[tokio::test]
async fn an_unused_sandbox_is_stopped_and_the_next_prompt_starts_it_with_its_files() {
    let h = harness(
        json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo kept > kept.txt"}}}]},
            {"reply": "written"},
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "cat kept.txt"}}}]},
            {"reply": "read"},
        ]),
        &["--sandbox-idle-secs=2"],
    )
    .await;
    let s = h.session("auto").await;
    h.prompt(&s, "Write it").await;
    h.wait_idle(&s).await;
    wait_container(&s, false).await;
    // Started again by the next prompt, its workspace as it was.
    h.prompt(&s, "Read it").await;
    let events = h.wait_idle(&s).await;
    let output = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::ToolResult { output, .. } => Some(output.clone()),
        _ => None,
    });
    assert_eq!(output.as_deref(), Some("kept\n"), "{events:?}");
    assert!(container_running(&s));

    // A terminal open (its transcript says so) keeps it running, also
    // once another replica (numbering its own) opened and closed one of
    // the same number.
    let terminal = |replica: &str, closed: Option<&str>| EventKind::Terminal {
        number: 1,
        by: "Ada".into(),
        closed: closed.map(str::to_owned),
        replica: Some(replica.to_owned()),
    };
    let store = &h.paddock.store;
    store
        .append_event(s.id, &terminal("a", None))
        .await
        .unwrap();
    store
        .append_event(s.id, &terminal("b", None))
        .await
        .unwrap();
    store
        .append_event(s.id, &terminal("b", Some("the shell exited (code 0)")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(container_running(&s), "stopped under an open terminal");
    store
        .append_event(s.id, &terminal("a", Some("the shell exited (code 0)")))
        .await
        .unwrap();
    wait_container(&s, false).await;
}

#[tokio::test]
async fn at_most_32_prompts_wait_their_turn_and_stop_drops_them() {
    let h = harness(
        json!([{"reply": [{"tool_use": {"name": "bash", "input": {"command": "true"}}}]}]),
        &[],
    )
    .await;
    let s = h.session("ask").await;
    h.prompt(&s, "first").await;
    // Waiting for a decision: the run goes on, the next prompts wait.
    h.wait_for_permission(&s).await;
    for n in 0..32 {
        h.prompt(&s, &format!("later {n}")).await;
    }
    let refused = h
        .paddock
        .send_prompt(&Caller::local_operator(), s.id, "one too many".into())
        .await;
    assert!(
        matches!(&refused, Err(app::domain::AppError::Conflict(m)) if m.contains("32 prompts")),
        "{refused:?}"
    );
    h.stop(&s).await;
    assert_eq!(h.paddock.store.queued_prompts(s.id).await.unwrap(), 0);
}

#[tokio::test]
async fn a_persons_sandboxes_past_the_cap_stop_the_longest_unused_or_are_refused() {
    let h = harness(json!([]), &["--auth=on", "--sandboxes-per-person=2"]).await;
    let paddock = &h.paddock;
    let (ann, bob) = (member(paddock, "ann").await, member(paddock, "bob").await);
    // Each session's sandbox starts as it is made.
    let a = start(paddock, &ann, "a").await;
    wait_container(&a, true).await;
    let b = start(paddock, &ann, "b").await;
    wait_container(&b, true).await;
    // A third: the longest unused stops to make room.
    let c = start(paddock, &ann, "c").await;
    wait_container(&c, true).await;
    assert!(!container_running(&a));
    assert!(container_running(&b));
    // Both in use: a terminal opening here in one, one open (its
    // transcript says) in the other. A fourth is refused, and says why.
    let _opening = paddock.terminals.claim(b.id).unwrap();
    paddock
        .store
        .append_event(
            c.id,
            &EventKind::Terminal {
                number: 1,
                by: "ann".into(),
                closed: None,
                replica: None,
            },
        )
        .await
        .unwrap();
    let d = start(paddock, &ann, "d").await;
    let mut said = String::new();
    for _ in 0..100 {
        said = format!("{:?}", common::events(paddock, d.id).await);
        if said.contains("PADDOCK_SANDBOXES_PER_PERSON") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(said.contains("PADDOCK_SANDBOXES_PER_PERSON"), "{said}");
    assert!(!container_running(&d), "a refused start makes nothing");
    assert!(container_running(&b) && container_running(&c));
    // Another person's are theirs to count.
    let e = start(paddock, &bob, "e").await;
    wait_container(&e, true).await;
}

/// A member's caller, made in the store.
async fn member(paddock: &Paddock, login: &str) -> Caller {
    paddock
        .auth
        .add_user(
            "test",
            login,
            login,
            app::accounts::Role::Member,
            "correct horse battery",
            None,
        )
        .await
        .unwrap()
        .caller()
}

/// A session `who` makes, its sandbox started as it is made.
async fn start(paddock: &Paddock, who: &Caller, name: &str) -> Session {
    let new = app::domain::NewSession {
        name: name.into(),
        ..Default::default()
    };
    paddock.start_session(who, new, None).await.unwrap()
}
