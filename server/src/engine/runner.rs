//! Runs each session's prompts, one at a time, in order, with the engine the
//! session chose.
//!
//! A prompt is stored (as a `user_message` event) before anything runs, so
//! nothing a user typed is lost (invariant 4). Each session with work has
//! one runner task; prompts that arrive while it runs are queued behind the
//! current one. Stop cancels the running model call or tool at once (the
//! cancellation reaches the HTTP stream and the sandbox's process group) and
//! drops the queue.

use super::{AgentEngine, RunError, PROMPT_MAX_BYTES};
use crate::config::Config;
use crate::journal::Journal;
use crate::sandbox::{Sandbox, SandboxError, SandboxSpec};
use crate::store::Store;
use crate::sync::lock;
use crate::vault::Vault;
use crate::workspace_setup::WorkspaceSetup;
use app::domain::{AppError, Engine, EnvVar, EventKind, Session, SessionId, SessionStatus};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

struct Run {
    /// One span per prompt waiting to run, in the span of the request
    /// that sent it: the run's log lines carry that request's id.
    queued: VecDeque<tracing::Span>,
    cancel: CancellationToken,
}

pub struct Runner {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    journal: Journal,
    sandbox: Arc<dyn Sandbox>,
    vault: Arc<Vault>,
    setup: Arc<WorkspaceSetup>,
    engines: HashMap<Engine, Arc<dyn AgentEngine>>,
    runs: Mutex<HashMap<SessionId, Run>>,
}

fn not_found(session: SessionId) -> AppError {
    AppError::NotFound(format!("Session {session}"))
}

