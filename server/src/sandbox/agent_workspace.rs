//! The [`Workspace`] of a sandbox whose files are not on this server's host
//! (a remote Docker host): every file operation and search is a call on the
//! sandbox's agent (`/fs/read`, `/fs/write`, `/fs/list`, `/fs/stat`,
//! `/fs/delete`, `/fs/archive`, `/fs/glob`, `/fs/grep`), which confines its
//! paths to `/workspace` inside the sandbox as
//! [`ConfinedFolder`](super::ConfinedFolder) does here.
//!
//! A file or an archive being sent holds a part of the agent connection's
//! flow-control window until it is read: a session sends at most
//! [`STREAMS_PER_SESSION`] at once, and one its reader stops taking for a
//! minute is dropped, so the session's commands always get through.

use super::agent_call::ask;
use super::agent_link::AgentConnection;
use super::workspace::{
    relative, ByteStream, Download, Entry, FileError, GlobMatches, GlobQuery, GrepMatches,
    GrepQuery, SearchError, SearchLimits, Stat, Workspace, READ_MAX_BYTES,
};
use super::{held_while_read, Sandbox};
use app::domain::SessionId;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use paddock_sandbox_agent::archive::STALL;
use paddock_sandbox_agent::search::Timed;
use paddock_sandbox_agent::{
    record, Archive, FilePath, Kind, FILE_ERROR_STATUS, RECORD_MAX, SIZE_HEADER,
};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// Longest answer read whole: a folder's listing, a refusal.
const ANSWER_MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long the agent may take to answer a file operation (and to send a
/// whole answer).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The slowest a file written is taken to travel to a remote agent: its
/// answer comes only once it has the whole file, so a write waits
/// [`ANSWER_TIMEOUT`] and the file's time at this rate.
const SLOWEST_BYTES_PER_SEC: u64 = 256 * 1024;
/// Files and archives a session's agent sends at once.
pub const STREAMS_PER_SESSION: usize = 6;

/// A sandbox whose workspace's files its agent serves.
#[async_trait::async_trait]
pub trait AgentFiles: Sandbox {
    /// The session's agent for a file operation: `None` when its sandbox
    /// was never made (its workspace is empty); why not when it cannot be
    /// reached (a stopped sandbox is not started for it).
    async fn files_agent(&self, session: SessionId) -> Result<Option<AgentConnection>, String>;
    /// A slot for one more file sent by the session's agent, if it has
    /// one left ([`STREAMS_PER_SESSION`]).
    fn file_stream_slot(&self, session: SessionId) -> Option<OwnedSemaphorePermit>;
}

pub struct AgentWorkspace<'a> {
    sandbox: &'a dyn AgentFiles,
    session: SessionId,
}

/// What became of a file operation the agent was asked.
enum Answer {
    /// It did it: its answer.
    Done(hyper::Response<Incoming>),
    /// The sandbox was never made: its workspace is empty.
    NoSandbox,
}

fn unreachable(about: &str, why: impl std::fmt::Display) -> FileError {
    FileError::Unreachable(format!("{about:?}: {why}"))
}

impl<'a> AgentWorkspace<'a> {
    pub fn new(sandbox: &'a dyn AgentFiles, session: SessionId) -> Self {
        Self { sandbox, session }
    }

    /// Calls `op` on the agent with `body`: its answer when it did what
    /// was asked, the [`FileError`] it refused with, or why it could not be
    /// asked (`about` names the file in that error).
    async fn call(&self, op: &str, body: Vec<u8>, about: &str) -> Result<Answer, FileError> {
        self.call_within(op, body, about, ANSWER_TIMEOUT).await
    }

