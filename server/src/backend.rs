//! Paddock's core: the store, the sandboxes and the live hub, and the
//! server's side of the dashboard's [`Backend`] contract.
//!
//! Every event enters the transcript through [`Paddock::record`] (or
//! [`Paddock::set_status`]): stored first, in the transaction that gives it
//! its `seq`, then published to the hub. Appending through the store alone
//! would leave live viewers without the event until something else is
//! published; publishing before the commit would let a viewer see an event a
//! reconnect cannot find.

use crate::config::{Config, SandboxChoice};
use crate::engine::{EngineLimits, EngineState};
use crate::hub::{Hub, SessionUpdate};
use crate::llm::{Anthropic, AnthropicConfig, Provider};
use crate::proxy::CredentialProxy;
use crate::sandbox::{BackendKind, DockerSandbox, LocalSandbox, Sandbox, SandboxError};
use crate::store::Store;
use anyhow::Context;
use app::api::Backend;
use app::model::{
    AppError, Engine, Event, EventKind, ServerInfo, Session, SessionId, SessionSpec, SessionStatus,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Paddock's core services, shared by every request.
#[derive(Clone)]
pub struct Paddock {
    pub config: Config,
    pub store: Store,
    pub sandbox: Arc<dyn Sandbox>,
    /// Live fan-out of stored events and token deltas to viewers.
    pub hub: Hub,
    /// The model the native engine talks to.
    pub provider: Arc<dyn Provider>,
    /// Runs, queues and pending permission requests of every session.
    pub engine: Arc<EngineState>,
    /// The credential-injecting LLM proxy of claude-code sessions.
    pub proxy: Arc<CredentialProxy>,
}

fn not_found(id: SessionId) -> AppError {
    AppError::NotFound(format!("Session {id}"))
}

/// What start-up recovery found and did.
#[derive(Debug, Default, PartialEq)]
pub struct Recovery {
    /// Sandboxes whose session no longer exists, removed.
    pub reaped: Vec<SessionId>,
    /// Sessions that were mid-turn when the server stopped, now interrupted.
    pub interrupted: Vec<SessionId>,
    /// Sessions that were waiting for a permission decision: they wait again.
    pub resumed: Vec<SessionId>,
}

impl Paddock {
    /// Opens the store and connects the sandbox backend the config asks for.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let store = Store::open(&config.database_url).await?;
        let instance = store
            .meta_or_insert("instance_id", || uuid::Uuid::now_v7().to_string())
            .await?;
        std::fs::create_dir_all(&config.workspace_root)
            .with_context(|| format!("cannot create {}", config.workspace_root.display()))?;
        let workspace_root = std::fs::canonicalize(&config.workspace_root)?;
        let docker = || {
            DockerSandbox::connect(
                config.image.clone(),
                instance.clone(),
                workspace_root.clone(),
            )
        };
        let local = || LocalSandbox::new(workspace_root.clone());
        let sandbox: Arc<dyn Sandbox> = match config.sandbox {
            Some(SandboxChoice::Docker) => {
                Arc::new(docker().await.context("PADDOCK_SANDBOX=docker")?)
            }
            Some(SandboxChoice::Local) => Arc::new(local()),
            None => match docker().await {
                Ok(d) => Arc::new(d),
                Err(e) => {
                    tracing::warn!(
                        "no Docker daemon answers ({e}): falling back to LOCAL sandboxes, which isolate \
                         far less than containers; set PADDOCK_SANDBOX=docker to require Docker"
                    );
                    Arc::new(local())
                }
            },
        };
        if let Some(warning) = sandbox.info().warning {
            tracing::warn!("{warning}");
        }
        let provider = Arc::new(Anthropic::new(AnthropicConfig {
            base_url: config.anthropic_base_url.clone(),
            api_key: config.anthropic_api_key.clone(),
            auth_token: config.anthropic_auth_token.clone(),
            timeout: Duration::from_secs(config.model_timeout_secs),
            ..AnthropicConfig::default()
        })?);
        let proxy = Arc::new(CredentialProxy::new(
            &config.anthropic_base_url,
            config.anthropic_api_key.as_deref(),
            config.anthropic_auth_token.as_deref(),
            std::path::absolute(&config.claude_code_root)?,
            Duration::from_secs(config.claude_code_run_secs),
        )?);
        Ok(Self {
            config,
            store,
            sandbox,
            hub: Hub::new(),
            provider,
            engine: Arc::default(),
            proxy,
        })
    }

    pub fn engine_limits(&self) -> EngineLimits {
        EngineLimits {
            max_turns: self.config.max_turns,
            max_tokens: 8192,
            tool_timeout: Duration::from_secs(self.config.tool_timeout_secs),
            permission_timeout: Duration::from_secs(self.config.permission_timeout_secs),
            output_cap: 32 * 1024,
        }
    }

    /// Creates (or starts) a session's sandbox with what its engine needs
    /// mounted.
    pub async fn start_sandbox(&self, s: &Session) -> Result<(), SandboxError> {
        let mounts = match s.engine {
            Engine::Native => Vec::new(),
            Engine::ClaudeCode => self.claude_code_mounts(s.id)?,
        };
        self.sandbox
            .start_with(s.id, self.config.limits_for(s.limits), &mounts)
            .await
    }

    /// Appends an event to a session's transcript, then broadcasts it: the
    /// one way events enter a transcript (invariant 1: stored with its `seq`
    /// before anyone sees it).
    pub async fn record(&self, session: SessionId, kind: EventKind) -> Result<Event, AppError> {
        let event = self
            .store
            .append_event(session, &kind)
            .await?
            .ok_or_else(|| not_found(session))?;
        self.hub.publish_event(event.clone());
        if matches!(
            kind,
            EventKind::UserMessage { .. } | EventKind::Usage { .. }
        ) {
            self.publish_summary(session).await;
        }
        Ok(event)
    }

    /// Sends the session's row to the sessions list, if anyone watches it.
    async fn publish_summary(&self, session: SessionId) {
        if !self.hub.watches_sessions() {
            return;
        }
        match self.store.get_session(session).await {
            Ok(Some(s)) => self
                .hub
                .publish_session(SessionUpdate::Changed(Arc::new(s))),
            Ok(None) => {}
            Err(e) => tracing::warn!(%session, "session summary not sent: {e}"),
        }
    }

    /// Sets a session's status and records the change as an event (one
    /// transaction), then broadcasts the event.
    pub async fn set_status(
        &self,
        session: SessionId,
        status: SessionStatus,
        message: Option<String>,
    ) -> Result<Event, AppError> {
        let event = self
            .store
            .set_status(session, status, message)
            .await?
            .ok_or_else(|| not_found(session))?;
        self.hub.publish_event(event.clone());
        self.publish_summary(session).await;
        Ok(event)
    }

    /// After a start (or a crash): removes sandboxes whose session is gone,
    /// and marks sessions that were mid-turn as interrupted, with an event
    /// saying so. Their sandboxes and workspaces are kept and reused.
    pub async fn recover(&self) -> anyhow::Result<Recovery> {
        let sessions = self.store.list_sessions().await?;
        let known: HashSet<SessionId> = sessions.iter().map(|s| s.id).collect();
        let mut recovery = Recovery::default();
        for found in self.sandbox.list().await? {
            if !known.contains(&found.session) {
                self.sandbox.destroy(found.session).await?;
                recovery.reaped.push(found.session);
            }
        }
        for s in sessions {
            if s.status == SessionStatus::AwaitingPermission
                && s.engine == app::model::Engine::Native
                && self.listen_again(s.id).await?
            {
                // Nothing ran yet: the question is still open, and the run
                // goes on once someone answers it.
                self.resume(s.id);
                recovery.resumed.push(s.id);
            } else if matches!(
                s.status,
                SessionStatus::Starting
                    | SessionStatus::Running
                    | SessionStatus::AwaitingPermission
            ) {
                let message =
                    "Paddock stopped while this session was working. Its workspace is intact; \
                               send a prompt to continue."
                        .to_owned();
                self.set_status(s.id, SessionStatus::Interrupted, Some(message))
                    .await?;
                recovery.interrupted.push(s.id);
            }
        }
        if recovery != Recovery::default() {
            tracing::info!(?recovery, "recovered after restart");
        }
        Ok(recovery)
    }
}

