//! The claude-code engine end to end: the real Claude Code CLI in a real
//! `--network none` Docker sandbox, reaching the project's scripted model
//! server only through Paddock's credential proxy; and the proxy itself over
//! its real Unix socket.

use crate::common::{self, errors, kinds, last_status, Home};
use app::accounts::Caller;
use app::api::Backend;
use app::domain::{Decision, Engine, Event, EventKind, NewSession, Session, SessionStatus};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use paddock_model::ScriptedModel;
use serde_json::{json, Value};
use server::paddock::Paddock;
use server::proxy::SOCKET_NAME;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    home: Home,
    paddock: Arc<Paddock>,
    model: ScriptedModel,
    /// The real API key: it must never reach a sandbox.
    canary: String,
}

async fn harness(scenario: Value, sandbox: &str, extra: &[&str]) -> Harness {
    let canary = format!("sk-ant-canary-{}", hex::encode(rand::random::<[u8; 16]>()));
    let (model, url) = common::scripted(&scenario, Some(&canary)).await;
    let mut args = vec![
        format!("--anthropic-base-url={url}"),
        "--permission-timeout-secs=60".into(),
    ];
    if !extra.iter().any(|a| a.starts_with("--anthropic-api-key")) {
        args.push(format!("--anthropic-api-key={canary}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let home = Home::new();
    let paddock = common::open(&home, sandbox, &args).await;
    Harness {
        home,
        paddock,
        model,
        canary,
    }
}

fn container(s: &Session) -> String {
    format!("paddock-{}", s.id)
}

impl Harness {
    async fn session(&self, mode: &str, budget: Option<f64>) -> Session {
        let new = NewSession {
            name: "cc".into(),
            engine: Some(Engine::ClaudeCode),
            permission_mode: Some(mode.parse().unwrap()),
            budget_usd: budget,
            // The CLI's Bash tool runs with the session's variables.
            env: vec![app::domain::EnvVar {
                name: "MADE_BY".into(),
                value: "claude".into(),
            }],
            ..Default::default()
        };
        common::session(&self.paddock, new).await
    }

    async fn events(&self, s: &Session) -> Vec<Event> {
        common::events(&self.paddock, s.id).await
    }

    async fn run(&self, s: &Session, text: &str) -> Vec<Event> {
        self.paddock
            .send_prompt(&Caller::local_operator(), s.id, text.into())
            .await
            .unwrap();
        self.wait_idle(s).await
    }

    async fn wait_idle(&self, s: &Session) -> Vec<Event> {
        common::wait_idle(&self.paddock, s.id).await
    }

    /// The permission request after the first `after` ones.
    async fn wait_for_permission(&self, s: &Session, after: usize) -> (String, String) {
        common::wait_for_permissions(&self.paddock, s.id, after + 1).await[after].clone()
    }

    fn workspace(&self, s: &Session) -> std::path::PathBuf {
        self.home.workspace(s.id)
    }

    /// Runs a command in the session's container as the sandbox user.
    fn sh(&self, s: &Session, script: &str) -> String {
        self.sh_with_input(s, script, "")
    }

    fn sh_with_input(&self, s: &Session, script: &str, input: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("docker")
            .args(["exec", "-i", &container(s), "bash", "-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn bash(command: &str) -> Value {
    json!({"tool_use": {"name": "Bash", "input": {"command": command, "description": "run it"}}})
}

/// Every file under `dir` (on the host) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn bash_writes_a_file_a_follow_up_resumes_and_the_key_stays_out() {
    let scenario = json!([
        {"expect": {"contains": "create made.txt", "tools": "Bash"},
         "reply": [{"text": "Creating it."}, bash("echo made-by-$MADE_BY > made.txt")]},
        {"expect": {"tool_result_contains": []}, "reply": "Created made.txt."},
        {"expect": {"contains": ["create made.txt", "Created made.txt.", "now the follow-up"]},
         "reply": "Resumed with the earlier exchange."}
    ]);
    let h = harness(scenario, "docker", &[]).await;
    let s = h.session("auto", None).await;

    let events = h.run(&s, "Please create made.txt").await;
    assert_eq!(last_status(&events).0, SessionStatus::Idle, "{events:#?}");
    assert_eq!(
        std::fs::read_to_string(h.workspace(&s).join("made.txt")).unwrap(),
        "made-by-claude\n"
    );
    let k = kinds(&events);
    for kind in [
        "user_message",
        "assistant_text",
        "tool_call",
        "tool_result",
        "usage",
    ] {
        assert!(k.contains(&kind), "{kind} missing: {k:?}");
    }
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::ToolCall { name, input, .. } if name == "Bash" && input["command"] == "echo made-by-$MADE_BY > made.txt")));
    let state = h.paddock.store.engine_state(s.id).await.unwrap().unwrap();
    assert!(state["claude_session_id"].is_string(), "{state}");

    // The follow-up resumes the same Claude Code conversation: the scripted
    // model checks the first exchange is in the request.
    let events = h.run(&s, "now the follow-up").await;
    assert_eq!(last_status(&events).0, SessionStatus::Idle, "{events:#?}");
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::AssistantText { text } if text == "Resumed with the earlier exchange.")));
    assert_eq!(h.model.turns_left(), 0);

    // The workspace and the CLI's home are filesystems of their own, the
    // home of 1 GiB: the CLI cannot fill the host's disk either.
    let sizes = h.sh(
        &s,
        "df --output=target,size -BM /workspace /paddock/home | tail -n +2",
    );
    let home_mb: u64 = sizes
        .lines()
        .find_map(|l| l.strip_prefix("/paddock/home"))
        .and_then(|size| size.trim().trim_end_matches('M').parse().ok())
        .unwrap_or_else(|| panic!("{sizes}"));
    assert!((900..=1024).contains(&home_mb), "{sizes}");
    assert!(sizes.contains("/workspace"), "{sizes}");

    // Metered by the proxy, one model call at a time.
    let after = h.paddock.store.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(after.turns, 3);
    assert!(after.cost_usd > 0.0 && after.input_tokens > 0);

    // The real key is nowhere: not in the container's config, environment
    // or files (its own filesystem, the tmpfs, workspace, home), not in the
    // host folders mounted into it, not in the transcript.
    let canary = h.canary.as_bytes();
    let inspect = std::process::Command::new("docker")
        .args(["inspect", &container(&s)])
        .output()
        .unwrap();
    assert!(!inspect.stdout.windows(canary.len()).any(|w| w == canary));
    // (The canary is searched for from here, never put on a command line in
    // the container, where /proc would show it.)
    let found = h.sh(&s, "cat /proc/*/environ /proc/*/cmdline 2>/dev/null");
    assert!(
        !found.contains(&h.canary),
        "the key is in a process of the container"
    );
    let found = h.sh_with_input(
        &s,
        "grep -rlsF --exclude-dir=proc --exclude-dir=sys -f /dev/stdin /",
        &h.canary,
    );
    assert_eq!(
        found.trim(),
        "",
        "the key is in files of the container: {found}"
    );
    let pattern = h.home.path().join("canary");
    std::fs::write(&pattern, &h.canary).unwrap();
    let export = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "docker export {} | grep -caF -f {}",
                container(&s),
                pattern.display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&export.stdout).trim(), "0");
    std::fs::remove_file(&pattern).unwrap();
    assert!(files_containing(&h.workspace(&s), canary).is_empty());
    assert!(files_containing(&h.home.path().join("cc"), canary).is_empty());
    let transcript = serde_json::to_string(&h.events(&s).await).unwrap();
    assert!(!transcript.contains(&h.canary));
}

