//! The [`Workspace`] of the Docker and local backends: the session's host
//! folder, mounted into its sandbox, read, written and searched here
//! (whether its sandbox runs or not).

use super::workspace::{
    ByteStream, Download, Entry, FileError, GlobMatches, GlobQuery, GrepMatches, GrepQuery,
    SearchError, SearchLimits, Stat, Workspace,
};
use super::DiskFolder;
use futures_util::StreamExt;
use paddock_sandbox_agent::archive::archive_gz;
use paddock_sandbox_agent::folder::ConfinedFolder;
use paddock_sandbox_agent::search;

/// The workspace of a sandbox whose files are a host folder mounted into
/// it.
pub struct HostWorkspace {
    folder: ConfinedFolder,
}

impl HostWorkspace {
    pub fn new(folder: ConfinedFolder) -> Self {
        Self { folder }
    }

    /// Mounts the workspace's filesystem again where it is not (the host
    /// restarted; [`DiskFolder::mount_again`]): every operation reads and
    /// writes the workspace's own files.
    async fn mount_again(&self) -> Result<(), String> {
        DiskFolder::new(self.folder.clone())
            .mount_again_apart()
            .await
            .map_err(|e| format!("cannot mount the workspace: {e}"))
    }

    /// Runs a folder operation off the async threads: they are blocking
    /// syscalls (reads of up to 10 MiB).
    async fn blocking<T: Send + 'static>(
        &self,
        path: &str,
        op: impl FnOnce(&ConfinedFolder, &str) -> Result<T, FileError> + Send + 'static,
    ) -> Result<T, FileError> {
        self.mount_again().await.map_err(|message| FileError::Io {
            path: path.to_owned(),
            message,
        })?;
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
impl Workspace for HostWorkspace {
    async fn read(&self, path: &str) -> Result<Vec<u8>, FileError> {
        self.blocking(path, |f, p| f.read(p)).await
    }

    async fn write(&self, path: &str, data: &[u8]) -> Result<(), FileError> {
        let data = data.to_vec();
        self.blocking(path, move |f, p| f.write(p, &data)).await
    }

    async fn delete(&self, path: &str) -> Result<(), FileError> {
        self.blocking(path, |f, p| f.delete(p)).await
    }

    async fn list(&self, path: &str) -> Result<Vec<Entry>, FileError> {
        self.blocking(path, |f, p| f.list(p)).await
    }

    async fn download(&self, path: &str) -> Result<Download, FileError> {
        let open = self.blocking(path, |f, p| f.open_file(p)).await?;
        let file = tokio::fs::File::from_std(open.file);
        Ok(Download {
            size: open.size,
            body: tokio_util::io::ReaderStream::new(tokio::io::AsyncReadExt::take(file, open.size))
                .boxed(),
        })
    }

    async fn archive(&self, top: &str) -> Result<ByteStream, FileError> {
        self.mount_again().await.map_err(|message| FileError::Io {
            path: top.to_owned(),
            message,
        })?;
        let mut chunks = archive_gz(self.folder.clone(), top.to_owned());
        Ok(futures_util::stream::poll_fn(move |cx| chunks.poll_recv(cx)).boxed())
    }

    async fn stat(&self, path: &str) -> Result<Stat, FileError> {
        self.blocking(path, |f, p| f.stat(p)).await
    }

    async fn glob(
        &self,
        query: &GlobQuery,
        limits: SearchLimits<'_>,
    ) -> Result<GlobMatches, SearchError> {
        self.mount_again().await.map_err(SearchError::Failed)?;
        let (folder, query) = (self.folder.clone(), query.clone());
        search::bounded(limits.timeout, limits.cancel.cancelled(), move |bounds| {
            search::glob(&folder, &query, bounds)
        })
        .await
    }

    async fn grep(
        &self,
        query: &GrepQuery,
        limits: SearchLimits<'_>,
    ) -> Result<GrepMatches, SearchError> {
        self.mount_again().await.map_err(SearchError::Failed)?;
        let (folder, query) = (self.folder.clone(), query.clone());
        search::bounded(limits.timeout, limits.cancel.cancelled(), move |bounds| {
            search::grep(&folder, &query, bounds)
        })
        .await
    }
}
