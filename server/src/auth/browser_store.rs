//! Where tower-sessions keeps browser sessions: the store's
//! `browser_sessions` table. The signed-in user is copied out of each
//! record, so that signing a person out everywhere (or disabling them) ends
//! all their browser sessions with one statement. A row is keyed by the
//! SHA-256 of the cookie's id, as tokens are, so a copy of the database
//! signs nobody in.

use super::{SignedIn, ACCOUNT_KEY};
use crate::secret;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result};
use tower_sessions::SessionStore;

#[derive(Clone)]
pub struct BrowserSessions(pub Arc<dyn Store>);

impl std::fmt::Debug for BrowserSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrowserSessions")
    }
}

/// Marks a store failure that may pass (busy, unreachable, a full disk):
/// tower-sessions keeps only its text, and the page answers 503 for it,
/// not 500.
pub(super) const PASSING: &str = "passing: ";

fn backend(e: StoreError) -> Error {
    let passing = e.busy() || e.unreachable() || e.disk_full();
    Error::Backend(format!("{}{e}", if passing { PASSING } else { "" }))
}

/// The key of the row of the browser session with cookie id `id`.
pub(super) fn row_key(id: &str) -> String {
    secret::sha256_hex(id)
}

fn signed_in(record: &Record) -> Option<SignedIn> {
    record
        .data
        .get(ACCOUNT_KEY)
        .and_then(|v| serde_json::from_value::<SignedIn>(v.clone()).ok())
}

/// Who a stored record (as [`Store::load_browser_session`] returns it)
/// signs in, and since when.
pub(super) fn signed_in_of(stored: &str) -> Option<SignedIn> {
    signed_in(&serde_json::from_str(stored).ok()?)
}

/// The record as stored, with who it belongs to and when it expires.
fn encode(record: &Record) -> Result<(String, Option<app::domain::UserId>, DateTime<Utc>)> {
    let json = serde_json::to_string(record).map_err(|e| Error::Encode(e.to_string()))?;
    let user = signed_in(record).map(|s| s.user);
    let expires = DateTime::from_timestamp(record.expiry_date.unix_timestamp(), 0)
        .ok_or_else(|| Error::Encode("expiry out of range".into()))?;
    Ok((json, user, expires))
}

#[async_trait::async_trait]
impl SessionStore for BrowserSessions {
    async fn create(&self, record: &mut Record) -> Result<()> {
        loop {
            let (json, user, expires) = encode(record)?;
            let key = row_key(&record.id.to_string());
            if self
                .0
                .create_browser_session(&key, user, &json, expires)
                .await
                .map_err(backend)?
            {
                return Ok(());
            }
            // 128 random bits collided: take others.
            record.id = Id::default();
        }
    }

    /// Updates a session that still exists: one ended meanwhile (signed
    /// out everywhere while a request of it ran) stays ended. What an
    /// update writes is when it was last seen (a new session is
    /// [`Self::create`]d), so one that cannot be written (a full disk) is
    /// said and let go: failing it would answer every request of the
    /// browser with an empty 500, reads included, as it would be tried
    /// again at each.
    async fn save(&self, record: &Record) -> Result<()> {
        let (json, user, expires) = encode(record)?;
        let saved = self
            .0
            .save_browser_session(&row_key(&record.id.to_string()), user, &json, expires)
            .await;
        if let Err(e) = saved {
            tracing::warn!("cannot note when a browser session was last seen: {e}");
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let Some(json) = self
            .0
            .load_browser_session(&row_key(&id.to_string()))
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| Error::Decode(e.to_string()))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.0
            .delete_browser_session(&row_key(&id.to_string()))
            .await
            .map_err(backend)
    }
}
