//! The claude-code engine: the real Claude Code CLI runs inside the session's
//! closed container, driven the way the Claude Agent SDK drives it, so users
//! get its own tools, skills, subagents and compaction.
//!
//! Each prompt starts one CLI process in the sandbox (`claude -p` with
//! stream-json in and out, `--permission-prompt-tool stdio`), resuming the
//! session's Claude Code conversation with `--resume <id>` (the id from its
//! first `system/init`, kept in `sessions.engine_state`; the CLI's transcripts
//! live in a per-session home folder on the host, mounted into the sandbox,
//! so they outlive the container). The container has no network: the CLI
//! reaches the model through socat, relaying a loopback port to the
//! credential proxy's Unix socket, with a per-run token as its only
//! credential (see `crate::proxy`).
//!
//! Every stream-json message becomes Paddock events in the same log as the
//! native engine's; `can_use_tool` control requests become Paddock permission
//! requests decided in the dashboard; Stop sends an `interrupt` control
//! request (and kills the process group if the CLI does not end in time).

use super::{budget_refusal, denial, lock, RunError};
use crate::backend::Paddock;
use crate::proxy::{Lease, SOCKET_DIR, SOCKET_NAME};
use crate::sandbox::SANDBOX_UID;
use crate::sandbox::{CappedOutput, Mount, OutputStream, SandboxError, SpawnRequest, Workspace};
use crate::tools::shell_quote;
use app::model::{Delta, DeltaKind, EventKind, PermissionMode, Session, SessionId};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Where the CLI binary is mounted, read-only.
const CLI: &str = "/opt/paddock/claude";
/// The CLI's home in the sandbox: a host folder, so `--resume` survives the
/// container.
const HOME: &str = "/paddock/home";
/// The loopback port socat listens on inside the sandbox.
const RELAY_PORT: u16 = 4180;
/// How long the CLI gets to end after an interrupt or its result.
const GRACE: Duration = Duration::from_secs(10);
/// Kept of the CLI's stderr, for the error message when it fails.
const STDERR_CAP: usize = 8 * 1024;

/// What the engine remembers of a session between prompts.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CliState {
    /// The Claude Code session to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claude_session_id: Option<String>,
    /// `seq` of the last prompt handed to the CLI.
    #[serde(default)]
    sent_seq: i64,
}

/// The CLI's `--permission-mode` for a Paddock permission mode.
fn cli_permission_mode(mode: PermissionMode) -> &'static str {
    match mode {
        // The CLI asks (through us) before edits and commands.
        PermissionMode::Ask => "default",
        PermissionMode::AcceptEdits => "acceptEdits",
        // The sandbox is the boundary; nothing to ask.
        PermissionMode::Auto => "bypassPermissions",
        // Plan mode reads and reasons but changes nothing.
        PermissionMode::ReadOnly => "plan",
    }
}

/// The shell command run in the sandbox: socat relays a loopback port to
/// the proxy's socket, and once it listens the CLI replaces the shell.
fn command(args: &[String]) -> String {
    let socket = format!("{SOCKET_DIR}/{SOCKET_NAME}");
    let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    format!(
        "socat TCP-LISTEN:{RELAY_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{socket} 2>/dev/null &\n\
         for _ in $(seq 200); do (: </dev/tcp/127.0.0.1/{RELAY_PORT}) 2>/dev/null && break; sleep 0.025; done\n\
         exec {CLI} {}",
        args.join(" ")
    )
}

/// Text of a `tool_result` block's content: a string, or text blocks.
fn tool_result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn send_line(stdin: &mut Stdin, message: &Value) -> Result<(), RunError> {
    let mut line = message.to_string();
    line.push('\n');
    stdin
        .write_all(line.as_bytes())
        .await
        .and(stdin.flush().await)
        .map_err(|e| RunError::Failed(format!("Claude Code stopped reading its input: {e}")))
}

