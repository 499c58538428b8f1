//! Paddock composed: the store, the sandboxes, the hub and the journal, the
//! engines and their runner, and the credential proxy, wired once at start-up
//! and shared by every request. [`Paddock`] is the server's side of the
//! dashboard's [`Backend`] contract; each part holds only what it uses.

use crate::config::{Config, SandboxChoice};
use crate::engine::{
    AgentEngine, ClaudeCodeEngine, ClaudeCodeSettings, EngineLimits, NativeEngine, Permissions,
    Runner,
};
use crate::hub::Hub;
use crate::journal::Journal;
use crate::llm::{Anthropic, AnthropicConfig, Provider};
use crate::proxy::CredentialProxy;
use crate::sandbox::{DockerSandbox, LocalSandbox, Sandbox};
use crate::store::{self, Store};
use anyhow::Context;
use app::api::Backend;
use app::domain::{
    AppError, Decision, Engine, Event, EventKind, ServerInfo, Session, SessionId, SessionSpec,
    SessionStatus,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Paddock's parts, shared by every request.
#[derive(Clone)]
pub struct Paddock {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub sandbox: Arc<dyn Sandbox>,
    /// Live fan-out of stored events and token deltas to viewers.
    pub hub: Hub,
    /// The one way into transcripts and the hub.
    pub journal: Journal,
    /// Runs and queues of every session.
    pub runner: Arc<Runner>,
    /// Open permission requests, for either engine.
    pub permissions: Arc<Permissions>,
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
        Self::open_with_hub(config, Hub::new()).await
    }

    /// [`Paddock::open`] with the given hub (one of another channel
    /// capacity).
    pub async fn open_with_hub(config: Config, hub: Hub) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let store = store::open(&config.database_url).await?;
        let instance = store
            .meta_or_insert("instance_id", uuid::Uuid::now_v7().to_string())
            .await?;
        let sandbox = connect_sandbox(&config, instance).await?;
        let journal = Journal::new(store.clone(), hub.clone());
        let provider: Arc<dyn Provider> = Arc::new(Anthropic::new(AnthropicConfig {
            base_url: config.anthropic_base_url.clone(),
            api_key: config.anthropic_api_key.clone(),
            auth_token: config.anthropic_auth_token.clone(),
            timeout: Duration::from_secs(config.model_timeout_secs),
            ..AnthropicConfig::default()
        })?);
        let proxy = Arc::new(CredentialProxy::new(
            &config,
            store.clone(),
            journal.clone(),
        )?);
        let limits = EngineLimits::from_config(&config);
        let permissions = Arc::new(Permissions::new(journal.clone(), limits.permission_timeout));
        let native: Arc<dyn AgentEngine> = Arc::new(NativeEngine {
            store: store.clone(),
            journal: journal.clone(),
            sandbox: sandbox.clone(),
            provider,
            permissions: permissions.clone(),
            limits: limits.clone(),
        });
        let claude_code: Arc<dyn AgentEngine> = Arc::new(ClaudeCodeEngine {
            store: store.clone(),
            journal: journal.clone(),
            sandbox: sandbox.clone(),
            permissions: permissions.clone(),
            proxy: proxy.clone(),
            settings: ClaudeCodeSettings::from_config(&config, limits.output_cap),
        });
        let runner = Arc::new(Runner::new(
            config.clone(),
            store.clone(),
            journal.clone(),
            sandbox.clone(),
            [(Engine::Native, native), (Engine::ClaudeCode, claude_code)],
        ));
        Ok(Self {
            config,
            store,
            sandbox,
            hub,
            journal,
            runner,
            permissions,
            proxy,
        })
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
                && self.runner.engine(s.engine)?.listen_again(&s).await?
            {
                // Nothing ran yet: the question is still open, and the run
                // goes on once someone answers it.
                self.runner.resume(s.id);
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
                self.journal
                    .set_status(s.id, SessionStatus::Interrupted, Some(message))
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

/// The sandbox backend the config asks for: Docker when a daemon answers,
/// unless told otherwise.
async fn connect_sandbox(config: &Config, instance: String) -> anyhow::Result<Arc<dyn Sandbox>> {
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
        Some(SandboxChoice::Docker) => Arc::new(docker().await.context("PADDOCK_SANDBOX=docker")?),
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
    Ok(sandbox)
}

#[async_trait::async_trait]
impl Backend for Paddock {
    async fn list_sessions(&self) -> Result<Vec<Session>, AppError> {
        Ok(self.store.list_sessions().await?)
    }

    async fn create_session(&self, spec: SessionSpec) -> Result<Session, AppError> {
        self.runner
            .engine(spec.engine)?
            .check_sandbox(&self.sandbox.info())?;
        let session = self.store.create_session(&spec).await?;
        tracing::info!(session = %session.id, name = %session.name, "session created");
        self.journal.created(&session);
        // Warm the sandbox up now, so the first prompt does not wait for it.
        let (runner, journal) = (self.runner.clone(), self.journal.clone());
        let created = session.clone();
        tokio::spawn(async move {
            let id = created.id;
            if let Err(e) = runner.start_sandbox(&created).await {
                tracing::warn!(session = %id, "sandbox did not start: {e}");
                let event = EventKind::Error {
                    message: format!("The sandbox could not start: {e}"),
                };
                // The session may have been deleted meanwhile: nothing to tell.
                let _ = journal.record(id, event).await;
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
        let session = self.get_session(id).await?;
        // Sandbox first: if it cannot be removed the session stays, so the
        // user can try again and nothing is left behind unowned.
        self.sandbox.destroy(id).await.map_err(|e| {
            tracing::error!(session = %id, "cannot remove the sandbox: {e}");
            AppError::Unavailable(format!(
                "The sandbox could not be removed, so the session was kept: {e}"
            ))
        })?;
        self.runner.engine(session.engine)?.forget(id).await?;
        self.journal.delete(id).await?;
        tracing::info!(session = %id, "session deleted");
        Ok(())
    }

    async fn send_prompt(&self, id: SessionId, text: String) -> Result<(), AppError> {
        self.runner.send_prompt(id, text).await
    }

    async fn stop(&self, id: SessionId) -> Result<(), AppError> {
        self.runner.stop(id).await
    }

    async fn decide(
        &self,
        id: SessionId,
        request_id: String,
        decision: Decision,
        reason: Option<String>,
    ) -> Result<(), AppError> {
        self.permissions.decide(id, &request_id, decision, reason)
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
