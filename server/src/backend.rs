//! Paddock's core: the store and the sandboxes, and the server's side of the
//! dashboard's [`Backend`] contract.

use crate::config::{Config, SandboxChoice};
use crate::sandbox::{DockerSandbox, LocalSandbox, Sandbox};
use crate::store::Store;
use anyhow::Context;
use app::api::Backend;
use app::model::{AppError, Event, ServerInfo, Session, SessionId, SessionSpec, SessionStatus};
use std::collections::HashSet;
use std::sync::Arc;

/// Paddock's core services, shared by every request.
#[derive(Clone)]
pub struct Paddock {
    pub config: Config,
    pub store: Store,
    pub sandbox: Arc<dyn Sandbox>,
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
        Ok(Self {
            config,
            store,
            sandbox,
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
            if matches!(
                s.status,
                SessionStatus::Starting
                    | SessionStatus::Running
                    | SessionStatus::AwaitingPermission
            ) {
                let message =
                    "Paddock stopped while this session was working. Its workspace is intact; \
                               send a prompt to continue."
                        .to_owned();
                self.store
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

#[async_trait::async_trait]
impl Backend for Paddock {
    async fn list_sessions(&self) -> Result<Vec<Session>, AppError> {
        Ok(self.store.list_sessions().await?)
    }

    async fn create_session(&self, spec: SessionSpec) -> Result<Session, AppError> {
        let session = self.store.create_session(&spec).await?;
        tracing::info!(session = %session.id, name = %session.name, "session created");
        // Warm the sandbox up now, so the first prompt does not wait for it.
        let (sandbox, store) = (self.sandbox.clone(), self.store.clone());
        let (id, limits) = (session.id, self.config.limits_for(session.limits));
        tokio::spawn(async move {
            if let Err(e) = sandbox.start(id, limits).await {
                tracing::warn!(session = %id, "sandbox did not start: {e}");
                let event = app::model::EventKind::Error {
                    message: format!("The sandbox could not start: {e}"),
                };
                let _ = store.append_event(id, &event).await;
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
        self.store.delete_session(id).await?;
        tracing::info!(session = %id, "session deleted");
        Ok(())
    }

    fn server_info(&self) -> ServerInfo {
        let info = self.sandbox.info();
        ServerInfo {
            sandbox: info.kind.as_str().to_owned(),
            sandbox_warning: info.warning,
        }
    }

    async fn events(&self, id: SessionId, after: i64, limit: i64) -> Result<Vec<Event>, AppError> {
        // An unknown session is an error, not an empty transcript.
        self.get_session(id).await?;
        Ok(self.store.events_after(id, after, limit).await?)
    }
}
