//! Streams outlive the request that opened them, so they watch for access
//! changes (a revoked token, a sign-out everywhere, a disabled account, an
//! unshared session): each change signal makes them check their caller
//! again, and [`lost`] completes as soon as the caller may no longer
//! follow what they are following. What sends no signal (a token or a
//! browser session reaching its expiry, an account disabled from the
//! command line, which runs in another process) is caught by a check every
//! [`RECHECK`].

use crate::auth::Identity;
use crate::paddock::Paddock;
use app::accounts::Access;
use app::domain::SessionId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often an open stream checks its caller without a signal.
pub const RECHECK: Duration = Duration::from_secs(30);

/// Completes when `identity` no longer holds, or when its caller may no
/// longer see `session`.
pub async fn lost(paddock: Arc<Paddock>, identity: Identity, session: Option<SessionId>) {
    let mut changes = paddock.hub.subscribe_access();
    let mut clock = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.recv() => {
                if let Err(RecvError::Closed) = change {
                    return std::future::pending().await;
                }
            }
            _ = clock.tick() => {}
        }
        if !paddock.auth.still_valid(&identity).await {
            tracing::info!(caller = %identity.caller.login, "stream ended: its credentials no longer hold");
            return;
        }
        if let Some(id) = session {
            if paddock
                .session_for(&identity.caller, id, Access::Watch)
                .await
                .is_err()
            {
                tracing::info!(caller = %identity.caller.login, session = %id, "stream ended: no longer shared");
                return;
            }
        }
    }
}
