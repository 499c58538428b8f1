//! A session's files, as the agent's tools see them: the [`Workspace`]
//! trait. Paths are the agent's (`src/a.rs`, `./src/a.rs` and
//! `/workspace/src/a.rs` are one file) and never leave the workspace.
//!
//! The Docker and local backends implement it with
//! [`HostWorkspace`](super::HostWorkspace): the session's host folder,
//! every path confined by the kernel (see
//! [`ConfinedFolder`](super::ConfinedFolder)), searched by the server
//! itself through the same folder ([`paddock_sandbox_agent::search`]). A
//! backend whose files are not on this host (a remote Docker host)
//! implements it with [`AgentWorkspace`](super::agent_workspace): the same
//! operations and searches, done by the sandbox's agent; the tools do not
//! change.

use bytes::Bytes;
use futures_util::stream::BoxStream;
pub use paddock_sandbox_agent::folder::{
    normalized, relative, Entry, FileError, FileKind, Stat, READ_MAX_BYTES,
};
pub use paddock_sandbox_agent::search::{
    GlobMatches, GlobQuery, GrepMatches, GrepQuery, SearchError, PATTERN_MAX_CHARS,
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Bytes read as they are sent: a download, an archive.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// A file to send: its size, and its bytes as they are read.
pub struct Download {
    pub size: u64,
    pub body: ByteStream,
}

/// Bounds of one search.
#[derive(Clone, Copy, Debug)]
pub struct SearchLimits<'a> {
    pub timeout: Duration,
    pub cancel: &'a CancellationToken,
}

/// A session's files.
#[async_trait::async_trait]
pub trait Workspace: Send + Sync {
    /// A file's bytes, up to [`READ_MAX_BYTES`].
    async fn read(&self, path: &str) -> Result<Vec<u8>, FileError>;
    /// Writes `data` to `path`, creating missing parent folders.
    async fn write(&self, path: &str, data: &[u8]) -> Result<(), FileError>;
    /// Deletes a file, a link (never what it names) or a folder with all
    /// it holds; not the workspace itself.
    async fn delete(&self, path: &str) -> Result<(), FileError>;
    /// The entries of a folder, sorted by name (the workspace of a
    /// sandbox never started is there, and empty).
    async fn list(&self, path: &str) -> Result<Vec<Entry>, FileError>;
    /// A file of any size, streamed.
    async fn download(&self, path: &str) -> Result<Download, FileError>;
    /// The whole workspace as a gzipped tar, streamed as it is made, every
    /// path under `top/`. What cannot be read as a file of the workspace
    /// (a link that leaves it, a socket) is left out.
    async fn archive(&self, top: &str) -> Result<ByteStream, FileError>;
    /// What a path is, a link inside the workspace followed.
    async fn stat(&self, path: &str) -> Result<Stat, FileError>;
    async fn glob(
        &self,
        query: &GlobQuery,
        limits: SearchLimits<'_>,
    ) -> Result<GlobMatches, SearchError>;
    async fn grep(
        &self,
        query: &GrepQuery,
        limits: SearchLimits<'_>,
    ) -> Result<GrepMatches, SearchError>;
}
