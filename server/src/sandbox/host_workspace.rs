//! The [`Workspace`] of the Docker and local backends: the session's host
//! folder, mounted into its sandbox, for reading, writing and listing, and
//! searches run in the sandbox itself.

use super::host_folder::HostFolder;
use super::search;
use super::workspace::{
    Entry, FileError, GlobMatches, GlobQuery, GrepMatches, GrepQuery, SearchError, SearchLimits,
    Workspace,
};
use super::Sandbox;
use app::domain::SessionId;

/// The workspace of a sandbox whose files are a host folder mounted into
/// it.
pub struct HostWorkspace<'a> {
    folder: HostFolder,
    sandbox: &'a dyn Sandbox,
    session: SessionId,
}

impl<'a> HostWorkspace<'a> {
    pub fn new(folder: HostFolder, sandbox: &'a dyn Sandbox, session: SessionId) -> Self {
        Self {
            folder,
            sandbox,
            session,
        }
    }

    /// Runs a folder operation off the async threads: they are blocking
    /// syscalls (reads of up to 10 MiB).
    async fn blocking<T: Send + 'static>(
        &self,
        path: &str,
        op: impl FnOnce(&HostFolder, &str) -> Result<T, FileError> + Send + 'static,
    ) -> Result<T, FileError> {
        let (folder, owned) = (self.folder.clone(), path.to_owned());
        tokio::task::spawn_blocking(move || op(&folder, &owned))
            .await
            .unwrap_or_else(|e| {
                Err(FileError::Io {
                    path: path.to_owned(),
                    message: format!("the file operation failed: {e}"),
                })
            })
    }
}

#[async_trait::async_trait]
impl Workspace for HostWorkspace<'_> {
    async fn read(&self, path: &str) -> Result<Vec<u8>, FileError> {
        self.blocking(path, |f, p| f.read(p)).await
    }

    async fn write(&self, path: &str, data: &[u8]) -> Result<(), FileError> {
        let data = data.to_vec();
        self.blocking(path, move |f, p| f.write(p, &data)).await
    }

    async fn list(&self, path: &str) -> Result<Vec<Entry>, FileError> {
        self.blocking(path, |f, p| f.list(p)).await
    }

    async fn glob(
        &self,
        query: &GlobQuery<'_>,
        limits: SearchLimits<'_>,
    ) -> Result<GlobMatches, SearchError> {
        search::glob(self.sandbox, self.session, query, limits).await
    }

    async fn grep(
        &self,
        query: &GrepQuery<'_>,
        limits: SearchLimits<'_>,
    ) -> Result<GrepMatches, SearchError> {
        search::grep(self.sandbox, self.session, query, limits).await
    }
}