    /// [`Self::call`], answered within `within`.
    async fn call_within(
        &self,
        op: &str,
        body: Vec<u8>,
        about: &str,
        within: Duration,
    ) -> Result<Answer, FileError> {
        let Some(connection): Option<AgentConnection> = self
            .sandbox
            .files_agent(self.session)
            .await
            .map_err(|why| unreachable(about, why))?
        else {
            return Ok(Answer::NoSandbox);
        };
        let response = ask(connection, op, body, within)
            .await
            .map_err(|why| unreachable(about, why))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Answer::Done(response));
        }
        let said = whole(response.into_body())
            .await
            .map_err(|why| unreachable(about, why))?;
        if status.as_u16() == FILE_ERROR_STATUS {
            if let Ok(refusal) = serde_json::from_slice::<FileError>(&said) {
                return Err(refusal);
            }
        }
        Err(unreachable(
            about,
            format!("the sandbox agent: {}", String::from_utf8_lossy(&said)),
        ))
    }

    /// A search (`/fs/glob`, `/fs/grep`) by the agent, within the limits'
    /// time; Stop abandons it (and the agent stops it). `None` when the
    /// sandbox was never made: its workspace is empty.
    async fn search<Q: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        query: &Q,
        limits: SearchLimits<'_>,
    ) -> Result<Option<T>, SearchError> {
        let searched = async {
            let connection = match self.sandbox.files_agent(self.session).await {
                Ok(Some(connection)) => connection,
                Ok(None) => return Ok(None),
                Err(why) => return Err(SearchError::Failed(why)),
            };
            let timed = Timed {
                query,
                timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            };
            // The agent's own limit passes first.
            let within = limits.timeout.saturating_add(ANSWER_TIMEOUT);
            let response = ask(connection, op, json(&timed), within)
                .await
                .map_err(SearchError::Failed)?;
            let status = response.status();
            let said = whole(response.into_body())
                .await
                .map_err(SearchError::Failed)?;
            if status.is_success() {
                return serde_json::from_slice(&said)
                    .map(Some)
                    .map_err(|e| SearchError::Failed(format!("the sandbox agent's answer: {e}")));
            }
            if status.as_u16() == FILE_ERROR_STATUS {
                if let Ok(refusal) = serde_json::from_slice::<SearchError>(&said) {
                    return Err(refusal);
                }
            }
            Err(SearchError::Failed(format!(
                "the sandbox agent: {}",
                String::from_utf8_lossy(&said)
            )))
        };
        tokio::select! {
            searched = searched => searched,
            () = limits.cancel.cancelled() => Err(SearchError::Cancelled),
        }
    }

    /// A slot for one more file sent by the session's agent.
    fn stream_slot(&self, about: &str) -> Result<OwnedSemaphorePermit, FileError> {
        self.sandbox.file_stream_slot(self.session).ok_or_else(|| {
            unreachable(
                about,
                format!(
                    "the session's sandbox is sending {STREAMS_PER_SESSION} files already: try \
                     again once one is done"
                ),
            )
        })
    }

    /// A file, as `/fs/read` sends it, holding `slot` while it is read:
    /// one of the session's [`STREAMS_PER_SESSION`] for a download, whose
    /// reader may be slow; none for what the server reads whole at once
    /// (see [`Workspace::read`]), so that people's downloads never leave
    /// the agent's own reads without one.
    async fn open(
        &self,
        path: &str,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Download, FileError> {
        let asked = json(&FilePath { path: path.into() });
        let response = match self.call("/fs/read", asked, path).await? {
            Answer::Done(response) => response,
            Answer::NoSandbox => return Err(FileError::NotFound(path.to_owned())),
        };
        let size = response
            .headers()
            .get(SIZE_HEADER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .ok_or_else(|| unreachable(path, "the sandbox agent did not say the file's size"))?;
        Ok(Download {
            size,
            body: pumped(response.into_body(), Some(size), slot),
        })
    }
}

/// What a search of `dir` finds in the empty workspace of a sandbox never
/// made: `nothing` in the workspace itself; `dir` is not there.
fn in_no_workspace<T>(dir: &str, nothing: T) -> Result<T, SearchError> {
    if relative(dir)? == std::path::Path::new(".") {
        Ok(nothing)
    } else {
        Err(SearchError::NotFound)
    }
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// An answer's body, whole (up to [`ANSWER_MAX_BYTES`], within
/// [`ANSWER_TIMEOUT`]).
async fn whole(body: Incoming) -> Result<Bytes, String> {
    let collected = http_body_util::Limited::new(body, ANSWER_MAX_BYTES).collect();
    match tokio::time::timeout(ANSWER_TIMEOUT, collected).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) => Err(format!("the sandbox agent's answer: {e}")),
        Err(_) => Err("the sandbox agent's answer did not end in time".to_owned()),
    }
}

/// An answer's body as it comes, holding `slot` until it ends: exactly
/// `size` bytes where that is known (a file cut short, or longer than it
/// said, is an error). A reader that takes nothing for [`STALL`], or goes
/// away, drops the answer, which frees its part of the connection.
fn pumped(body: Incoming, size: Option<u64>, slot: Option<OwnedSemaphorePermit>) -> ByteStream {
    let checked =
        futures_util::stream::unfold((body, 0u64), move |(mut body, mut sent)| async move {
            loop {
                let chunk = match body.frame().await {
                    None if size.is_some_and(|size| sent < size) => {
                        Err(std::io::ErrorKind::UnexpectedEof.into())
                    }
                    None => return None,
                    Some(Err(e)) => Err(std::io::Error::other(e)),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            sent += data.len() as u64;
                            if size.is_some_and(|size| sent > size) {
                                Err(std::io::ErrorKind::InvalidData.into())
                            } else {
                                Ok(data)
                            }
                        }
                        Err(_) => continue,
                    },
                };
                return Some((chunk, (body, sent)));
            }
        });
    held_while_read(checked.boxed(), slot, STALL)
}

