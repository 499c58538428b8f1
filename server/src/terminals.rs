//! Terminals in sessions' sandboxes: who may open one (whoever may operate
//! the session, and nobody in a `read-only` one), and the transcript's
//! record of each opening and closing ([`TerminalSlots`] holds the open
//! ones). A terminal is a login shell on a pseudo-terminal through the
//! sandbox's agent ([`Sandbox::terminal`](crate::sandbox::Sandbox::terminal));
//! the WebSocket that carries it is [`http::terminals`](crate::http::terminals).

use crate::journal::{persistently, Journal};
use crate::paddock::Paddock;
use crate::sandbox::{BackendKind, SandboxError, Terminal, TerminalSize};
use crate::terminal_slots::Slot;
use app::accounts::{Access, Caller};
use app::domain::{AppError, EventKind, PermissionMode, Session, SessionId};
use tokio_util::sync::CancellationToken;

/// A terminal just opened, for the connection that carries it.
pub struct OpenTerminal {
    pub terminal: Terminal,
    /// Its place in the session, which says when it must close.
    pub slot: Slot,
    /// Records its end in the transcript when dropped.
    pub record: TerminalRecord,
}

/// A terminal's closing, as the transcript will say it: recorded when this
/// is dropped, with [`TerminalRecord::why`] or, if nothing said why, as a
/// viewer who left before the terminal was theirs.
pub struct TerminalRecord {
    journal: Journal,
    /// Where the recording runs (waited for at shutdown).
    tasks: tokio_util::task::TaskTracker,
    session: SessionId,
    number: u32,
    /// The replica that numbered it (each counts its own).
    replica: String,
    /// Who opened it, as the transcript names them.
    pub by: String,
    pub why: Option<String>,
}

impl Drop for TerminalRecord {
    fn drop(&mut self) {
        let why = self
            .why
            .take()
            .unwrap_or_else(|| "the viewer left before it opened".to_owned());
        let (journal, session, number, by, replica) = (
            self.journal.clone(),
            self.session,
            self.number,
            self.by.clone(),
            self.replica.clone(),
        );
        tracing::info!(%session, number, "terminal closed: {why}");
        if tokio::runtime::Handle::try_current().is_ok() {
            self.tasks.spawn(async move {
                // Tried again for a while: a terminal the transcript has
                // open keeps its sandbox up and counted. (A deleted
                // session has no transcript left to tell.)
                let closed = EventKind::Terminal {
                    number,
                    by,
                    closed: Some(why),
                    replica: Some(replica),
                };
                let written = persistently(&CancellationToken::new(), || {
                    journal.record(session, closed.clone())
                })
                .await;
                if let Err(e) = written {
                    if !matches!(e, AppError::NotFound(_)) {
                        tracing::warn!(%session, number, "cannot record a terminal's closing: {e}");
                    }
                }
            });
        }
    }
}

impl Paddock {
    /// Opens a terminal in the session's sandbox for `caller`, starting the
    /// sandbox (and preparing its workspace) if it is not running; the
    /// transcript says who opened it.
    pub async fn open_terminal(
        &self,
        caller: &Caller,
        id: SessionId,
        size: TerminalSize,
    ) -> Result<OpenTerminal, AppError> {
        if !size.is_sane() {
            return Err(AppError::Invalid(
                "A terminal has 1 to 1000 rows and columns.".into(),
            ));
        }
        let read_only = |session: &Session| match session.permission_mode {
            PermissionMode::ReadOnly => Err(AppError::Forbidden(
                "This session is read-only: it has no terminal, since a shell could change its \
                 workspace."
                    .into(),
            )),
            _ => Ok(()),
        };
        let session = self.session_for(caller, id, Access::Operate).await?;
        self.auth.owner_may_run(&session).await?;
        read_only(&session)?;
        let info = self.sandbox.info();
        if info.kind != BackendKind::Docker || !info.agent {
            return Err(AppError::Unavailable(
                "Terminals need the Docker sandbox backend with its sandbox agent.".into(),
            ));
        }
        let slot = self.terminals.claim(id)?;
        // Made read-only since it was read: that closed the terminals it
        // had, and this one was not among them yet.
        let session = self.session_for(caller, id, Access::Operate).await?;
        read_only(&session)?;
        self.runner.warm_up(&session).await.map_err(|e| match e {
            crate::engine::RunError::App(e) => e,
            e => AppError::Unavailable(self.journal.mask(id, &e.to_string()).into_owned()),
        })?;
        let mut env: Vec<(String, String)> = session
            .env
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        env.push(("TERM".into(), "xterm-256color".into()));
        let terminal = self
            .sandbox
            .terminal(id, &env, size)
            .await
            .map_err(|e| match e {
                SandboxError::Unsupported(why) => AppError::Unavailable(why.into()),
                e => AppError::Unavailable(format!("The terminal could not open: {e}")),
            })?;
        // Made before its opening is written: a viewer gone while it is
        // written (the request dropped) still has its closing written.
        let mut record = TerminalRecord {
            journal: self.journal.clone(),
            tasks: self.terminals.tasks().clone(),
            session: id,
            number: slot.number,
            replica: self.config.replica_name(),
            by: caller.label(),
            why: None,
        };
        let opened = EventKind::Terminal {
            number: slot.number,
            by: record.by.clone(),
            closed: None,
            replica: Some(record.replica.clone()),
        };
        if let Err(e) = self.journal.record(id, opened).await {
            record.why = Some("its opening could not be recorded".into());
            return Err(e);
        }
        tracing::info!(session = %id, number = slot.number, by = %caller.login, "terminal opened");
        Ok(OpenTerminal {
            terminal,
            slot,
            record,
        })
    }
}