type Stdin = std::pin::Pin<Box<dyn AsyncWrite + Send>>;

/// How the CLI's run ended, as far as its messages told.
#[derive(Default)]
struct Outcome {
    result: Option<Result<(), String>>,
    interrupted: bool,
    /// A failure retrying cannot mend (the CLI would retry it for minutes).
    fatal: Option<String>,
}

impl Paddock {
    /// What a claude-code sandbox mounts: the CLI (read-only), the session's
    /// Claude Code home, and the proxy's socket folder (read-only).
    pub(crate) fn claude_code_mounts(
        &self,
        session: SessionId,
    ) -> Result<Vec<Mount>, SandboxError> {
        let bin = self.config.claude_code_bin();
        if !bin.is_file() {
            return Err(SandboxError::Failed(format!(
                "the Claude Code CLI is not installed at {}: run scripts/setup, or set PADDOCK_CLAUDE_CODE_BIN",
                bin.display()
            )));
        }
        let home = self.proxy.session_dir(session).join("home");
        Workspace::new(home.clone(), Some(SANDBOX_UID))
            .create()
            .map_err(|e| SandboxError::Failed(format!("cannot create {}: {e}", home.display())))?;
        let socket_dir = self.proxy.socket_dir(session);
        std::fs::create_dir_all(&socket_dir).map_err(|e| {
            SandboxError::Failed(format!("cannot create {}: {e}", socket_dir.display()))
        })?;
        Ok(vec![
            Mount {
                host: bin,
                target: CLI,
                read_only: true,
            },
            Mount {
                host: home,
                target: HOME,
                read_only: false,
            },
            Mount {
                host: socket_dir,
                target: SOCKET_DIR,
                read_only: true,
            },
        ])
    }

    /// Runs the oldest prompt the CLI has not been given yet.
    #[tracing::instrument(skip(self, s, cancel), fields(session = %s.id))]
    pub(crate) async fn run_claude_code(
        &self,
        s: Session,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let failed = |e: &dyn std::fmt::Display| RunError::Failed(e.to_string());
        self.start_sandbox(&s)
            .await
            .map_err(|e| RunError::Failed(format!("The sandbox could not start: {e}")))?;
        let mut state: CliState = match self
            .store
            .engine_state(s.id)
            .await
            .map_err(|e| failed(&e))?
        {
            Some(v) => serde_json::from_value(v).unwrap_or_default(),
            None => CliState::default(),
        };
        let events = self
            .store
            .events_after(s.id, state.sent_seq, i64::MAX)
            .await
            .map_err(|e| failed(&e))?;
        let Some((seq, prompt)) = events.iter().find_map(|e| match &e.kind {
            EventKind::UserMessage { text } => Some((e.seq, text.clone())),
            _ => None,
        }) else {
            return Ok(());
        };
        let lease = self.open_proxy(s.id).await.map_err(|e| failed(&e))?;
        let outcome = self
            .drive_cli(&s, &mut state, seq, &prompt, &lease, cancel)
            .await;
        self.close_proxy(s.id, lease).await;
        outcome
    }

    fn cli_args(&self, s: &Session, state: &CliState) -> Result<Vec<String>, RunError> {
        let mut args: Vec<String> = [
            "-p",
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--permission-prompt-tool",
            "stdio",
            "--permission-mode",
            cli_permission_mode(s.permission_mode),
            "--model",
            &s.model,
            "--max-turns",
        ]
        .map(str::to_owned)
        .into();
        args.push(self.config.max_turns.to_string());
        if !s.system_prompt.is_empty() {
            if s.system_prompt.contains('\0') {
                return Err(RunError::Failed(
                    "The system prompt holds a NUL byte, which no program argument can.".into(),
                ));
            }
            args.extend(["--append-system-prompt".to_owned(), s.system_prompt.clone()]);
        }
        let allowed: Vec<String> = lock(&self.engine.allowed)
            .get(&s.id)
            .map(|tools| tools.iter().cloned().collect())
            .unwrap_or_default();
        if !allowed.is_empty() {
            args.extend(["--allowedTools".to_owned(), allowed.join(",")]);
        }
        if let Some(id) = &state.claude_session_id {
            args.extend(["--resume".to_owned(), id.clone()]);
        }
        Ok(args)
    }

