//! The [`Workspace`] of a sandbox whose files are not on this server's host
//! (a remote Docker host): every file operation is a call on the sandbox's
//! agent (`/fs/read`, `/fs/write`, `/fs/list`, `/fs/archive`), which
//! confines its paths to `/workspace` inside the sandbox as
//! [`ConfinedFolder`](super::ConfinedFolder) does here; searches run in
//! the sandbox, as for every backend.

use super::agent_call::request;
use super::agent_link::{AgentConnection, RequestBody};
use super::docker::DockerSandbox;
use super::search;
use super::workspace::{
    relative, ByteStream, Download, Entry, FileError, GlobMatches, GlobQuery, GrepMatches,
    GrepQuery, SearchError, SearchLimits, Workspace, READ_MAX_BYTES,
};
use app::domain::SessionId;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use paddock_sandbox_agent::{
    record, Archive, FilePath, Kind, FILE_ERROR_STATUS, RECORD_MAX, SIZE_HEADER,
};

/// Longest answer read whole: a folder's listing, a refusal.
const ANSWER_MAX_BYTES: usize = 16 * 1024 * 1024;

pub struct AgentWorkspace<'a> {
    sandbox: &'a DockerSandbox,
    session: SessionId,
}

/// What the agent answered a file operation: its body, or a refusal.
enum Answer {
    Done(hyper::Response<Incoming>),
    /// The sandbox was never made: its workspace is empty.
    NoSandbox,
}

impl<'a> AgentWorkspace<'a> {
    pub fn new(sandbox: &'a DockerSandbox, session: SessionId) -> Self {
        Self { sandbox, session }
    }

    /// Calls `op` on the agent with `body`: its answer when it did what
    /// was asked, the [`FileError`] it refused with, or why it could not be
    /// asked (`about` names the file in that error).
    async fn call(&self, op: &str, body: Vec<u8>, about: &str) -> Result<Answer, FileError> {
        let unreachable = |why: String| FileError::Unreachable(format!("{about:?}: {why}"));
        let Some(connection): Option<AgentConnection> = self
            .sandbox
            .files_agent(self.session)
            .await
            .map_err(unreachable)?
        else {
            return Ok(Answer::NoSandbox);
        };
        let call = hyper::Request::post(op)
            .body::<RequestBody>(Full::new(Bytes::from(body)).boxed())
            .map_err(|e| unreachable(e.to_string()))?;
        let response = request(connection, call)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Answer::Done(response));
        }
        let said = whole(response.into_body()).await.unwrap_or_default();
        if status.as_u16() == FILE_ERROR_STATUS {
            if let Ok(refusal) = serde_json::from_slice::<FileError>(&said) {
                return Err(refusal);
            }
        }
        Err(unreachable(format!(
            "the sandbox agent: {}",
            String::from_utf8_lossy(&said)
        )))
    }

    /// A file, as `/fs/read` sends it.
    async fn open(&self, path: &str) -> Result<Download, FileError> {
        let answer = self.call("/fs/read", json(&FilePath { path: path.into() }), path);
        let response = match answer.await? {
            Answer::Done(response) => response,
            Answer::NoSandbox => return Err(FileError::NotFound(path.to_owned())),
        };
        let size = response
            .headers()
            .get(SIZE_HEADER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let mut sent = 0u64;
        let body = response
            .into_body()
            .into_data_stream()
            .map_err(std::io::Error::other)
            // A file cut short (the agent could not read it to its end)
            // is an error, not a smaller file.
            .chain(futures_util::stream::once(async { Ok(Bytes::new()) }))
            .map(move |chunk| {
                let chunk = chunk?;
                sent += chunk.len() as u64;
                if chunk.is_empty() && sent < size {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
                Ok(chunk)
            })
            .try_filter(|chunk| std::future::ready(!chunk.is_empty()))
            .boxed();
        Ok(Download { size, body })
    }
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// An answer's body, whole (up to [`ANSWER_MAX_BYTES`]).
async fn whole(body: Incoming) -> Result<Bytes, String> {
    http_body_util::Limited::new(body, ANSWER_MAX_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("the sandbox agent's answer: {e}"))
}

#[async_trait::async_trait]
impl Workspace for AgentWorkspace<'_> {
    async fn read(&self, path: &str) -> Result<Vec<u8>, FileError> {
        let download = self.open(path).await?;
        if download.size > READ_MAX_BYTES {
            return Err(FileError::TooLarge {
                path: path.to_owned(),
                size: download.size,
            });
        }
        let mut data = Vec::with_capacity(download.size as usize);
        let mut body = download.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FileError::Io {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }

    async fn write(&self, path: &str, data: &[u8]) -> Result<(), FileError> {
        let start = json(&FilePath { path: path.into() });
        let mut records = record(Kind::Start, &start);
        for chunk in data.chunks(RECORD_MAX - 8) {
            records.extend_from_slice(&record(Kind::Stdin, chunk));
        }
        match self.call("/fs/write", records, path).await? {
            Answer::Done(_) => Ok(()),
            Answer::NoSandbox => Err(FileError::Unreachable(
                "The session's sandbox has not started yet, and on a remote Docker host files \
                 are written through it: send a prompt first."
                    .into(),
            )),
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
        let io = |message: String| FileError::Io {
            path: path.to_owned(),
            message,
        };
        let listed = whole(response.into_body()).await.map_err(io)?;
        serde_json::from_slice(&listed).map_err(|e| io(e.to_string()))
    }

    async fn download(&self, path: &str) -> Result<Download, FileError> {
        self.open(path).await
    }

    async fn archive(&self, top: &str) -> ByteStream {
        let asked = json(&Archive { top: top.into() });
        match self.call("/fs/archive", asked, ".").await {
            Ok(Answer::Done(response)) => response
                .into_body()
                .into_data_stream()
                .map_err(std::io::Error::other)
                .boxed(),
            Ok(Answer::NoSandbox) => {
                // An empty workspace: an archive of nothing.
                let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                let made = tar::Builder::new(gz)
                    .into_inner()
                    .and_then(|gz| gz.finish())
                    .map(Bytes::from);
                futures_util::stream::once(async move { made }).boxed()
            }
            Err(e) => {
                futures_util::stream::once(async move { Err(std::io::Error::other(e)) }).boxed()
            }
        }
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
