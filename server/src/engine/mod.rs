//! The agent engine: runs each session's prompts, one at a time, in order.
//!
//! A prompt is stored (as a `user_message` event) before anything runs, so
//! nothing a user typed is lost. Each session with work has one runner task;
//! prompts that arrive while it runs are queued behind the current one. Stop
//! cancels the running model call or tool at once (the cancellation reaches
//! the HTTP stream and the sandbox's process group) and drops the queue.
//! Permission requests wait for a decision from any viewer, or expire.

mod claude_code;
mod history;
mod native;

use crate::backend::Paddock;
use app::model::{AppError, Decision, Engine, EventKind, Session, SessionId, SessionStatus};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Largest prompt accepted, in bytes.
pub const PROMPT_MAX_BYTES: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct EngineLimits {
    pub max_turns: u32,
    pub max_tokens: u32,
    pub tool_timeout: Duration,
    pub permission_timeout: Duration,
    pub output_cap: usize,
}

/// Engine state shared by every clone of [`Paddock`].
#[derive(Default)]
pub struct EngineState {
    runs: Mutex<HashMap<SessionId, Run>>,
    pending: Mutex<HashMap<String, Pending>>,
    /// Tools a user allowed "for this session".
    allowed: Mutex<HashMap<SessionId, HashSet<String>>>,
    /// Answers to requests stored before a restart, listened for from the
    /// moment the server is back (before it serves), until their run picks
    /// them up: a decision made at once is not lost.
    recovered: Mutex<HashMap<String, Answer>>,
}

type Answer = oneshot::Receiver<(Decision, Option<String>)>;

struct Run {
    queued: usize,
    cancel: CancellationToken,
}