    async fn drive_cli(
        &self,
        s: &Session,
        state: &mut CliState,
        seq: i64,
        prompt: &str,
        lease: &Lease,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let request = SpawnRequest {
            command: command(&self.cli_args(s, state)?),
            env: vec![
                (
                    "ANTHROPIC_BASE_URL".into(),
                    format!("http://127.0.0.1:{RELAY_PORT}"),
                ),
                ("ANTHROPIC_API_KEY".into(), lease.token.clone()),
                (
                    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                    "1".into(),
                ),
                ("HOME".into(), HOME.into()),
            ],
            timeout: Duration::from_secs(self.config.claude_code_run_secs),
        };
        let mut process = self
            .sandbox
            .spawn(s.id, &request)
            .await
            .map_err(|e| RunError::Failed(format!("Claude Code could not start: {e}")))?;
        let user = json!({
            "type": "user",
            "message": {"role": "user", "content": prompt},
            "parent_tool_use_id": null,
            "session_id": "default",
        });
        let sent = send_line(&mut process.stdin, &user).await;
        if sent.is_ok() {
            state.sent_seq = seq;
            self.save_state(s.id, state).await?;
        }

        let mut outcome = Outcome::default();
        let mut stderr = CappedOutput::new(STDERR_CAP);
        let mut pending: Vec<u8> = Vec::new();
        let mut seq_hint = s.last_seq;
        let mut ending: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let mut killed = false;
        loop {
            let deadline = async {
                match ending.as_mut() {
                    Some(sleep) => sleep.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = process.output.next() => match item {
                    None => break,
                    Some(Err(e)) => {
                        process.control.kill().await;
                        return Err(RunError::Failed(format!("Lost Claude Code's output: {e}")));
                    }
                    Some(Ok((OutputStream::Stderr, bytes))) => stderr.push(&bytes),
                    Some(Ok((OutputStream::Stdout, bytes))) => {
                        pending.extend_from_slice(&bytes);
                        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=end).collect();
                            let Ok(message) = serde_json::from_slice::<Value>(&line) else {
                                continue;
                            };
                            self.on_message(s, state, &message, &mut process.stdin, &mut outcome, &mut seq_hint, cancel)
                                .await?;
                            if outcome.fatal.is_some() && !killed {
                                killed = true;
                                process.control.kill().await;
                            }
                            if outcome.result.is_some() && ending.is_none() {
                                // One prompt per process: end its input.
                                let _ = process.stdin.shutdown().await;
                                ending = Some(Box::pin(tokio::time::sleep(GRACE)));
                            }
                        }
                    }
                },
                () = cancel.cancelled(), if !outcome.interrupted => {
                    outcome.interrupted = true;
                    let interrupt = json!({
                        "type": "control_request",
                        "request_id": format!("paddock_{}", uuid::Uuid::now_v7().simple()),
                        "request": {"subtype": "interrupt"},
                    });
                    let _ = send_line(&mut process.stdin, &interrupt).await;
                    ending = Some(Box::pin(tokio::time::sleep(GRACE)));
                }
                () = deadline, if !killed => {
                    killed = true;
                    process.control.kill().await;
                }
            }
        }
        let exit = process
            .control
            .exit_code()
            .await
            .map_err(|e| RunError::Failed(format!("Cannot read how Claude Code ended: {e}")))?;
        if outcome.interrupted {
            return Err(RunError::Stopped);
        }
        if let Some(message) = outcome.fatal {
            return Err(RunError::Failed(format!("Claude Code stopped: {message}")));
        }
        sent?;
        match (outcome.result, exit) {
            (Some(Err(message)), _) => Err(RunError::Failed(format!("Claude Code: {message}"))),
            (Some(Ok(())), _) => Ok(()),
            (None, code) => {
                let how = match code {
                    Some(code) => format!("exited with status {code}"),
                    None => "was killed".to_owned(),
                };
                let err = stderr.finish();
                let err = err.trim();
                Err(RunError::Failed(if err.is_empty() {
                    format!("Claude Code {how} before finishing the prompt.")
                } else {
                    format!("Claude Code {how} before finishing the prompt: {err}")
                }))
            }
        }
    }

    async fn save_state(&self, session: SessionId, state: &CliState) -> Result<(), RunError> {
        let value = serde_json::to_value(state).map_err(|e| RunError::Failed(e.to_string()))?;
        self.store
            .set_engine_state(session, &value)
            .await
            .map_err(|e| RunError::Failed(e.to_string()))
    }

    /// Turns one stream-json message into events, answers control requests.
    #[allow(clippy::too_many_arguments)]
    async fn on_message(
        &self,
        s: &Session,
        state: &mut CliState,
        message: &Value,
        stdin: &mut Stdin,
        outcome: &mut Outcome,
        seq_hint: &mut i64,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let session = s.id;
        let record = |kind: EventKind| {
            let me = self.clone();
            async move { me.record(session, kind).await.map(|e| e.seq) }
        };
        match message["type"].as_str() {
            // Under --resume the CLI may report another id; the one first
            // resumed from stays the handle.
            Some("system") if message["subtype"] == "init" && state.claude_session_id.is_none() => {
                if let Some(id) = message["session_id"].as_str() {
                    state.claude_session_id = Some(id.to_owned());
                    self.save_state(session, state).await?;
                }
            }
            Some("system") if message["subtype"] == "api_retry" => {
                let error = message["error"].as_str().unwrap_or("error");
                outcome.fatal = match message["error_status"].as_u64() {
                    Some(status @ (401 | 403)) => Some(format!(
                        "its model calls are refused ({status} {error}): the credential Paddock \
                         forwards (ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN) is not accepted by \
                         ANTHROPIC_BASE_URL, or the run outlived its proxy token."
                    )),
                    Some(402) => Some(
                        self.store
                            .get_session(session)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|now| budget_refusal(&now))
                            .unwrap_or_else(|| {
                                format!("its model calls are refused (402 {error}).")
                            }),
                    ),
                    _ => None,
                };
            }
            Some("stream_event") => {
                let event = &message["event"];
                if event["type"] != "content_block_delta" {
                    return Ok(());
                }
                let delta = &event["delta"];
                let (kind, text) = match delta["type"].as_str() {
                    Some("text_delta") => (DeltaKind::Text, &delta["text"]),
                    Some("thinking_delta") => (DeltaKind::Thinking, &delta["thinking"]),
                    Some("input_json_delta") => (DeltaKind::ToolInput, &delta["partial_json"]),
                    _ => return Ok(()),
                };
                self.hub.publish_delta(Delta {
                    session_id: session,
                    seq_hint: *seq_hint,
                    block: event["index"].as_u64().unwrap_or(0) as usize,
                    kind,
                    text: text.as_str().unwrap_or_default().to_owned(),
                });
            }
            Some("assistant") => {
                for block in message["message"]["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let kind = match block["type"].as_str() {
                        Some("text") => EventKind::AssistantText {
                            text: block["text"].as_str().unwrap_or_default().to_owned(),
                        },
                        Some("thinking") => EventKind::Thinking {
                            text: block["thinking"].as_str().unwrap_or_default().to_owned(),
                        },
                        Some("tool_use") => EventKind::ToolCall {
                            id: block["id"].as_str().unwrap_or_default().to_owned(),
                            name: block["name"].as_str().unwrap_or_default().to_owned(),
                            input: block["input"].clone(),
                        },
                        _ => continue,
                    };
                    *seq_hint = record(kind).await?;
                }
            }
            Some("user") => {
                for block in message["message"]["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if block["type"] != "tool_result" {
                        continue;
                    }
                    let mut output = CappedOutput::new(self.engine_limits().output_cap);
                    output.push(tool_result_text(&block["content"]).as_bytes());
                    let truncated = output.truncated();
                    let kind = EventKind::ToolResult {
                        id: block["tool_use_id"].as_str().unwrap_or_default().to_owned(),
                        output: output.finish(),
                        is_error: block["is_error"].as_bool().unwrap_or(false),
                        truncated,
                    };
                    *seq_hint = record(kind).await?;
                }
            }
            Some("control_request") => {
                let request_id = message["request_id"].clone();
                let request = &message["request"];
                let response = if request["subtype"] == "can_use_tool" {
                    let tool = request["tool_name"].as_str().unwrap_or_default();
                    let input = &request["input"];
                    let tool_use_id = request["tool_use_id"].as_str().unwrap_or_default();
                    match self
                        .ask_permission(session, tool_use_id, tool, input, cancel)
                        .await
                    {
                        Ok((true, _)) => json!({"behavior": "allow", "updatedInput": input}),
                        Ok((false, reason)) => {
                            json!({"behavior": "deny", "message": denial(tool, reason)})
                        }
                        // Stop while waiting: refuse, and the select loop
                        // interrupts the turn.
                        Err(RunError::Stopped) => json!({
                            "behavior": "deny",
                            "message": "Stopped by the user.",
                            "interrupt": true,
                        }),
                        Err(e) => return Err(e),
                    }
                } else {
                    let subtype = request["subtype"].as_str().unwrap_or("?");
                    let error = json!({
                        "type": "control_response",
                        "response": {
                            "subtype": "error",
                            "request_id": request_id,
                            "error": format!("Paddock does not handle {subtype} requests"),
                        },
                    });
                    return send_line(stdin, &error).await;
                };
                let answer = json!({
                    "type": "control_response",
                    "response": {"subtype": "success", "request_id": request_id, "response": response},
                });
                send_line(stdin, &answer).await?;
            }
            Some("result") => {
                let failed = message["is_error"].as_bool().unwrap_or(false)
                    || message["subtype"].as_str().is_some_and(|s| s != "success");
                outcome.result = Some(if failed {
                    let text = message["result"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| {
                            message["errors"].as_array().map(|e| {
                                e.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            })
                        })
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| {
                            format!(
                                "the run ended with {}",
                                message["subtype"].as_str().unwrap_or("an error")
                            )
                        });
                    Err(text)
                } else {
                    Ok(())
                });
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_modes_map_to_the_cli() {
        assert_eq!(cli_permission_mode(PermissionMode::Ask), "default");
        assert_eq!(
            cli_permission_mode(PermissionMode::AcceptEdits),
            "acceptEdits"
        );
        assert_eq!(
            cli_permission_mode(PermissionMode::Auto),
            "bypassPermissions"
        );
        assert_eq!(cli_permission_mode(PermissionMode::ReadOnly), "plan");
    }

    #[test]
    fn arguments_are_quoted_into_the_command() {
        let cmd = command(&["--append-system-prompt".into(), "it's $(rm -rf /)".into()]);
        assert!(cmd.ends_with(r"'--append-system-prompt' 'it'\''s $(rm -rf /)'"));
        assert!(cmd.contains("UNIX-CONNECT:/run/paddock/llm.sock"));
    }

    #[test]
    fn tool_results_are_text() {
        assert_eq!(tool_result_text(&json!("ok")), "ok");
        assert_eq!(
            tool_result_text(
                &json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
            ),
            "a\nb"
        );
    }
}