#[async_trait::async_trait]
impl Workspace for AgentWorkspace<'_> {
    async fn read(&self, path: &str) -> Result<Vec<u8>, FileError> {
        let download = self.open(path, None).await?;
        if download.size > READ_MAX_BYTES {
            return Err(FileError::TooLarge {
                path: path.to_owned(),
                size: download.size,
            });
        }
        let mut data = Vec::with_capacity(download.size as usize);
        let mut body = download.body;
        let read = async {
            while let Some(chunk) = body.next().await {
                data.extend_from_slice(&chunk?);
            }
            std::io::Result::Ok(())
        };
        match tokio::time::timeout(ANSWER_TIMEOUT, read).await {
            Ok(Ok(())) => Ok(data),
            Ok(Err(e)) => Err(unreachable(path, e)),
            Err(_) => Err(unreachable(path, "the file did not come in time")),
        }
    }

    async fn write(&self, path: &str, data: &[u8]) -> Result<(), FileError> {
        let start = json(&FilePath { path: path.into() });
        let mut records = record(Kind::Start, &start);
        for chunk in data.chunks(RECORD_MAX) {
            records.extend_from_slice(&record(Kind::Stdin, chunk));
        }
        let sending = Duration::from_secs(data.len() as u64 / SLOWEST_BYTES_PER_SEC);
        match self
            .call_within("/fs/write", records, path, ANSWER_TIMEOUT + sending)
            .await?
        {
            Answer::Done(_) => Ok(()),
            Answer::NoSandbox => Err(FileError::Unreachable(
                "The session's sandbox has not started yet, and on a remote Docker host files \
                 are written through it: send a prompt first."
                    .into(),
            )),
        }
    }

    async fn delete(&self, path: &str) -> Result<(), FileError> {
        match self
            .call("/fs/delete", json(&FilePath { path: path.into() }), path)
            .await?
        {
            Answer::Done(_) => Ok(()),
            Answer::NoSandbox => Err(FileError::NotFound(path.to_owned())),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<Entry>, FileError> {
        let asked = json(&FilePath { path: path.into() });
        let response = match self.call("/fs/list", asked, path).await? {
            Answer::Done(response) => response,
            // The workspace of a sandbox never made is there, and empty.
            Answer::NoSandbox if relative(path)? == std::path::Path::new(".") => {
                return Ok(Vec::new())
            }
            Answer::NoSandbox => return Err(FileError::NotFound(path.to_owned())),
        };
        let listed = whole(response.into_body())
            .await
            .map_err(|why| unreachable(path, why))?;
        serde_json::from_slice(&listed).map_err(|e| unreachable(path, e))
    }

    async fn stat(&self, path: &str) -> Result<Stat, FileError> {
        let asked = json(&FilePath { path: path.into() });
        let response = match self.call("/fs/stat", asked, path).await? {
            Answer::Done(response) => response,
            Answer::NoSandbox => return Err(FileError::NotFound(path.to_owned())),
        };
        let said = whole(response.into_body())
            .await
            .map_err(|why| unreachable(path, why))?;
        serde_json::from_slice(&said).map_err(|e| unreachable(path, e))
    }

    async fn download(&self, path: &str) -> Result<Download, FileError> {
        self.open(path, Some(self.stream_slot(path)?)).await
    }

    async fn archive(&self, top: &str) -> Result<ByteStream, FileError> {
        let slot = self.stream_slot(".")?;
        let asked = json(&Archive { top: top.into() });
        match self.call("/fs/archive", asked, ".").await? {
            Answer::Done(response) => Ok(pumped(response.into_body(), None, Some(slot))),
            Answer::NoSandbox => {
                // An empty workspace: an archive of nothing.
                let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                let made = tar::Builder::new(gz)
                    .into_inner()
                    .and_then(|gz| gz.finish())
                    .map(Bytes::from)
                    .map_err(|e| unreachable(".", e))?;
                Ok(futures_util::stream::once(async move { Ok(made) }).boxed())
            }
        }
    }

    async fn glob(
        &self,
        query: &GlobQuery,
        limits: SearchLimits<'_>,
    ) -> Result<GlobMatches, SearchError> {
        match self.search("/fs/glob", query, limits).await? {
            Some(found) => Ok(found),
            None => in_no_workspace(&query.dir, GlobMatches::default()),
        }
    }

    async fn grep(
        &self,
        query: &GrepQuery,
        limits: SearchLimits<'_>,
    ) -> Result<GrepMatches, SearchError> {
        match self.search("/fs/grep", query, limits).await? {
            Some(found) => Ok(found),
            None => in_no_workspace(&query.dir, GrepMatches::default()),
        }
    }
}