/// The CLI's record of the conversation gone (its cleanup, a repository's
/// settings, the agent removing it): the prompt that found it gone says
/// so, and the next starts a new conversation carrying both prompts.
#[tokio::test]
async fn a_conversation_the_cli_no_longer_has_starts_again_with_the_prompts() {
    let scenario = json!([
        {"reply": "First."},
        {"expect": {"contains": ["the second prompt", "the third prompt"]}, "reply": "Started again."}
    ]);
    let h = harness(scenario, "docker", &[]).await;
    let s = h.session("auto", None).await;
    let events = h.run(&s, "the first prompt").await;
    assert_eq!(last_status(&events).0, SessionStatus::Idle, "{events:#?}");
    h.sh(&s, "rm -f /paddock/home/.claude/projects/*/*.jsonl");
    let events = h.run(&s, "the second prompt").await;
    assert_eq!(last_status(&events).0, SessionStatus::Error, "{events:#?}");
    let errors = errors(&events);
    assert!(
        errors.last().is_some_and(|m| m.contains("no longer has")),
        "{errors:?}"
    );
    let events = h.run(&s, "the third prompt").await;
    assert_eq!(last_status(&events).0, SessionStatus::Idle, "{events:#?}");
    assert_eq!(h.model.turns_left(), 0);
}