impl Runner {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        journal: Journal,
        sandbox: Arc<dyn Sandbox>,
        vault: Arc<Vault>,
        setup: Arc<WorkspaceSetup>,
        engines: impl IntoIterator<Item = (Engine, Arc<dyn AgentEngine>)>,
    ) -> Self {
        Self {
            config,
            store,
            journal,
            sandbox,
            vault,
            setup,
            engines: engines.into_iter().collect(),
            runs: Mutex::default(),
        }
    }

    /// The engine that runs sessions of this kind.
    pub fn engine(&self, kind: Engine) -> Result<&dyn AgentEngine, AppError> {
        self.engines.get(&kind).map(Arc::as_ref).ok_or_else(|| {
            AppError::Unavailable(format!(
                "The {kind} engine is not available on this server."
            ))
        })
    }

    /// Prepares the session's workspace (once) and starts its sandbox, so
    /// that its first prompt does not wait: what a new session does.
    pub async fn warm_up(&self, s: &Session) -> Result<(), RunError> {
        self.setup.prepare(s.id).await?;
        self.start_sandbox(s).await.map_err(RunError::Sandbox)
    }

    /// Creates (or starts) a session's sandbox with what its engine needs
    /// mounted, and the session's read-only folders.
    pub async fn start_sandbox(&self, s: &Session) -> Result<(), SandboxError> {
        let mut mounts = self
            .engine(s.engine)
            .map_err(|e| SandboxError::Failed(e.to_string()))?
            .mounts(s.id)?;
        mounts.extend(self.config.mount_policy().sandbox_mounts(&s.mounts)?);
        let spec = SandboxSpec {
            limits: self.config.limits_for(s.limits),
            image: s.image.clone(),
            mounts,
        };
        self.sandbox.start_with(s.id, &spec).await
    }

    /// Stores the prompt, then runs it now or after the prompts before it.
    pub async fn send_prompt(
        self: &Arc<Self>,
        session: SessionId,
        text: String,
    ) -> Result<(), AppError> {
        if text.trim().is_empty() {
            return Err(AppError::Invalid("The prompt is empty.".into()));
        }
        if text.len() > PROMPT_MAX_BYTES {
            return Err(AppError::Invalid(format!(
                "The prompt is too long: at most {} KiB.",
                PROMPT_MAX_BYTES / 1024
            )));
        }
        let s = self
            .store
            .get_session(session)
            .await?
            .ok_or_else(|| not_found(session))?;
        // So that a secret pasted into the prompt is masked too; a secret
        // that cannot be opened any more is the run's error to report.
        let _ = self.secrets(&s).await;
        self.journal
            .record(session, EventKind::UserMessage { text })
            .await?;
        let span = tracing::info_span!("run", %session);
        let start = {
            let mut runs = lock(&self.runs);
            match runs.get_mut(&session) {
                Some(run) => {
                    run.queued.push_back(span);
                    false
                }
                None => {
                    runs.insert(
                        session,
                        Run {
                            queued: VecDeque::from([span]),
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

    /// Picks a run up again after a restart, where it waited for a
    /// permission decision (see [`AgentEngine::listen_again`]).
    pub fn resume(self: &Arc<Self>, session: SessionId) {
        lock(&self.runs).insert(
            session,
            Run {
                queued: VecDeque::from([tracing::info_span!("run", %session, resumed = true)]),
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
            .ok_or_else(|| not_found(session))?;
        if let Some(run) = lock(&self.runs).get_mut(&session) {
            run.queued.clear();
            run.cancel.cancel();
        }
        Ok(())
    }

    /// Whether the session is running a prompt right now.
    pub fn is_running(&self, session: SessionId) -> bool {
        lock(&self.runs).contains_key(&session)
    }

    async fn run_queue(&self, session: SessionId) {
        loop {
            let (cancel, span) = {
                let mut runs = lock(&self.runs);
                let Some(run) = runs.get_mut(&session) else {
                    return;
                };
                let Some(span) = run.queued.pop_front() else {
                    runs.remove(&session);
                    return;
                };
                if run.cancel.is_cancelled() {
                    run.cancel = CancellationToken::new();
                }
                (run.cancel.clone(), span)
            };
            self.run_one(session, &cancel).instrument(span).await;
        }
    }

    /// Runs one queued prompt, from the status that says so to the one that
    /// says how it ended.
    async fn run_one(&self, session: SessionId, cancel: &CancellationToken) {
        let _ = self
            .journal
            .set_status(session, SessionStatus::Running, None)
            .await;
        crate::metrics::run_started();
        let outcome = self.run_engine(session, cancel).await;
        crate::metrics::run_finished(match &outcome {
            Ok(()) => "completed",
            Err(RunError::Stopped) => "stopped",
            Err(_) => "failed",
        });
        let (status, message) = match outcome {
            Ok(()) => (SessionStatus::Idle, None),
            Err(RunError::Stopped) => (SessionStatus::Idle, Some("Stopped.".to_owned())),
            Err(e) => {
                let message = self.journal.mask(session, &e.to_string()).into_owned();
                tracing::warn!(%session, "the run failed: {message}");
                let event = EventKind::Error { message };
                let _ = self.journal.record(session, event).await;
                (SessionStatus::Error, None)
            }
        };
        if let Err(e) = self.journal.set_status(session, status, message).await {
            tracing::warn!(%session, "cannot record the end of a run: {e}");
        }
    }

    /// Runs the oldest queued prompt with the session's engine.
    async fn run_engine(
        &self,
        session: SessionId,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let mut s = self
            .store
            .get_session(session)
            .await?
            .ok_or(RunError::Deleted)?;
        let secrets = self.secrets(&s).await?;
        s.env.extend(
            secrets
                .into_iter()
                .map(|(name, value)| EnvVar { name, value }),
        );
        self.setup.prepare(session).await?;
        self.start_sandbox(&s).await.map_err(RunError::Sandbox)?;
        self.engine(s.engine)?.run(s, cancel).await
    }

    /// Opens the secrets the session lists, as of now (a secret saved again
    /// since the last run has its new value), and has the journal mask them:
    /// every one that opens, even when another does not.
    async fn secrets(&self, s: &Session) -> Result<Vec<(String, String)>, AppError> {
        let mut secrets = Vec::with_capacity(s.secrets.len());
        let mut refusal = None;
        for name in &s.secrets {
            match self
                .vault
                .secrets(s.owner, std::slice::from_ref(name))
                .await
            {
                Ok(opened) => secrets.extend(opened),
                Err(e) => refusal = refusal.or(Some(e)),
            }
        }
        let values: Vec<&str> = secrets.iter().map(|(_, v)| v.as_str()).collect();
        self.journal.set_secrets(s.id, &values);
        refusal.map_or(Ok(secrets), Err)
    }
}
