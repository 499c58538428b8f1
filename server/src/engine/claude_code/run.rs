//! One prompt's run of the CLI: start it, hand it the prompt, turn each line
//! it prints into events (answering its control requests), and tell how it
//! ended.

use super::protocol::{
    Block, ControlRequest, Delta, Input, Output, Permission, StreamEvent, System,
};
use super::{cli, ClaudeCodeEngine, CliError, CliState};
use crate::engine::permissions::Verdict;
use crate::engine::{denial, RunError};
use crate::llm::budget_refusal;
use crate::proxy::Lease;
use crate::sandbox::{spawn_within, CappedOutput, OutputStream, Process};
use app::domain::{Delta as LiveDelta, DeltaKind, EventKind, PermissionMode, Session};
use futures_util::StreamExt;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// How long the sandbox gets to say it started the CLI.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the CLI gets to end after an interrupt or its result.
const GRACE: Duration = Duration::from_secs(10);
/// Kept of the CLI's stderr, for the error message when it fails.
const STDERR_CAP: usize = 8 * 1024;
/// Longest line of stream JSON taken from the CLI (a message with a whole
/// file in a tool's input fits many times over); the sandbox prints it, so
/// it is bounded.
const LINE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// A live fragment passed to the session's viewers at most, and the
/// blocks of a message one may name: a model's fragments are a few words
/// of its first blocks. One past them (written into the CLI's output from
/// the sandbox) is not shown live; its block is recorded whole, within
/// the bounds below, when the CLI prints it.
const DELTA_MAX_BYTES: usize = 64 * 1024;
const DELTA_BLOCKS_MAX: usize = 256;

/// Held of what the CLI writes while it waits for a permission decision.
const HELD_WHILE_ASKING: usize = 1024 * 1024;

/// What one run records of the CLI's output at most: its blocks (a text,
/// a tool call's input, a result as cut to the output cap) and their
/// bytes. A model's longest answer is a fraction of a block, and a long
/// run a fraction of the rest; but the CLI's output comes from the
/// sandbox, where any process of the session can write into it.
pub(super) const BLOCK_MAX_BYTES: usize = 2 * 1024 * 1024;
pub(super) const RUN_EVENTS_MAX: usize = 50_000;
pub(super) const RUN_RECORDED_MAX_BYTES: usize = 256 * 1024 * 1024;

/// How the CLI's run ended, as far as its messages told.
#[derive(Default)]
struct Outcome {
    result: Option<Result<(), String>>,
    interrupted: bool,
    /// Whether the CLI said it started (`system/init`).
    started: bool,
    /// A failure retrying cannot mend (the CLI would retry it for minutes).
    fatal: Option<String>,
}

pub(super) struct Run<'a> {
    engine: &'a ClaudeCodeEngine,
    session: &'a Session,
    state: CliState,
    cancel: &'a CancellationToken,
    outcome: Outcome,
    /// The `seq` the live deltas follow.
    seq_hint: i64,
    /// Events this run recorded, and their bytes.
    recorded: (usize, usize),
}

impl<'a> Run<'a> {
    pub(super) fn new(
        engine: &'a ClaudeCodeEngine,
        session: &'a Session,
        state: CliState,
        cancel: &'a CancellationToken,
    ) -> Self {
        Self {
            engine,
            session,
            state,
            cancel,
            outcome: Outcome::default(),
            seq_hint: session.last_seq,
            recorded: (0, 0),
        }
    }