struct Pending {
    session: SessionId,
    answer: oneshot::Sender<(Decision, Option<String>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a prompt's run ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error("stopped")]
    Stopped,
    #[error("{0}")]
    Failed(String),
}

/// Why no more model calls may be made for a session, if its budget is
/// spent: checked by the native loop and by the LLM proxy before each call.
pub(crate) fn budget_refusal(s: &Session) -> Option<String> {
    let budget = s.budget_usd.filter(|b| s.cost_usd >= *b)?;
    Some(format!(
        "This session reached its budget of ${budget:.2} (spent ${:.4}); \
         no more model calls will be made.",
        s.cost_usd
    ))
}

/// What the model is told when a person refused a tool call.
pub(crate) fn denial(tool: &str, reason: Option<String>) -> String {
    let why = reason.map(|r| format!(" Reason: {r}")).unwrap_or_default();
    format!("The user denied permission to run {tool}.{why}")
}

impl From<AppError> for RunError {
    fn from(e: AppError) -> Self {
        RunError::Failed(e.to_string())
    }
}

impl Paddock {
    /// Stores the prompt, then runs it now or after the prompts before it.
    pub async fn send_prompt(&self, session: SessionId, text: String) -> Result<(), AppError> {
        if text.trim().is_empty() {
            return Err(AppError::Invalid("The prompt is empty.".into()));
        }
        if text.len() > PROMPT_MAX_BYTES {
            return Err(AppError::Invalid(format!(
                "The prompt is too long: at most {} KiB.",
                PROMPT_MAX_BYTES / 1024
            )));
        }
        self.store
            .get_session(session)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("Session {session}")))?;
        self.record(session, EventKind::UserMessage { text })
            .await?;
        let start = {
            let mut runs = lock(&self.engine.runs);
            match runs.get_mut(&session) {
                Some(run) => {
                    run.queued += 1;
                    false
                }
                None => {
                    runs.insert(
                        session,
                        Run {
                            queued: 1,
                            cancel: CancellationToken::new(),
                        },
                    );
                    true
                }
            }
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.run_queue(session).await });
        }
        Ok(())
    }

    /// Listens again for the permission requests of the session's last
    /// turn that were still open when the server stopped; `true` if any.
    pub(crate) async fn listen_again(&self, session: SessionId) -> Result<bool, AppError> {
        let events = self.store.events_after(session, 0, i64::MAX).await?;
        let mut any = false;
        for call in history::unfinished(&events) {
            if let Some((request_id, _)) = call.request {
                let answer = self.listen_for_decision(session, &request_id);
                lock(&self.engine.recovered).insert(request_id, answer);
                any = true;
            }
        }
        Ok(any)
    }

    /// Picks a run up again after a restart, where it waited for a
    /// permission decision (see [`history::unfinished`]).
    pub(crate) fn resume(&self, session: SessionId) {
        lock(&self.engine.runs).insert(
            session,
            Run {
                queued: 1,
                cancel: CancellationToken::new(),
            },
        );
        let me = self.clone();
        tokio::spawn(async move { me.run_queue(session).await });
    }

    /// Cancels what the session is doing and drops its queued prompts.
    pub async fn stop(&self, session: SessionId) -> Result<(), AppError> {
        self.store
            .get_session(session)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("Session {session}")))?;
        if let Some(run) = lock(&self.engine.runs).get_mut(&session) {
            run.queued = 0;
            run.cancel.cancel();
        }
        Ok(())
    }

    /// Answers a pending permission request; a request is decided once.
    pub async fn decide(
        &self,
        session: SessionId,
        request_id: &str,
        decision: Decision,
        reason: Option<String>,
    ) -> Result<(), AppError> {
        if decision == Decision::Expired {
            return Err(AppError::Invalid(
                "\"expired\" is not a decision a user can make.".into(),
            ));
        }
        let pending = {
            let mut all = lock(&self.engine.pending);
            match all.get(request_id) {
                Some(p) if p.session == session => all.remove(request_id),
                _ => None,
            }
        };
        let pending = pending.ok_or_else(|| {
            AppError::NotFound(format!(
                "Pending permission request {request_id:?} (it may be decided already)"
            ))
        })?;
        let _ = pending.answer.send((decision, reason));
        Ok(())
    }

    /// Whether the session is running a prompt right now.
    pub fn is_running(&self, session: SessionId) -> bool {
        lock(&self.engine.runs).contains_key(&session)
    }

    async fn run_queue(&self, session: SessionId) {
        loop {
            let cancel = {
                let mut runs = lock(&self.engine.runs);
                let Some(run) = runs.get_mut(&session) else {
                    return;
                };
                if run.queued == 0 {
                    runs.remove(&session);
                    return;
                }
                run.queued -= 1;
                if run.cancel.is_cancelled() {
                    run.cancel = CancellationToken::new();
                }
                run.cancel.clone()
            };
            let _ = self.set_status(session, SessionStatus::Running, None).await;
            let (status, message) = match self.run_engine(session, &cancel).await {
                Ok(()) => (SessionStatus::Idle, None),
                Err(RunError::Stopped) => (SessionStatus::Idle, Some("Stopped.".to_owned())),
                Err(RunError::Failed(message)) => {
                    let _ = self
                        .record(
                            session,
                            EventKind::Error {
                                message: message.clone(),
                            },
                        )
                        .await;
                    (SessionStatus::Error, None)
                }
            };
            if let Err(e) = self.set_status(session, status, message).await {
                tracing::warn!(%session, "cannot record the end of a run: {e}");
            }
        }
    }

    /// Runs the oldest queued prompt with the session's engine.
    async fn run_engine(
        &self,
        session: SessionId,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let s = self
            .store
            .get_session(session)
            .await
            .map_err(|e| RunError::Failed(e.to_string()))?
            .ok_or_else(|| RunError::Failed("the session was deleted".into()))?;
        match s.engine {
            Engine::Native => self.run_native(s, cancel).await,
            Engine::ClaudeCode => self.run_claude_code(s, cancel).await,
        }
    }

    /// Asks the session's viewers whether a tool may run; waits for the
    /// answer or the timeout. `true` when allowed.
    pub(crate) async fn ask_permission(
        &self,
        session: SessionId,
        tool_use_id: &str,
        tool: &str,
        input: &serde_json::Value,
        cancel: &CancellationToken,
    ) -> Result<(bool, Option<String>), RunError> {
        if lock(&self.engine.allowed)
            .get(&session)
            .is_some_and(|t| t.contains(tool))
        {
            return Ok((true, None));
        }
        let request_id = format!("perm_{}", uuid::Uuid::now_v7().simple());
        // Listening before the request is visible: a quick viewer's answer
        // must find it.
        let answer = self.listen_for_decision(session, &request_id);
        self.record(
            session,
            EventKind::PermissionRequest {
                request_id: request_id.clone(),
                tool_use_id: tool_use_id.to_owned(),
                tool: tool.to_owned(),
                input: input.clone(),
            },
        )
        .await?;
        let timeout = self.engine_limits().permission_timeout;
        self.await_decision(session, request_id, tool, answer, timeout, cancel)
            .await
    }

    /// Waits again for a request stored before a restart, for what is left
    /// of its timeout.
    pub(crate) async fn resume_permission(
        &self,
        session: SessionId,
        request_id: String,
        asked_at: chrono::DateTime<chrono::Utc>,
        tool: &str,
        cancel: &CancellationToken,
    ) -> Result<(bool, Option<String>), RunError> {
        let recovered = lock(&self.engine.recovered).remove(&request_id);
        let answer = recovered.unwrap_or_else(|| self.listen_for_decision(session, &request_id));
        let waited = (chrono::Utc::now() - asked_at).to_std().unwrap_or_default();
        let timeout = self
            .engine_limits()
            .permission_timeout
            .saturating_sub(waited);
        self.await_decision(session, request_id, tool, answer, timeout, cancel)
            .await
    }

    fn listen_for_decision(&self, session: SessionId, request_id: &str) -> Answer {
        let (tx, rx) = oneshot::channel();
        lock(&self.engine.pending).insert(
            request_id.to_owned(),
            Pending {
                session,
                answer: tx,
            },
        );
        rx
    }

    async fn await_decision(
        &self,
        session: SessionId,
        request_id: String,
        tool: &str,
        answer: Answer,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(bool, Option<String>), RunError> {
        self.set_status(session, SessionStatus::AwaitingPermission, None)
            .await?;
        let answer = tokio::select! {
            () = cancel.cancelled() => None,
            a = tokio::time::timeout(timeout, answer) => Some(a),
        };
        lock(&self.engine.pending).remove(&request_id);
        let (decision, reason) = match answer {
            None => return Err(RunError::Stopped),
            Some(Ok(Ok(answer))) => answer,
            Some(_) => (
                Decision::Expired,
                Some("Nobody decided in time.".to_owned()),
            ),
        };
        if decision == Decision::AllowSession {
            lock(&self.engine.allowed)
                .entry(session)
                .or_default()
                .insert(tool.to_owned());
        }
        self.record(
            session,
            EventKind::PermissionDecision {
                request_id,
                decision,
                reason: reason.clone(),
            },
        )
        .await?;
        self.set_status(session, SessionStatus::Running, None)
            .await?;
        Ok((
            matches!(decision, Decision::Allow | Decision::AllowSession),
            reason,
        ))
    }
}