#[async_trait::async_trait]
impl Backend for Paddock {
    async fn list_sessions(&self) -> Result<Vec<Session>, AppError> {
        Ok(self.store.list_sessions().await?)
    }

    async fn create_session(&self, spec: SessionSpec) -> Result<Session, AppError> {
        if spec.engine == Engine::ClaudeCode && self.sandbox.info().kind != BackendKind::Docker {
            return Err(AppError::Invalid(
                "The claude-code engine runs only in Docker sandboxes, and this server uses local \
                 ones; use \"native\", or run Paddock with PADDOCK_SANDBOX=docker."
                    .into(),
            ));
        }
        let session = self.store.create_session(&spec).await?;
        tracing::info!(session = %session.id, name = %session.name, "session created");
        self.hub
            .publish_session(SessionUpdate::Changed(Arc::new(session.clone())));
        // Warm the sandbox up now, so the first prompt does not wait for it.
        let paddock = self.clone();
        let created = session.clone();
        tokio::spawn(async move {
            let id = created.id;
            if let Err(e) = paddock.start_sandbox(&created).await {
                tracing::warn!(session = %id, "sandbox did not start: {e}");
                let event = EventKind::Error {
                    message: format!("The sandbox could not start: {e}"),
                };
                // The session may have been deleted meanwhile: nothing to tell.
                let _ = paddock.record(id, event).await;
            }
        });
        Ok(session)
    }

