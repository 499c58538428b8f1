//! The claude-code engine: the real Claude Code CLI runs inside the session's
//! closed container, driven the way the Claude Agent SDK drives it, so users
//! get its own tools, skills, subagents and compaction.
//!
//! Each prompt starts one CLI process in the sandbox (`claude -p` with
//! stream-json in and out, `--permission-prompt-tool stdio`; see [`cli`]),
//! resuming the session's Claude Code conversation with `--resume <id>` (the
//! id from its first `system/init`, kept in `sessions.engine_state`; the
//! CLI's transcripts live in a per-session home folder on the host, mounted
//! into the sandbox, so they outlive the container). The container has no
//! network: the CLI reaches the model through socat, relaying a loopback
//! port to the credential proxy's Unix socket, with a per-run token as its
//! only credential (invariant 2, see `crate::proxy`).
//!
//! Every stream-json message ([`protocol`]) becomes Paddock events in the
//! same log as the native engine's; `can_use_tool` control requests become
//! Paddock permission requests decided in the dashboard; Stop sends an
//! `interrupt` control request (and kills the process group if the CLI does
//! not end in time). The run itself is a [`run::Run`].

mod cli;
mod protocol;
mod run;

use super::{AgentEngine, Permissions, RunError};
use crate::config::Config;
use crate::journal::Journal;
use crate::proxy::{CredentialProxy, ProxyError};
use crate::sandbox::{BackendInfo, BackendKind, Mount, Sandbox, SandboxError};
use crate::store::Store;
use app::domain::{AppError, EventKind, Session, SessionId, SessionStatus};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How claude-code sessions run, from the configuration.
#[derive(Clone, Debug)]
pub struct ClaudeCodeSettings {
    /// The CLI binary mounted into sandboxes.
    pub bin: PathBuf,
    pub max_turns: u32,
    /// Longest one prompt may run.
    pub run_timeout: Duration,
    /// Bytes of a tool result kept in the transcript.
    pub output_cap: usize,
}

impl ClaudeCodeSettings {
    pub fn from_config(config: &Config, output_cap: usize) -> Self {
        Self {
            bin: config.claude_code_bin(),
            max_turns: config.max_turns,
            run_timeout: Duration::from_secs(config.claude_code_run_secs),
            output_cap,
        }
    }
}

/// The Claude Code CLI as an engine.
pub struct ClaudeCodeEngine {
    pub store: Arc<dyn Store>,
    pub journal: Journal,
    pub sandbox: Arc<dyn Sandbox>,
    pub permissions: Arc<Permissions>,
    pub proxy: Arc<CredentialProxy>,
    pub settings: ClaudeCodeSettings,
    /// Sessions' homes are made one at a time.
    pub homes: tokio::sync::Mutex<()>,
}

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

/// Why a claude-code run failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("The system prompt holds a NUL byte, which no program argument can.")]
    NulInSystemPrompt,
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("Claude Code could not start: {0}")]
    Start(#[source] SandboxError),
    #[error("Claude Code stopped reading its input: {0}")]
    Input(#[source] std::io::Error),
    #[error("Lost Claude Code's output: {0}")]
    Output(#[source] SandboxError),
    #[error("Claude Code printed a line over {} MiB, which is not its protocol.", .0 / 1024 / 1024)]
    LineTooLong(usize),
    /// More than a run records of its output (see `run.rs`).
    #[error(
        "Claude Code printed more than a run records: a block of {} KiB, {events} blocks, {} MiB \
         in all (at most {} KiB, {} blocks, {} MiB). Something in the sandbox may be writing \
         into its output.",
        .block / 1024, .total / 1024 / 1024, run::BLOCK_MAX_BYTES / 1024, run::RUN_EVENTS_MAX,
        run::RUN_RECORDED_MAX_BYTES / 1024 / 1024
    )]
    Flood {
        block: usize,
        events: usize,
        total: usize,
    },
    #[error("Cannot read how Claude Code ended: {0}")]
    Exit(#[source] SandboxError),
    #[error("cannot encode JSON for Claude Code: {0}")]
    Encode(#[from] serde_json::Error),
    /// A failure the CLI would retry for minutes (a refused credential, a
    /// spent budget).
    #[error("Claude Code stopped: {0}")]
    Refused(String),
    /// The run's `result` said it failed.
    #[error("Claude Code: {0}")]
    Failed(String),
    /// The CLI ended without a `result`.
    #[error("Claude Code {how} before finishing the prompt{}", stderr_note(.stderr))]
    Ended { how: String, stderr: String },
    /// The CLI has no record of the conversation it was to resume.
    #[error(
        "Claude Code no longer has this session's conversation (its record in the session's \
         home is gone). Send a prompt to start a new one: it carries this prompt too."
    )]
    ConversationGone,
}

