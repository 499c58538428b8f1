//! Streams outlive the request that opened them, so they watch for access
//! changes (a revoked token, a sign-out everywhere, a disabled account, an
//! unshared session): each change signal makes them check their caller
//! again, and [`lost`] completes as soon as the caller may no longer
//! follow what they are following.

use crate::auth::Identity;
use crate::paddock::Paddock;
use app::accounts::Access;
use app::domain::SessionId;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Completes when `identity` no longer holds, or when its caller may no
/// longer see `session`.
pub async fn lost(paddock: Arc<Paddock>, identity: Identity, session: Option<SessionId>) {
    let mut changes = paddock.hub.subscribe_access();
    loop {
        if let Err(RecvError::Closed) = changes.recv().await {
            return std::future::pending().await;
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