    async fn get_session(&self, id: SessionId) -> Result<Session, AppError> {
        self.store
            .get_session(id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    async fn delete_session(&self, id: SessionId) -> Result<(), AppError> {
        self.get_session(id).await?;
        // Sandbox first: if it cannot be removed the session stays, so the
        // user can try again and nothing is left behind unowned.
        self.sandbox.destroy(id).await.map_err(|e| {
            tracing::error!(session = %id, "cannot remove the sandbox: {e}");
            AppError::Unavailable(format!(
                "The sandbox could not be removed, so the session was kept: {e}"
            ))
        })?;
        if let Err(e) = self.forget_proxy(id).await {
            tracing::error!(session = %id, "cannot remove the session's claude-code folder: {e}");
            return Err(AppError::Unavailable(format!(
                "The session's Claude Code folder could not be removed, so the session was kept: {e}"
            )));
        }
        self.store.delete_session(id).await?;
        // Its viewers' streams end; a reconnect gets 404.
        self.hub.close(id);
        self.hub.publish_session(SessionUpdate::Deleted(id));
        tracing::info!(session = %id, "session deleted");
        Ok(())
    }

    async fn send_prompt(&self, id: SessionId, text: String) -> Result<(), AppError> {
        Paddock::send_prompt(self, id, text).await
    }

    async fn stop(&self, id: SessionId) -> Result<(), AppError> {
        Paddock::stop(self, id).await
    }

    async fn decide(
        &self,
        id: SessionId,
        request_id: String,
        decision: app::model::Decision,
        reason: Option<String>,
    ) -> Result<(), AppError> {
        Paddock::decide(self, id, &request_id, decision, reason).await
    }

    fn server_info(&self) -> ServerInfo {
        let info = self.sandbox.info();
        ServerInfo {
            sandbox: info.kind.as_str().to_owned(),
            sandbox_warning: info.warning,
            model_warning: (self.config.anthropic_api_key.is_none()
                && self.config.anthropic_auth_token.is_none())
            .then(|| {
                "No model credentials are configured, so prompts will fail. Set \
                 ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN for a gateway, with \
                 ANTHROPIC_BASE_URL) in Paddock's environment and restart it."
                    .to_owned()
            }),
        }
    }

    async fn events(&self, id: SessionId, after: i64, limit: i64) -> Result<Vec<Event>, AppError> {
        // An unknown session is an error, not an empty transcript.
        self.get_session(id).await?;
        Ok(self.store.events_after(id, after, limit).await?)
    }
}