/// The end of [`CliError::Ended`]'s message: the tail of the CLI's stderr.
fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        ".".to_owned()
    } else {
        format!(": {stderr}")
    }
}

impl ClaudeCodeEngine {
    async fn save_state(&self, session: SessionId, state: &CliState) -> Result<(), RunError> {
        let value = serde_json::to_value(state).map_err(CliError::Encode)?;
        Ok(self.store.set_engine_state(session, &value).await?)
    }
}

#[async_trait::async_trait]
impl AgentEngine for ClaudeCodeEngine {
    fn check_sandbox(&self, sandbox: &BackendInfo) -> Result<(), AppError> {
        if sandbox.remote {
            return Err(AppError::Invalid(
                "The claude-code engine needs sandboxes on this server's own Docker host (its \
                 CLI and credential proxy are mounted from it), and this server's are on a \
                 remote one; use \"native\"."
                    .into(),
            ));
        }
        if sandbox.kind == BackendKind::Docker {
            return Ok(());
        }
        Err(AppError::Invalid(
            "The claude-code engine runs only in Docker sandboxes, and this server uses local \
             ones; use \"native\", or run Paddock with PADDOCK_SANDBOX=docker."
                .into(),
        ))
    }

    async fn mounts(&self, session: SessionId) -> Result<Vec<Mount>, SandboxError> {
        // The home first, one at a time (a session's warm-up and its first
        // prompt may ask at once), off the async threads.
        let size = cli::home_size(self.sandbox.info().no_disk_limits.is_none());
        let home = cli::home_disk(&self.proxy, session);
        let made = {
            let _one_at_a_time = self.homes.lock().await;
            tokio::task::spawn_blocking(move || home.create(size)).await
        };
        match made {
            Ok(Ok(())) => cli::mounts(&self.settings, &self.proxy, session),
            Ok(Err(e)) => Err(SandboxError::Failed(format!(
                "cannot create the Claude Code home: {e}"
            ))),
            Err(e) => Err(SandboxError::Failed(e.to_string())),
        }
    }

    /// Gives the CLI the prompts it has not been given yet that were
    /// stored before this run started (those stored since are the next
    /// run's, as the transcript shows them), as one: a prompt queued behind
    /// a run that ended before giving it (Stop drops the queue; a run can
    /// fail before its prompt is written) comes with the next, as the
    /// native engine merges queued prompts; a run whose prompt an earlier
    /// run gave this way has nothing to do.
    #[tracing::instrument(skip(self, s, cancel), fields(session = %s.id))]
    async fn run(&self, s: Session, cancel: &CancellationToken) -> Result<(), RunError> {
        // The tools people allowed for this session, read back at each run:
        // one may have been allowed through another replica.
        let allowed = super::permissions::allowed_in(self.store.as_ref(), s.id).await?;
        self.permissions.set_allowed(s.id, allowed);
        let state: CliState = match self.store.engine_state(s.id).await? {
            Some(v) => serde_json::from_value(v).unwrap_or_default(),
            None => CliState::default(),
        };
        // (The CLI keeps the conversation: only what it was not given yet
        // is read.)
        let events = self.store.conversation_after(s.id, state.sent_seq).await?;
        let started = events
            .iter()
            .rev()
            .find(|e| {
                matches!(
                    e.kind,
                    EventKind::Status {
                        status: SessionStatus::Running,
                        ..
                    }
                )
            })
            .map_or(i64::MAX, |e| e.seq);
        let prompts: Vec<(i64, &str)> = events
            .iter()
            .take_while(|e| e.seq < started)
            .filter_map(|e| match &e.kind {
                EventKind::UserMessage { text } => Some((e.seq, text.as_str())),
                _ => None,
            })
            .collect();
        let Some(&(seq, _)) = prompts.last() else {
            return Ok(());
        };
        let prompt = prompts
            .iter()
            .map(|(_, text)| *text)
            .collect::<Vec<_>>()
            .join("\n\n");
        let lease = self.proxy.open(s.id).await.map_err(CliError::from)?;
        let outcome = run::Run::new(self, &s, state, cancel)
            .drive(seq, &prompt, &lease)
            .await;
        self.proxy.close(s.id, lease).await;
        outcome
    }

    async fn forget(&self, session: SessionId) -> Result<(), AppError> {
        let removed = async {
            // The home first: its filesystem unmounted, its image deleted.
            let home = cli::home_disk(&self.proxy, session);
            tokio::task::spawn_blocking(move || home.remove())
                .await
                .map_err(std::io::Error::other)??;
            self.proxy.forget(session).await
        };
        removed.await.map_err(|e| {
            tracing::error!(%session, "cannot remove the session's claude-code folder: {e}");
            AppError::Unavailable(format!(
                "The session's Claude Code folder could not be removed, so the session was kept: {e}"
            ))
        })
    }
}