/// "Allow for this session" outlives the process that heard it: a Paddock
/// started again (or another replica) reads it back from the transcript,
/// and the CLI runs the tool without asking again.
#[tokio::test]
async fn a_tool_allowed_for_the_session_stays_allowed_after_a_restart() {
    let h = harness(
        json!([{"reply": [bash("echo again > again.txt")]}, {"reply": "Ran it."}]),
        "docker",
        &[],
    )
    .await;
    let s = h.session("ask", None).await;
    // What the process before this one recorded.
    for kind in [
        EventKind::PermissionRequest {
            request_id: "earlier".into(),
            tool_use_id: "toolu_earlier".into(),
            tool: "Bash".into(),
            input: json!({"command": "ls"}),
        },
        EventKind::PermissionDecision {
            request_id: "earlier".into(),
            decision: Decision::AllowSession,
            reason: None,
            by: Some("ada".into()),
        },
    ] {
        h.paddock.journal.record(s.id, kind).await.unwrap();
    }
    // And many decisions since, past a page of them.
    for n in 0..300 {
        let request_id = format!("later {n}");
        for kind in [
            EventKind::PermissionRequest {
                request_id: request_id.clone(),
                tool_use_id: format!("toolu_later_{n}"),
                tool: "Write".into(),
                input: json!({}),
            },
            EventKind::PermissionDecision {
                request_id,
                decision: Decision::Deny,
                reason: None,
                by: Some("ada".into()),
            },
        ] {
            h.paddock.journal.record(s.id, kind).await.unwrap();
        }
    }
    let events = h.run(&s, "again").await;
    let asked = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::PermissionRequest { .. }))
        .count();
    assert_eq!(
        asked,
        301,
        "only the earlier requests: {:?}",
        kinds(&events)
    );
    assert_eq!(last_status(&events).0, SessionStatus::Idle);
    assert_eq!(
        std::fs::read_to_string(h.workspace(&s).join("again.txt")).unwrap(),
        "again\n"
    );
}

/// A read-only session on a repository whose own settings allow Bash, run
/// a hook at start and name a helper command for the API key: the CLI
/// offers the model no tool that changes anything, runs no hook and no
/// helper (plan mode alone is only what the model is told; the hook ran
/// before, and the helper until the repository's settings were left
/// unread), and still reads the repository's CLAUDE.md.
#[tokio::test]
async fn a_read_only_session_changes_nothing_whatever_the_repository_says() {
    let scenario = json!([{
        "expect": {"contains": "the notes of the repository"},
        "reply": "I cannot change anything here."
    }]);
    let h = harness(scenario, "docker", &[]).await;
    let s = h.session("read-only", None).await;
    let settings = h.workspace(&s).join(".claude");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("settings.json"),
        json!({
            "permissions": {"allow": ["Bash"]},
            "hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "touch /workspace/hooked"}]}]},
            "apiKeyHelper": "touch /workspace/helped; echo key"
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        h.workspace(&s).join("CLAUDE.md"),
        "These are the notes of the repository.\n",
    )
    .unwrap();
    let events = h.run(&s, "Look around").await;
    assert_eq!(last_status(&events).0, SessionStatus::Idle, "{events:#?}");
    assert!(!h.workspace(&s).join("hooked").exists(), "a hook ran");
    assert!(!h.workspace(&s).join("helped").exists(), "a helper ran");
    let tools: Vec<String> = h.model.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    for changing in ["Bash", "Edit", "Write", "NotebookEdit"] {
        assert!(
            !tools.iter().any(|t| t == changing),
            "{changing}: {tools:?}"
        );
    }
    assert!(tools.iter().any(|t| t == "Read"), "{tools:?}");
}

#[tokio::test]
async fn permissions_deny_reaches_the_model_and_allow_runs_the_tool() {
    let scenario = json!([
        {"reply": [bash("echo allowed > allowed.txt")]},
        {"reply": "Ran it."},
        {"expect": {"contains": "second"}, "reply": [bash("echo nope > denied.txt")]},
        {"expect": {"tool_result_contains": "not on a Friday"}, "reply": "Understood, not running it."}
    ]);
    let h = harness(scenario, "docker", &[]).await;
    let s = h.session("ask", None).await;

    h.paddock
        .send_prompt(&Caller::local_operator(), s.id, "first".into())
        .await
        .unwrap();
    let (request, tool) = h.wait_for_permission(&s, 0).await;
    assert_eq!(tool, "Bash");
    // While the CLI waits, its processes hold the session token and never
    // the real key.
    let env = h.sh(&s, "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'");
    assert!(!env.contains(&h.canary));
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("ANTHROPIC_API_KEY="))
        .expect("the CLI's environment");
    assert_eq!(token.len(), 64);
    h.paddock
        .permissions
        .decide(s.id, &request, Decision::Allow, None, None)
        .unwrap();
    let events = h.wait_idle(&s).await;
    assert_eq!(last_status(&events).0, SessionStatus::Idle, "{events:#?}");
    assert!(h.workspace(&s).join("allowed.txt").exists());

    h.paddock
        .send_prompt(&Caller::local_operator(), s.id, "second".into())
        .await
        .unwrap();
    let (request, _) = h.wait_for_permission(&s, 1).await;
    h.paddock
        .permissions
        .decide(
            s.id,
            &request,
            Decision::Deny,
            Some("not on a Friday".into()),
            None,
        )
        .unwrap();
    let events = h.wait_idle(&s).await;
    assert_eq!(last_status(&events).0, SessionStatus::Idle, "{events:#?}");
    assert!(!h.workspace(&s).join("denied.txt").exists());
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::ToolResult { output, is_error: true, .. } if output.contains("not on a Friday"))));
    assert_eq!(h.model.turns_left(), 0);
}