    /// Runs the prompt stored as event `seq` to its end.
    pub(super) async fn drive(
        mut self,
        seq: i64,
        prompt: &str,
        lease: &Lease,
    ) -> Result<(), RunError> {
        let engine = self.engine;
        let (sent_before, resuming) = (self.state.sent_seq, self.state.claude_session_id.is_some());
        let allowed = engine.permissions.allowed(self.session.id);
        let request =
            cli::spawn_request(&engine.settings, self.session, &self.state, &allowed, lease)?;
        let spawned = spawn_within(
            engine.sandbox.as_ref(),
            self.session.id,
            &request,
            SPAWN_TIMEOUT,
            self.cancel,
        );
        let Some(mut process) = spawned.await.map_err(CliError::Start)? else {
            return Err(RunError::Stopped);
        };
        let sent = send(&mut process, &Input::user(prompt), self.cancel).await;
        if sent.is_err() && self.cancel.is_cancelled() {
            process.control.kill().await;
            return Err(RunError::Stopped);
        }
        if sent.is_ok() {
            self.state.sent_seq = seq;
            engine.save_state(self.session.id, &self.state).await?;
        }

        let mut stderr = CappedOutput::new(STDERR_CAP);
        let mut pending: Vec<u8> = Vec::new();
        let mut ending: Option<Pin<Box<tokio::time::Sleep>>> = None;
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
                        return Err(CliError::Output(e).into());
                    }
                    Some(Ok((OutputStream::Stderr, bytes))) => stderr.push(&bytes),
                    Some(Ok((OutputStream::Stdout, bytes))) => {
                        // Each byte is looked at once, and what the lines
                        // took goes in one move: a chunk of many short lines
                        // costs no more than one line.
                        let mut from = pending.len();
                        pending.extend_from_slice(&bytes);
                        let mut start = 0;
                        while let Some(at) = pending[from..].iter().position(|b| *b == b'\n') {
                            let line = &pending[start..from + at];
                            (start, from) = (from + at + 1, from + at + 1);
                            let Ok(message) = serde_json::from_slice::<Output>(line) else {
                                tracing::debug!(session = %self.session.id, "not a stream-json message: {}", String::from_utf8_lossy(&line[..line.len().min(200)]));
                                continue;
                            };
                            if let Err(e) = self.on_output(message, &mut process).await {
                                // Its input may hold half a line: it ends here.
                                process.control.kill().await;
                                return Err(match self.cancel.is_cancelled() {
                                    true => RunError::Stopped,
                                    false => e,
                                });
                            }
                            if self.outcome.fatal.is_some() && !killed {
                                killed = true;
                                process.control.kill().await;
                            }
                            if self.outcome.result.is_some() && ending.is_none() {
                                // One prompt per process: end its input.
                                let _ = process.stdin.shutdown().await;
                                ending = Some(Box::pin(tokio::time::sleep(GRACE)));
                            }
                        }
                        pending.drain(..start);
                        if pending.len() > LINE_MAX_BYTES {
                            process.control.kill().await;
                            return Err(CliError::LineTooLong(LINE_MAX_BYTES).into());
                        }
                    }
                },
                // (Once the CLI gave its result, the prompt is done: a
                // Stop then does not make it stopped.)
                () = self.cancel.cancelled(),
                    if !self.outcome.interrupted && self.outcome.result.is_none() => {
                    self.outcome.interrupted = true;
                    let id = format!("paddock_{}", uuid::Uuid::now_v7().simple());
                    let _ = send(&mut process, &Input::interrupt(&id), self.cancel).await;
                    ending = Some(Box::pin(tokio::time::sleep(GRACE)));
                }
                () = deadline, if !killed => {
                    killed = true;
                    process.control.kill().await;
                }
            }
        }
        let exit = process.control.exit_code().await.map_err(CliError::Exit)?;
        let outcome = self.outcome;
        if outcome.interrupted {
            return Err(RunError::Stopped);
        }
        if let Some(message) = outcome.fatal {
            return Err(CliError::Refused(message).into());
        }
        sent?;
        let (failed, said) = match (outcome.result, exit) {
            (Some(Ok(())), _) => return Ok(()),
            (Some(Err(message)), _) => (CliError::Failed(message.clone()), message),
            (None, code) => {
                let how = match code {
                    Some(code) => format!("exited with status {code}"),
                    None => "was killed".to_owned(),
                };
                let stderr = stderr.finish().trim().to_owned();
                let said = stderr.clone();
                (CliError::Ended { how, stderr }, said)
            }
        };
        // Its record of the conversation gone (its cleanup, a repository's
        // settings, the agent): the next run starts a new one, with the
        // prompts this one was to give, rather than fail every prompt.
        if resuming && !outcome.started && said.contains("No conversation found") {
            self.state.claude_session_id = None;
            self.state.sent_seq = sent_before;
            engine.save_state(self.session.id, &self.state).await?;
            return Err(CliError::ConversationGone.into());
        }
        Err(failed.into())
    }

    /// Turns one stream-json message into events, answers control requests.
    async fn on_output(&mut self, message: Output, process: &mut Process) -> Result<(), RunError> {
        let engine = self.engine;
        let session = self.session.id;
        match message {
            // Under --resume the CLI may report another id; the one first
            // resumed from stays the handle.
            Output::System(System::Init { session_id }) => {
                self.outcome.started = true;
                // A conversation's id, which the next run passes to
                // `--resume`: a UUID, or nothing of it.
                let id = session_id.filter(|id| uuid::Uuid::try_parse(id).is_ok());
                if let (Some(id), None) = (id, &self.state.claude_session_id) {
                    self.state.claude_session_id = Some(id);
                    engine.save_state(session, &self.state).await?;
                }
            }
            Output::System(System::ApiRetry {
                error,
                error_status,
            }) => {
                let error = error.as_deref().unwrap_or("error");
                // A refusal already seen stays what the run ends with.
                let fatal = match error_status {
                    Some(status @ (401 | 403)) => Some(format!(
                        "its model calls are refused ({status} {error}): the credential Paddock \
                         forwards (ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN) is not accepted by \
                         ANTHROPIC_BASE_URL, or the run outlived its proxy token."
                    )),
                    Some(402) => Some(
                        engine
                            .store
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
                if self.outcome.fatal.is_none() {
                    self.outcome.fatal = fatal;
                }
            }
            // What was held back of a call cut off (a secret's beginning,
            // kept until it is known not to be one) is not glued to the
            // retry's first fragment.
            Output::StreamEvent {
                event: StreamEvent::MessageStart {},
            } => engine.journal.restart_deltas(session),
            Output::StreamEvent {
                event: StreamEvent::ContentBlockDelta { index, delta },
            } => {
                let (kind, text) = match delta {
                    Delta::Text { text } => (DeltaKind::Text, text),
                    Delta::Thinking { thinking } => (DeltaKind::Thinking, thinking),
                    Delta::InputJson { partial_json } => (DeltaKind::ToolInput, partial_json),
                    Delta::Other => return Ok(()),
                };
                if text.len() > DELTA_MAX_BYTES || index >= DELTA_BLOCKS_MAX {
                    return Ok(());
                }
                engine.journal.delta(LiveDelta {
                    session_id: session,
                    seq_hint: self.seq_hint,
                    block: index,
                    kind,
                    text,
                });
            }
            Output::Assistant { message } => {
                for block in message.blocks() {
                    let kind = match block {
                        Block::Text { text } => EventKind::AssistantText { text: text.clone() },
                        Block::Thinking { thinking } => EventKind::Thinking {
                            text: thinking.clone(),
                        },
                        Block::ToolUse { id, name, input } => EventKind::ToolCall {
                            id: id.clone(),
                            name: name.clone(),
                            input: input.clone(),
                        },
                        Block::ToolResult { .. } | Block::Other => continue,
                    };
                    self.record(kind).await?;
                }
            }
            Output::User { message } => {
                for block in message.blocks() {
                    let Block::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } = block
                    else {
                        continue;
                    };
                    let mut output = CappedOutput::new(engine.settings.output_cap);
                    output.push(content.text().as_bytes());
                    let truncated = output.truncated();
                    let kind = EventKind::ToolResult {
                        id: tool_use_id.clone(),
                        output: output.finish(),
                        is_error: is_error.unwrap_or(false),
                        truncated,
                    };
                    self.record(kind).await?;
                }
            }
            Output::ControlRequest {
                request_id,
                request:
                    ControlRequest::CanUseTool {
                        tool_name,
                        input,
                        tool_use_id,
                    },
            } => {
                // A request is recorded as a tool call is (whatever wrote
                // it: a process of the sandbox may write into the CLI's
                // output), within the same bounds.
                let asked_bytes = tool_name.len()
                    + tool_use_id.len()
                    + serde_json::to_vec(&input).map_or(0, |v| v.len());
                self.count(asked_bytes)?;
                let read_only = self.session.permission_mode == PermissionMode::ReadOnly;
                let verdict = if read_only && !cli::reads_only(&tool_name) {
                    Ok((false, Some("this session is read-only".to_owned())))
                } else {
                    let asked = self
                        .ask_while_it_lives(process, &tool_use_id, &tool_name, &input)
                        .await;
                    // It ended while waiting: the run's loop reads what it
                    // wrote and how it ended.
                    let Some(verdict) = asked else {
                        return Ok(());
                    };
                    verdict
                };
                let response = match verdict {
                    Ok((true, _)) => Permission::Allow {
                        updated_input: &input,
                    },
                    Ok((false, reason)) => Permission::Deny {
                        message: denial(&tool_name, reason),
                        interrupt: false,
                    },
                    // Stop while waiting: refuse, and the select loop
                    // interrupts the turn.
                    Err(RunError::Stopped) => Permission::Deny {
                        message: "Stopped by the user.".into(),
                        interrupt: true,
                    },
                    Err(e) => return Err(e),
                };
                send(process, &Input::answer(&request_id, response), self.cancel).await?;
            }
            Output::ControlRequest {
                request_id,
                request: ControlRequest::Other { subtype },
            } => {
                let subtype = subtype.as_deref().unwrap_or("?");
                let error = format!("Paddock does not handle {subtype} requests");
                send(process, &Input::refuse(&request_id, error), self.cancel).await?;
            }
            Output::Result(result) => {
                self.outcome.result = Some(result.failure().map_or(Ok(()), Err));
            }
            Output::System(_) | Output::StreamEvent { .. } | Output::Other => {}
        }
        Ok(())
    }
}

