//! Where tower-sessions keeps browser sessions: the store's
//! `browser_sessions` table. The signed-in user is copied out of each
//! record, so that signing a person out everywhere (or disabling them) ends
//! all their browser sessions with one statement.

use super::{SignedIn, ACCOUNT_KEY};
use crate::store::Store;
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

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

/// The record as stored, with who it belongs to and when it expires.
fn encode(record: &Record) -> Result<(String, Option<app::domain::UserId>, DateTime<Utc>)> {
    let json = serde_json::to_string(record).map_err(|e| Error::Encode(e.to_string()))?;
    let user = record
        .data
        .get(ACCOUNT_KEY)
        .and_then(|v| serde_json::from_value::<SignedIn>(v.clone()).ok())
        .map(|s| s.user);
    let expires = DateTime::from_timestamp(record.expiry_date.unix_timestamp(), 0)
        .ok_or_else(|| Error::Encode("expiry out of range".into()))?;
    Ok((json, user, expires))
}

#[async_trait::async_trait]
impl SessionStore for BrowserSessions {
    async fn create(&self, record: &mut Record) -> Result<()> {
        loop {
            let (json, user, expires) = encode(record)?;
            let id = record.id.to_string();
            if self
                .0
                .create_browser_session(&id, user, &json, expires)
                .await
                .map_err(backend)?
            {
                return Ok(());
            }
            // 128 random bits collided: take others.
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> Result<()> {
        let (json, user, expires) = encode(record)?;
        self.0
            .save_browser_session(&record.id.to_string(), user, &json, expires)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let Some(json) = self
            .0
            .load_browser_session(&id.to_string())
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
            .delete_browser_session(&id.to_string())
            .await
            .map_err(backend)
    }
}