#[tokio::test]
async fn a_cli_that_ends_while_waiting_for_a_decision_ends_the_run() {
    let scenario = json!([
        {"reply": [bash("echo never > never.txt")]},
        {"expect": {"contains": "again"}, "reply": "Here again."}
    ]);
    let h = harness(scenario, "docker", &[]).await;
    let s = h.session("ask", None).await;
    h.paddock
        .send_prompt(&Caller::local_operator(), s.id, "go".into())
        .await
        .unwrap();
    let (request, _) = h.wait_for_permission(&s, 0).await;
    // Killed in the sandbox (the agent, or the kernel out of memory):
    // the run ends then, not when the request expires a minute later.
    let killed = std::time::Instant::now();
    h.sh(&s, "pkill -KILL -f /opt/paddock/[c]laude");
    let events = h.wait_idle(&s).await;
    assert!(killed.elapsed() < Duration::from_secs(30));
    assert_eq!(last_status(&events).0, SessionStatus::Error, "{events:#?}");
    let errors = errors(&events);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("before finishing the prompt")),
        "{errors:?}"
    );
    // The request is withdrawn: deciding it now changes nothing.
    assert!(h
        .paddock
        .permissions
        .decide(s.id, &request, Decision::Allow, None, None)
        .is_err());
    assert!(!h.workspace(&s).join("never.txt").exists());
    let events = h.run(&s, "again").await;
    assert_eq!(
        last_status(&events),
        (SessionStatus::Idle, None),
        "{events:#?}"
    );
    assert_eq!(h.model.turns_left(), 0);
}

