//! Workspace transfers running now: archives streamed and uploads received
//! hold a thread or an upload's bytes while they run, so only a few run at
//! once, server-wide.

use app::domain::AppError;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Archives streamed and uploads received at once.
const ARCHIVES_AT_ONCE: usize = 8;
const UPLOADS_AT_ONCE: usize = 4;

/// The workspace archives and uploads running now, bounded.
#[derive(Clone)]
pub struct Transfers {
    archives: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
}

impl Default for Transfers {
    fn default() -> Self {
        Self {
            archives: Arc::new(Semaphore::new(ARCHIVES_AT_ONCE)),
            uploads: Arc::new(Semaphore::new(UPLOADS_AT_ONCE)),
        }
    }
}

impl Transfers {
    /// A slot for one archive, held until it is dropped.
    pub fn archive(&self) -> Result<OwnedSemaphorePermit, AppError> {
        slot(&self.archives, "workspace downloads")
    }

    /// A slot for one upload, held until it is dropped.
    pub fn upload(&self) -> Result<OwnedSemaphorePermit, AppError> {
        slot(&self.uploads, "uploads")
    }
}

fn slot(semaphore: &Arc<Semaphore>, what: &str) -> Result<OwnedSemaphorePermit, AppError> {
    semaphore.clone().try_acquire_owned().map_err(|_| {
        AppError::Unavailable(format!(
            "Too many {what} are running at once; try again in a moment."
        ))
    })
}
