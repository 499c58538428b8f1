//! A session's files, as the agent's tools see them: the [`Workspace`]
//! trait. Paths are the agent's (`src/a.rs`, `./src/a.rs` and
//! `/workspace/src/a.rs` are one file) and never leave the workspace.
//!
//! The Docker and local backends implement it with
//! [`HostWorkspace`](super::HostWorkspace): the session's host folder for
//! reading, writing and listing (confined by the kernel, see
//! [`ConfinedFolder`](super::ConfinedFolder)), and searches run inside the sandbox,
//! where ripgrep is. A backend whose files are not on this host (a remote Docker
//! host, a Kubernetes pod, an agent inside the sandbox) implements the same
//! trait its own way; the tools do not change.

use super::SandboxError;
use bytes::Bytes;
use futures_util::stream::BoxStream;
pub use paddock_sandbox_agent::folder::{relative, Entry, FileError, READ_MAX_BYTES};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Bytes read as they are sent: a download, an archive.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// A file to send: its size, and its bytes as they are read.
pub struct Download {
    pub size: u64,
    pub body: ByteStream,
}

/// Files matching glob patterns under a folder.
#[derive(Clone, Debug)]
pub struct GlobQuery<'a> {
    /// Patterns relative to `dir` (`**` crosses folders; no `{a,b}`: the
    /// caller expands those).
    pub patterns: &'a [String],
    /// A folder relative to the workspace, as [`relative`] gives it (`.`
    /// for the workspace itself).
    pub dir: &'a str,
    /// Paths returned at most.
    pub max_results: usize,
}

/// What a glob found: paths relative to the workspace, sorted, folders
/// with a trailing `/`, and how many matched in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobMatches {
    pub paths: Vec<String>,
    pub total: usize,
}

/// Lines matching a regular expression, in files under a folder.
#[derive(Clone, Debug)]
pub struct GrepQuery<'a> {
    pub pattern: &'a str,
    /// As [`GlobQuery::dir`].
    pub dir: &'a str,
    /// Only files whose names match this glob.
    pub file_glob: Option<&'a str>,
    pub case_insensitive: bool,
}

/// Matching lines as `path:line:text`, sorted by path; empty when nothing
/// matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrepMatches {
    pub lines: String,
    /// Lines were left out to respect the output cap.
    pub truncated: bool,
}

/// Bounds of one search.
#[derive(Clone, Copy, Debug)]
pub struct SearchLimits<'a> {
    pub timeout: Duration,
    /// Bytes of matches kept.
    pub output_cap: usize,
    pub cancel: &'a CancellationToken,
}

/// Why a search found nothing to report.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the folder does not exist")]
    NotFound,
    #[error("the folder is outside the workspace")]
    Outside,
    #[error("not a folder")]
    NotDirectory,
    #[error("timed out")]
    TimedOut,
    #[error("cancelled")]
    Cancelled,
    #[error("the sandbox ran out of memory")]
    OutOfMemory,
    #[error("ripgrep (rg) is not installed in this sandbox")]
    NoRipgrep,
    /// The search ended with another exit code, and what it printed.
    #[error("the search failed (exit code {code:?})")]
    Failed { code: Option<i64>, output: String },
    #[error("the search could not be run: {0}")]
    Sandbox(#[from] SandboxError),
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
    async fn glob(
        &self,
        query: &GlobQuery<'_>,
        limits: SearchLimits<'_>,
    ) -> Result<GlobMatches, SearchError>;
    async fn grep(
        &self,
        query: &GrepQuery<'_>,
        limits: SearchLimits<'_>,
    ) -> Result<GrepMatches, SearchError>;
}