#[tokio::test]
async fn stop_interrupts_the_cli_and_revokes_its_token() {
    let scenario = json!([
        {"reply": [bash("for i in $(seq 600); do sleep 0.1; done; echo finished > late.txt")]},
        {"expect": {"contains": ["queued before the stop", "after the stop"]}, "reply": "Back."}
    ]);
    let h = harness(scenario, "docker", &[]).await;
    let s = h.session("auto", None).await;
    h.paddock
        .send_prompt(&Caller::local_operator(), s.id, "loop".into())
        .await
        .unwrap();
    common::wait_for_tool_call(&h.paddock, s.id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Queued behind the loop: Stop drops the queue, and it comes with the
    // next prompt (the CLI once got it in that one's place, and each later
    // prompt the one before it).
    h.paddock
        .send_prompt(
            &Caller::local_operator(),
            s.id,
            "queued before the stop".into(),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    h.paddock
        .stop(&Caller::local_operator(), s.id)
        .await
        .unwrap();
    let events = h.wait_idle(&s).await;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        last_status(&events),
        (SessionStatus::Idle, Some("Stopped.".into())),
        "{events:#?}"
    );
    assert_eq!(h.sh(&s, "pgrep -fc /opt/paddock/claude").trim(), "0");
    assert!(!h.workspace(&s).join("late.txt").exists());
    // The run is over: its socket no longer answers.
    assert!(send(&h.paddock, &s, "POST", "/v1/messages", None, "{}")
        .await
        .is_err());
    let events = h.run(&s, "after the stop").await;
    assert_eq!(
        last_status(&events),
        (SessionStatus::Idle, None),
        "{events:#?}"
    );
    assert_eq!(h.model.turns_left(), 0);
}

#[tokio::test]
async fn a_rejected_upstream_key_is_a_clear_session_error() {
    let scenario = json!([{"reply": "never"}]);
    let h = harness(scenario, "docker", &["--anthropic-api-key=sk-wrong"]).await;
    let s = h.session("auto", None).await;
    let events = h.run(&s, "hello").await;
    assert_eq!(last_status(&events).0, SessionStatus::Error, "{events:#?}");
    let errors = errors(&events);
    assert!(
        errors
            .iter()
            .any(|m| m.starts_with("Claude Code stopped") && m.contains("401")),
        "{errors:?}"
    );
}

/// One HTTP/1.1 request over the session's proxy socket.
async fn send(
    paddock: &Paddock,
    s: &Session,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, Value), String> {
    let socket = paddock.proxy.socket_dir(s.id).join(SOCKET_NAME);
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01");
    if let Some(token) = token {
        request = request.header("x-api-key", token);
    }
    let response = sender
        .send_request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

/// A whole Messages request over HTTP/1.1, as bytes go on the socket.
fn raw_message(token: &str, stream: bool) -> String {
    let body = message_body(stream);
    format!(
        "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\nx-api-key: {token}\r\n\
         content-type: application/json\r\nanthropic-version: 2023-06-01\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// What the session is charged once it is charged anything (the meter
/// records as an answer ends, apart), as `count` reads it; 0 after 5 s.
async fn first_charge(paddock: &Paddock, s: &Session, count: fn(&Session) -> i64) -> i64 {
    for _ in 0..50 {
        let now = paddock.store.get_session(s.id).await.unwrap().unwrap();
        if count(&now) > 0 {
            return count(&now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    0
}

fn message_body(stream: bool) -> String {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    })
    .to_string()
}

#[tokio::test]
async fn the_proxy_refuses_wrong_expired_and_revoked_tokens_and_other_paths() {
    let scenario = json!([
        {"reply": "streamed", "usage": {"input_tokens": 1000, "output_tokens": 500}},
        {"reply": "plain", "usage": {"input_tokens": 1000, "output_tokens": 500}},
        {"reply": "over budget"}
    ]);
    // Local sandboxes: the proxy needs no container.
    let h = harness(scenario, "local", &[]).await;
    let a = h.session("auto", Some(0.02)).await;
    let b = h.session("auto", None).await;
    let lease = h.paddock.proxy.open(a.id).await.unwrap();
    let other = h.paddock.proxy.open(b.id).await.unwrap();
    let body = message_body(true);

    // No token, a wrong one, and another session's are all refused.
    for token in [
        None,
        Some("0".repeat(64).as_str()),
        Some(other.token.as_str()),
    ] {
        let (status, answer) = send(&h.paddock, &a, "POST", "/v1/messages", token, &body)
            .await
            .unwrap();
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["error"]["type"], "authentication_error");
    }
    // Only the two Messages paths pass, whatever the token.
    for (method, path) in [
        ("GET", "/v1/models"),
        ("POST", "/v1/complete"),
        ("POST", "/v1/messages/batches"),
        ("POST", "/_scripted"),
    ] {
        let (status, answer) = send(&h.paddock, &a, method, path, Some(&lease.token), "{}")
            .await
            .unwrap();
        assert!(
            status == 404 || status == 405,
            "{method} {path}: {status} {answer}"
        );
    }
    // What would have Anthropic's servers reach past the closed sandbox
    // (tools they run, MCP servers they connect to), and what cannot be
    // read as a request, are refused on both paths.
    let asking = |extra: Value| {
        let mut body: Value = serde_json::from_str(&message_body(false)).unwrap();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body.to_string()
    };
    let custom = json!({"name": "Read", "input_schema": {"type": "object"}});
    for (body, why) in [
        (
            asking(json!({"tools": [custom, {"type": "web_search_20250305", "name": "web_search"}]})),
            "runs on Anthropic's servers",
        ),
        (
            asking(json!({"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]})),
            "runs on Anthropic's servers",
        ),
        (
            asking(json!({"mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "x"}]})),
            "MCP servers",
        ),
        (
            asking(json!({"messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://collect.example/?d=secret"}}
            ]}]})),
            "from a URL",
        ),
        (
            r#"{"model": "m", "tools": [], "tools": [{"type": "code_execution_20250825", "name": "c"}]}"#.to_owned(),
            "not a Messages request",
        ),
        ("not json".to_owned(), "not a Messages request"),
    ] {
        for path in ["/v1/messages", "/v1/messages/count_tokens"] {
            let (status, answer) = send(&h.paddock, &a, "POST", path, Some(&lease.token), &body)
                .await
                .unwrap();
            assert_eq!(status, 400, "{path} {body}: {answer}");
            assert_eq!(answer["error"]["type"], "invalid_request_error");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(why), "{message}");
        }
    }
    assert_eq!(
        h.model.requests().len(),
        0,
        "nothing refused reached upstream"
    );

    // The right token passes, streamed and not; usage is metered.
    let (status, answer) = send(
        &h.paddock,
        &a,
        "POST",
        "/v1/messages",
        Some(&lease.token),
        &body,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.as_str().unwrap().contains("event: message_stop"));
    let (status, answer) = send(
        &h.paddock,
        &a,
        "POST",
        "/v1/messages/count_tokens",
        Some(&lease.token),
        &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["input_tokens"].is_u64());
    // Tools the client runs (custom, and Anthropic-defined ones the
    // sandbox runs) pass.
    let client_run = json!({"tools": [custom, {"type": "bash_20250124", "name": "bash"}]});
    let (status, answer) = send(
        &h.paddock,
        &a,
        "POST",
        "/v1/messages?beta=true",
        Some(&lease.token),
        &asking(client_run),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["content"][0]["text"], "plain");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metered = h.paddock.store.get_session(a.id).await.unwrap().unwrap();
    assert_eq!(
        (metered.turns, metered.input_tokens, metered.output_tokens),
        (2, 2000, 1000)
    );
    assert!((metered.cost_usd - 2.0 * (0.003 + 0.0075)).abs() < 1e-9);
    assert_eq!(
        kinds(&h.events(&a).await)
            .iter()
            .filter(|k| **k == "usage")
            .count(),
        2
    );

    // Over budget: an Anthropic-shaped refusal, and nothing sent upstream.
    let (status, answer) = send(
        &h.paddock,
        &a,
        "POST",
        "/v1/messages",
        Some(&lease.token),
        &body,
    )
    .await
    .unwrap();
    assert_eq!(status, 402, "{answer}");
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["error"]["type"], "billing_error");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("budget"));
    assert_eq!(h.model.turns_left(), 1);

    // Revoked when its run ends: refused, even while the next run's socket
    // is open.
    let token = lease.token.clone();
    h.paddock.proxy.close(a.id, lease).await;
    let next = h.paddock.proxy.open(a.id).await.unwrap();
    let (status, _) = send(
        &h.paddock,
        &a,
        "POST",
        "/v1/messages/count_tokens",
        Some(&token),
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    h.paddock.proxy.close(a.id, next).await;
}

/// An answer that ends before its final usage (the upstream stream broke,
/// or the sandbox closed it once it had read what it wanted) is charged
/// for what streamed, not the one token its start said.
#[tokio::test]
async fn an_answer_cut_before_its_usage_is_charged_for_what_streamed() {
    let scenario = json!([
        {"reply": "word ".repeat(8000), "chunk": 400, "stream_error": {"after": 12}}
    ]);
    let h = harness(scenario, "local", &[]).await;
    let s = h.session("auto", None).await;
    let lease = h.paddock.proxy.open(s.id).await.unwrap();
    let (status, answer) = send(
        &h.paddock,
        &s,
        "POST",
        "/v1/messages",
        Some(&lease.token),
        &message_body(true),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.as_str().unwrap().contains("message_delta"));
    let charged = first_charge(&h.paddock, &s, |s| s.output_tokens).await;
    // Some ten chunks of 400 characters streamed: about a thousand tokens
    // (the events' wrapping not counted).
    assert!(
        (500..=1500).contains(&charged),
        "charged {charged} output tokens"
    );
    h.paddock.proxy.close(s.id, lease).await;
}

#[tokio::test]
async fn the_proxy_refuses_an_expired_token() {
    let h = harness(
        json!([{"reply": "x"}]),
        "local",
        &["--claude-code-run-secs=1"],
    )
    .await;
    let s = h.session("auto", None).await;
    let lease = h.paddock.proxy.open(s.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, answer) = send(
        &h.paddock,
        &s,
        "POST",
        "/v1/messages",
        Some(&lease.token),
        &message_body(true),
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "{answer}");
    assert_eq!(h.model.requests().len(), 0);
}

#[tokio::test]
async fn local_sandboxes_refuse_the_claude_code_engine_plainly() {
    let h = harness(json!([{"reply": "x"}]), "local", &[]).await;
    let spec = NewSession {
        name: "cc".into(),
        engine: Some(Engine::ClaudeCode),
        ..Default::default()
    };
    match h
        .paddock
        .create_session(&Caller::local_operator(), spec)
        .await
    {
        Err(app::domain::AppError::Invalid(m)) => assert!(m.contains("Docker"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(h
        .paddock
        .store
        .list_sessions(None)
        .await
        .unwrap()
        .is_empty());
}

/// A connection to the session's proxy socket that sends `head` and then
/// nothing.
async fn stalled(paddock: &Paddock, s: &Session, head: &str) -> tokio::net::UnixStream {
    use tokio::io::AsyncWriteExt;
    let socket = paddock.proxy.socket_dir(s.id).join(SOCKET_NAME);
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// One sandbox's request bodies held at once are bounded: one of 32 MB
/// coming slowly takes its share, and another request is put off (503)
/// rather than held too.
#[tokio::test]
async fn a_sandboxs_request_bodies_share_a_bounded_room() {
    use tokio::io::AsyncWriteExt;
    let h = harness(json!([]), "local", &["--client-stall-secs=2"]).await;
    let s = h.session("auto", None).await;
    let lease = h.paddock.proxy.open(s.id).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\nx-api-key: {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        lease.token,
        32 * 1024 * 1024
    );
    let mut holders = vec![stalled(&h.paddock, &s, &head).await];
    // Each comes on, a byte at a time, within the stall.
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            for held in &mut holders {
                let _ = held.write_all(b" ").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, answer) = send(
        &h.paddock,
        &s,
        "POST",
        "/v1/messages",
        Some(&lease.token),
        &message_body(false),
    )
    .await
    .unwrap();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["type"], "overloaded_error");
    assert_eq!(h.model.requests().len(), 0);
    trickle.abort();
    h.paddock.proxy.close(s.id, lease).await;
}

#[tokio::test]
async fn the_proxy_bounds_what_a_sandbox_holds_of_the_server() {
    use tokio::io::AsyncReadExt;
    let scenario = json!([{"reply": "after the wait"}]);
    let h = harness(scenario, "local", &["--client-stall-secs=1"]).await;
    let s = h.session("auto", None).await;
    let lease = h.paddock.proxy.open(s.id).await.unwrap();

    // A body over what the API takes, said up front: refused before any
    // of it is read, and nothing goes upstream.
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\nx-api-key: {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        lease.token,
        64 * 1024 * 1024
    );
    let mut refused = stalled(&h.paddock, &s, &head).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), refused.read_to_end(&mut answer))
        .await
        .expect("the proxy answers and closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("request_too_large"), "{answer}");

    // A body that stops coming: given up after the stall, told as the
    // sandbox's own bad request.
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\nx-api-key: {}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\"",
        lease.token
    );
    let mut cut = stalled(&h.paddock, &s, &head).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), cut.read_to_end(&mut answer))
        .await
        .expect("the proxy answers a stalled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // A body that comes a byte at a time, each within the stall: given up
    // once the stall has passed since it began, not held for as long as
    // the sandbox keeps it coming.
    let mut trickled = stalled(&h.paddock, &s, &head).await;
    let (answer, took) = common::trickle_until_answered(&mut trickled).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(took < Duration::from_secs(10));

    // As many connections as a session's socket takes, each holding a
    // request's first line or nothing: the next request waits, and goes
    // through once they are given up for sending nothing more.
    let mut held = Vec::new();
    for i in 0..32 {
        let head = if i % 2 == 0 {
            "POST /v1/messages HTTP/1.1\r\n"
        } else {
            ""
        };
        held.push(stalled(&h.paddock, &s, head).await);
    }
    let waited = std::time::Instant::now();
    let (status, answer) = send(
        &h.paddock,
        &s,
        "POST",
        "/v1/messages",
        Some(&lease.token),
        &message_body(false),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(waited.elapsed() >= Duration::from_millis(500));
    for mut connection in held {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), connection.read_to_end(&mut rest));
        assert!(read.await.is_ok(), "a held connection was never closed");
    }
    assert_eq!(
        h.model.requests().len(),
        1,
        "only the whole request went on"
    );
}

/// A harness whose "CLI" is a shell script of the test's, run in the
/// sandbox as the CLI is (what runs there is the sandbox's to write).
async fn with_fake_cli(script: &str) -> (tempfile::TempDir, Harness) {
    use std::os::unix::fs::PermissionsExt;
    let fake = tempfile::tempdir().unwrap();
    let bin = fake.path().join("claude");
    std::fs::write(&bin, format!("#!/bin/sh\n{script}")).unwrap();
    for path in [bin.as_path(), fake.path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let flag = format!("--claude-code-bin={}", bin.display());
    let h = harness(json!([]), "docker", &[&flag]).await;
    (fake, h)
}

#[tokio::test]
async fn a_cli_that_prints_a_line_without_end_is_stopped() {
    // What runs as the CLI in the sandbox is the sandbox's: here, a program
    // that prints 20 MB without a newline, then waits.
    let (_fake, h) = with_fake_cli("head -c 20000000 /dev/zero | tr '\\0' a\nsleep 600\n").await;
    let s = h.session("auto", None).await;
    let events = h.run(&s, "hello").await;
    assert_eq!(last_status(&events).0, SessionStatus::Error, "{events:#?}");
    let errors = errors(&events);
    assert!(
        errors.iter().any(|m| m.contains("a line over 16 MiB")),
        "{errors:?}"
    );
    assert_eq!(h.sh(&s, "pgrep -fc /opt/paddock/claude").trim(), "0");
}

#[tokio::test]
async fn what_a_cli_prints_is_recorded_within_bounds_and_its_ids_checked() {
    // Any process of the session can write into the CLI's output: here
    // the CLI itself says it began a conversation whose id is a flag, then
    // prints a 3 MB tool call id (a model's longest answer is a fraction
    // of it).
    let (_fake, h) = with_fake_cli(
        "echo \"$*\" >> /tmp/cli-args\n\
         printf '%s\\n' '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"--settings=/tmp/x\"}'\n\
         printf '%s' '{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"short\"},{\"type\":\"tool_use\",\"name\":\"x\",\"input\":{},\"id\":\"'\n\
         head -c 3000000 /dev/zero | tr '\\0' a\n\
         printf '%s\\n' '\"}]}}'\nsleep 600\n",
    )
    .await;
    let s = h.session("auto", None).await;
    let events = h.run(&s, "hello").await;
    assert_eq!(last_status(&events).0, SessionStatus::Error, "{events:#?}");
    let errors = errors(&events);
    assert!(
        errors
            .iter()
            .any(|m| m.contains("printed more than a run records: a block of 2929 KiB")),
        "{errors:?}"
    );
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AssistantText { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["short"], "the block over the bound is not stored");
    assert_eq!(h.sh(&s, "pgrep -fc /opt/paddock/claude").trim(), "0");
    // The id was not a conversation's: the next run resumes nothing.
    h.run(&s, "again").await;
    let args = h.sh(&s, "cat /tmp/cli-args");
    assert_eq!(args.lines().count(), 2, "{args}");
    assert!(!args.contains("--resume"), "{args}");
}

/// What the CLI prints as live fragments reaches the session's viewers
/// within bounds: one far longer than a model's, or of a block far past a
/// message's, is not passed on (any process of the sandbox can write into
/// the CLI's output, and a viewer's channel holds what it has not read).
#[tokio::test]
async fn live_fragments_from_the_cli_are_bounded() {
    let delta = |index: usize, text: &str| {
        format!(
            r#"{{"type":"stream_event","event":{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":"{text}"}}}}}}"#
        )
    };
    let script = format!(
        "printf '%s\\n' '{}' '{}' '{}' '{}'\n",
        delta(0, "shown"),
        delta(0, &"x".repeat(70_000)),
        delta(300, "far"),
        delta(1, "also shown"),
    );
    let (_fake, h) = with_fake_cli(&script).await;
    let s = h.session("auto", None).await;
    let mut live = h.paddock.hub.subscribe(s.id);
    h.run(&s, "hello").await;
    let mut shown = Vec::new();
    while let Ok(message) = live.try_recv() {
        if let server::hub::HubMessage::Delta(d) = message {
            shown.push(d.text.clone());
        }
    }
    assert_eq!(shown, ["shown", "also shown"]);
}

/// A run's proxy connections end with it: one still streaming an answer,
/// which a process of the sandbox may leave unread to hold it past the run
/// (and past the budget's next look), is cut once the drain has passed.
#[tokio::test]
async fn a_runs_proxy_connections_end_with_it() {
    use tokio::io::AsyncReadExt;
    // Fifty deltas half a second apart: 25 s to its end.
    let scenario = json!([{"reply": "word ".repeat(200), "chunk": 20, "delay_ms": 500}]);
    let h = harness(scenario, "local", &[]).await;
    let s = h.session("auto", None).await;
    let lease = h.paddock.proxy.open(s.id).await.unwrap();
    let head = raw_message(&lease.token, true);
    let mut held = stalled(&h.paddock, &s, &head).await;
    let mut status = [0u8; 12];
    held.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    h.paddock.proxy.close(s.id, lease).await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), held.read_to_end(&mut rest))
        .await
        .expect("the connection is cut")
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("content_block_delta"), "{rest}");
    assert!(!rest.contains("message_stop"), "{rest}");
}

/// A call asked whole (not streamed) whose answer has not begun when its
/// connection is cut (here the run's end; the sandbox hanging up alike) is
/// charged for its input all the same: upstream made it whole, and a
/// sandbox cutting each call short would otherwise pay nothing.
#[tokio::test]
async fn a_whole_answer_cut_before_it_began_is_charged() {
    // Fifty events half a second apart: the answer begins after 25 s.
    let scenario = json!([{"reply": "word ".repeat(200), "chunk": 20, "delay_ms": 500}]);
    let h = harness(scenario, "local", &[]).await;
    let s = h.session("auto", None).await;
    let lease = h.paddock.proxy.open(s.id).await.unwrap();
    let body = message_body(false);
    let head = raw_message(&lease.token, false);
    let held = stalled(&h.paddock, &s, &head).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.paddock.proxy.close(s.id, lease).await;
    drop(held);
    let charged = first_charge(&h.paddock, &s, |s| s.input_tokens).await;
    // A rough count of the request: a quarter of its bytes.
    assert_eq!(charged, body.len().div_ceil(4) as i64);
}
