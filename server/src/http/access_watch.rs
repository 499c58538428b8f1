//! Streams (and terminals) outlive the request that opened them, so they watch for access
//! changes (a revoked token, a sign-out everywhere, a disabled account, an
//! unshared session): each change signal makes them check their caller
//! again, and [`lost`] completes as soon as the caller may no longer
//! follow what they are following. What sends no signal (a token or a
//! browser session reaching its expiry, an account disabled from the
//! command line, which runs in another process) is caught by a check every
//! [`RECHECK`].

use crate::auth::Identity;
use crate::hub::concerns;
use crate::paddock::Paddock;
use app::accounts::{Access, Caller};
use app::domain::{AppError, PermissionMode, SessionId, UserId};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// How often an open stream checks its caller without a signal.
pub const RECHECK: Duration = Duration::from_secs(30);

/// When to check again: at each change of `user`'s access (or
/// everyone's), and every [`RECHECK`].
struct Ticks {
    changes: broadcast::Receiver<Option<UserId>>,
    user: Option<UserId>,
    clock: tokio::time::Interval,
}

impl Ticks {
    fn new(paddock: &Paddock, user: Option<UserId>) -> Self {
        let mut clock = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            changes: paddock.hub.subscribe_access(),
            user,
            clock,
        }
    }

    /// Completes at the next; never once the server closed the signals.
    async fn next(&mut self) {
        loop {
            tokio::select! {
                heard = self.changes.recv() => {
                    if let Err(RecvError::Closed) = heard {
                        std::future::pending::<()>().await;
                    }
                    if concerns(&heard, self.user) {
                        return;
                    }
                }
                _ = self.clock.tick() => return,
            }
        }
    }
}

/// Completes when a stream for `identity` ends: the server shuts down, or
/// [`lost`]. Watches from the call, as [`lost`] does.
pub fn stream_ends(
    paddock: Arc<Paddock>,
    identity: Identity,
    session: Option<(SessionId, Access)>,
) -> impl Future<Output = ()> + Send + 'static {
    let shutdown = paddock.hub.shutting_down();
    let lost = lost(paddock, identity, session);
    async move {
        tokio::select! {
            () = shutdown => {},
            () = lost => {},
        }
    }
}

/// Completes when `identity` no longer holds, or when its caller may no
/// longer do with `session` what they need (watch it for a stream, operate
/// it for a terminal). It watches from the call: a change signalled after
/// it is seen, and its first check, at once, sees one that came before
/// (between the request's checks and the call). A check the store cannot
/// answer ends nothing.
pub fn lost(
    paddock: Arc<Paddock>,
    identity: Identity,
    session: Option<(SessionId, Access)>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut ticks = Ticks::new(&paddock, identity.caller.user);
    async move {
        while holds(&paddock, &identity, session).await {
            ticks.next().await;
        }
    }
}

/// Whether `identity` still holds, and may still do with `session` what
/// it needs; `true` when the store cannot tell.
async fn holds(
    paddock: &Paddock,
    identity: &Identity,
    session: Option<(SessionId, Access)>,
) -> bool {
    let caller = &identity.caller.login;
    match paddock.auth.still_valid(identity).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(%caller, "stream ended: its credentials no longer hold");
            return false;
        }
        Err(e) => {
            tracing::warn!(%caller, "cannot check a stream's credentials: {e}");
            return true;
        }
    }
    let Some((id, needed)) = session else {
        return true;
    };
    let session = match paddock.session_for(&identity.caller, id, needed).await {
        Err(AppError::NotFound(_) | AppError::Forbidden(_)) => {
            tracing::info!(%caller, session = %id, "stream ended: no longer shared");
            return false;
        }
        Err(e) => {
            tracing::warn!(session = %id, "cannot check access to a stream's session: {e}");
            return true;
        }
        Ok(s) => s,
    };
    // What operates a session (a terminal) runs on its owner's
    // credentials: only while the owner may run sessions, and while the
    // session is not read-only.
    if needed == Access::Operate && session.permission_mode == PermissionMode::ReadOnly {
        tracing::info!(%caller, session = %id, "stream ended: the session is read-only");
        return false;
    }
    if needed != Access::Operate {
        return true;
    }
    match paddock.auth.owner_may_run(&session).await {
        Err(AppError::Conflict(_)) => {
            tracing::info!(%caller, session = %id, "stream ended: the owner may no longer run sessions");
            false
        }
        _ => true,
    }
}

/// Completes when `caller` may no longer watch `session` (deleted, or no
/// longer shared), watching from the call: call it before the check that
/// lets the caller follow it. A check that cannot tell (the store failing)
/// is no answer; the caller's credentials are for whoever holds the
/// connection to check ([`lost`]).
pub fn unwatchable(
    paddock: Arc<Paddock>,
    caller: Caller,
    session: SessionId,
) -> impl Future<Output = ()> + Send + 'static {
    let mut ticks = Ticks::new(&paddock, caller.user);
    async move {
        loop {
            ticks.next().await;
            match paddock.session_for(&caller, session, Access::Watch).await {
                Err(AppError::NotFound(_) | AppError::Forbidden(_)) => {
                    tracing::info!(caller = %caller.login, %session, "transcript ended: no longer shared");
                    return;
                }
                Err(e) => {
                    tracing::warn!(%session, "cannot check access to a followed transcript: {e}")
                }
                Ok(_) => {}
            }
        }
    }
}
