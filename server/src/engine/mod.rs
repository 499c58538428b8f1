//! Agent engines: what runs a session's prompts.
//!
//! Each engine is one implementation of [`AgentEngine`] (Paddock's own loop
//! over the Messages API, the Claude Code CLI), found by the session's
//! [`Engine`](app::domain::Engine) in the [`Runner`]'s table, so a third one is one more module
//! and one more entry. The [`Runner`] owns what all of them share: prompts
//! stored before anything runs (invariant 4), one run per session at a time
//! with later prompts queued in order, Stop, and the sandbox started with
//! what the engine mounts. [`Permissions`] asks a session's viewers before a
//! tool runs, for either engine.

mod claude_code;
mod native;
mod permissions;
mod runner;

pub use claude_code::{ClaudeCodeEngine, ClaudeCodeSettings};
pub use native::NativeEngine;
pub use permissions::Permissions;
pub use runner::{Engines, Owners, Runner, Takeover};

use crate::config::Config;
use crate::llm::LlmError;
use crate::sandbox::{BackendInfo, Mount, SandboxError};
use crate::store::StoreError;
use app::domain::{AppError, Session, SessionId};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Largest prompt accepted, in bytes.
pub const PROMPT_MAX_BYTES: usize = 1024 * 1024;
/// Prompts that may wait their turn in one session.
pub const QUEUED_PROMPTS_MAX: i64 = 32;

#[derive(Clone, Debug)]
pub struct EngineLimits {
    pub max_turns: u32,
    pub max_tokens: u32,
    pub tool_timeout: Duration,
    pub permission_timeout: Duration,
    pub output_cap: usize,
}

impl EngineLimits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_turns: config.max_turns,
            max_tokens: 8192,
            tool_timeout: Duration::from_secs(config.tool_timeout_secs),
            permission_timeout: Duration::from_secs(config.permission_timeout_secs),
            output_cap: 32 * 1024,
        }
    }
}

impl EngineLimits {
    /// These limits with the session's own turn and command limits.
    pub fn for_session(&self, s: &Session) -> Self {
        Self {
            max_turns: s
                .max_turns
                .map_or(self.max_turns, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            tool_timeout: s
                .limits
                .command_timeout_secs
                .map_or(self.tool_timeout, |t| Duration::from_secs(t.unsigned_abs())),
            ..self.clone()
        }
    }
}

/// One way of running a session's prompts.
#[async_trait::async_trait]
pub trait AgentEngine: Send + Sync + 'static {
    /// Refuses, with the reason, sandboxes this engine cannot run in.
    fn check_sandbox(&self, _sandbox: &BackendInfo) -> Result<(), AppError> {
        Ok(())
    }

    /// Host paths a session's sandbox needs mounted for this engine (made
    /// first where they are the session's own).
    async fn mounts(&self, _session: SessionId) -> Result<Vec<Mount>, SandboxError> {
        Ok(Vec::new())
    }

    /// Runs the oldest prompt of the session this engine has not run yet.
    /// The session's sandbox is started.
    async fn run(&self, session: Session, cancel: &CancellationToken) -> Result<(), RunError>;

    /// After a restart, for a session that was waiting for a permission
    /// decision: listens for it again and says whether its run can go on
    /// from there (otherwise the session is interrupted).
    async fn listen_again(&self, _session: &Session) -> Result<bool, AppError> {
        Ok(false)
    }

    /// Removes what the engine keeps for a session that is being deleted.
    async fn forget(&self, _session: SessionId) -> Result<(), AppError> {
        Ok(())
    }
}

/// Why a prompt's run ended early. The message is what the session's error
/// event says; the source error stays attached for the log.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("stopped")]
    Stopped,
    #[error("the session was deleted")]
    Deleted,
    #[error("The sandbox could not start: {0}")]
    Sandbox(#[source] SandboxError),
    #[error(transparent)]
    Workspace(#[from] crate::workspace_setup::SetupError),
    #[error("The model call failed: {0}")]
    Model(#[source] LlmError),
    /// A limit of the session was reached (budget, turns).
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    ClaudeCode(#[from] claude_code::CliError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    App(#[from] AppError),
}

/// What the model is told when a person refused a tool call.
fn denial(tool: &str, reason: Option<String>) -> String {
    let why = reason.map(|r| format!(" Reason: {r}")).unwrap_or_default();
    format!("The user denied permission to run {tool}.{why}")
}
