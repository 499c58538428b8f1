//! The server's side of the dashboard's [`Backend`] contract.

use crate::store::Store;
use app::api::Backend;
use app::model::{AppError, Event, Session, SessionId, SessionSpec};

/// Paddock's core services, shared by every request.
#[derive(Clone, Debug)]
pub struct Paddock {
    pub store: Store,
}

fn not_found(id: SessionId) -> AppError {
    AppError::NotFound(format!("Session {id}"))
}

#[async_trait::async_trait]
impl Backend for Paddock {
    async fn list_sessions(&self) -> Result<Vec<Session>, AppError> {
        Ok(self.store.list_sessions().await?)
    }

    async fn create_session(&self, spec: SessionSpec) -> Result<Session, AppError> {
        let session = self.store.create_session(&spec).await?;
        tracing::info!(session = %session.id, name = %session.name, "session created");
        Ok(session)
    }

    async fn get_session(&self, id: SessionId) -> Result<Session, AppError> {
        self.store
            .get_session(id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    async fn events(&self, id: SessionId, after: i64, limit: i64) -> Result<Vec<Event>, AppError> {
        // An unknown session is an error, not an empty transcript.
        self.get_session(id).await?;
        Ok(self.store.events_after(id, after, limit).await?)
    }
}