impl Run<'_> {
    /// Records a block of what the CLI printed, within the run's bounds
    /// ([`BLOCK_MAX_BYTES`], [`RUN_EVENTS_MAX`], [`RUN_RECORDED_MAX_BYTES`]):
    /// past them, the run ends with the error.
    async fn record(&mut self, kind: EventKind) -> Result<(), RunError> {
        let bytes = match &kind {
            EventKind::AssistantText { text } | EventKind::Thinking { text } => text.len(),
            EventKind::ToolCall { id, name, input } => {
                id.len() + name.len() + serde_json::to_vec(input).map_or(0, |v| v.len())
            }
            EventKind::ToolResult { id, output, .. } => id.len() + output.len(),
            _ => 0,
        };
        self.count(bytes)?;
        self.seq_hint = self.engine.journal.record(self.session.id, kind).await?.seq;
        Ok(())
    }

    /// Counts a block of `bytes` in the run's bounds: past them, the error
    /// that ends the run.
    fn count(&mut self, bytes: usize) -> Result<(), RunError> {
        let (events, total) = (self.recorded.0 + 1, self.recorded.1 + bytes);
        if bytes > BLOCK_MAX_BYTES || events > RUN_EVENTS_MAX || total > RUN_RECORDED_MAX_BYTES {
            return Err(CliError::Flood {
                block: bytes,
                events,
                total,
            }
            .into());
        }
        self.recorded = (events, total);
        Ok(())
    }

    /// Asks the session's viewers whether the CLI may use a tool, for as
    /// long as the CLI lives: `None` once its output ended while waiting
    /// (it exited, or was killed in the sandbox), which withdraws the
    /// request as Stop does. What it wrote meanwhile (up to
    /// [`HELD_WHILE_ASKING`]; then it waits to be read) is read after the
    /// answer, in order.
    async fn ask_while_it_lives(
        &self,
        process: &mut Process,
        tool_use_id: &str,
        tool: &str,
        input: &serde_json::Value,
    ) -> Option<Result<Verdict, RunError>> {
        let asking = self.cancel.child_token();
        let ask = self
            .engine
            .permissions
            .ask(self.session.id, tool_use_id, tool, input, &asking);
        tokio::pin!(ask);
        let (mut held, mut held_bytes, mut ended) = (Vec::new(), 0, false);
        let verdict = loop {
            tokio::select! {
                // An answer at hand (a tool allowed for the session) reads
                // nothing of the output.
                biased;
                verdict = &mut ask => break verdict,
                item = process.output.next(), if !ended && held_bytes < HELD_WHILE_ASKING => {
                    match item {
                        Some(item) => {
                            held_bytes += item.as_ref().map_or(0, |(_, bytes)| bytes.len());
                            held.push(item);
                        }
                        None => {
                            ended = true;
                            asking.cancel();
                        }
                    }
                }
            }
        };
        // What was read goes back before the rest (a layer only where the
        // CLI wrote while a person decided).
        if ended || !held.is_empty() {
            let rest = match ended {
                true => futures_util::stream::empty().boxed(),
                false => {
                    std::mem::replace(&mut process.output, futures_util::stream::empty().boxed())
                }
            };
            process.output = futures_util::stream::iter(held).chain(rest).boxed();
        }
        match ended && !self.cancel.is_cancelled() {
            true => None,
            false => Some(verdict),
        }
    }
}

/// Writes a line to the CLI's input, which it reads as it runs. A CLI that
/// stops reading holds no run: the write is given up once Stop has come
/// and [`GRACE`] has passed (what is written after Stop, the refusal that
/// interrupts a turn and the interrupt itself, gets that time; a write done
/// by then always counts).
async fn send(
    process: &mut Process,
    input: &Input<'_>,
    cancel: &CancellationToken,
) -> Result<(), CliError> {
    let mut line = serde_json::to_string(input)?;
    line.push('\n');
    let stdin = &mut process.stdin;
    let written = async {
        stdin
            .write_all(line.as_bytes())
            .await
            .and(stdin.flush().await)
    };
    let given_up = async {
        cancel.cancelled().await;
        tokio::time::sleep(GRACE).await;
    };
    tokio::select! {
        biased;
        written = written => written.map_err(CliError::Input),
        () = given_up => Err(CliError::Input(std::io::ErrorKind::Interrupted.into())),
    }
}
