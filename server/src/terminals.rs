//! Terminals in sessions' sandboxes: who may open one (whoever may operate
//! the session, and nobody in a `read-only` one), how many at once, and the
//! transcript's record of each opening and closing ([`TerminalSlots`](crate::terminal_slots::TerminalSlots)
//! holds the open ones). A terminal is a login
//! shell on a pseudo-terminal through the sandbox's agent
//! ([`Sandbox::terminal`](crate::sandbox::Sandbox::terminal)); the WebSocket
//! that carries it is [`http::terminals`](crate::http::terminals).

use crate::paddock::Paddock;
use crate::sandbox::{SandboxError, Terminal, TerminalSize};
use app::accounts::{Access, Caller};
use app::domain::{AppError, EventKind, PermissionMode, SessionId};
use tokio_util::sync::CancellationToken;

/// A terminal just opened, for the connection that carries it.
pub struct OpenTerminal {
    pub session: SessionId,
    pub number: u32,
    /// Who opened it, as the transcript names them.
    pub by: String,
    pub terminal: Terminal,
    /// Cancelled when the terminal must close (its session is deleted).
    pub closing: CancellationToken,
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
        let session = self.session_for(caller, id, Access::Operate).await?;
        if session.permission_mode == PermissionMode::ReadOnly {
            return Err(AppError::Forbidden(
                "This session is read-only: it has no terminal, since a shell could change its \
                 workspace."
                    .into(),
            ));
        }
        let (number, closing) = self.terminals.claim(id)?;
        let opened = async {
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
            self.sandbox
                .terminal(id, &env, size)
                .await
                .map_err(|e| match e {
                    SandboxError::Unsupported(why) => AppError::Unavailable(why.into()),
                    e => AppError::Unavailable(format!("The terminal could not open: {e}")),
                })
        }
        .await;
        let terminal = match opened {
            Ok(terminal) => terminal,
            Err(e) => {
                self.terminals.release(id, number);
                return Err(e);
            }
        };
        let by = caller.label();
        tracing::info!(session = %id, number, by = %caller.login, "terminal opened");
        if let Err(e) = self
            .journal
            .record(
                id,
                EventKind::Terminal {
                    number,
                    by: by.clone(),
                    closed: None,
                },
            )
            .await
        {
            self.terminals.release(id, number);
            return Err(e);
        }
        Ok(OpenTerminal {
            session: id,
            number,
            by,
            terminal,
            closing,
        })
    }

    /// Notes the end of the terminal `number` that `by` opened (`why`: who
    /// or what closed it) and frees its place.
    pub async fn terminal_closed(&self, session: SessionId, number: u32, by: String, why: String) {
        self.terminals.release(session, number);
        tracing::info!(session = %session, number, "terminal closed: {why}");
        // A deleted session has no transcript left to tell.
        let _ = self
            .journal
            .record(
                session,
                EventKind::Terminal {
                    number,
                    by,
                    closed: Some(why),
                },
            )
            .await;
    }
}
