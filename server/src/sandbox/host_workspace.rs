//! The [`Workspace`] of the Docker and local backends: the session's host
//! folder, mounted into its sandbox, for reading, writing and listing, and
//! searches run in the sandbox itself.

use super::host_folder::HostFolder;
use super::search;
use super::workspace::{
    ByteStream, Download, Entry, FileError, GlobMatches, GlobQuery, GrepMatches, GrepQuery,
    SearchError, SearchLimits, Workspace,
};
use super::Sandbox;
use app::domain::SessionId;
use bytes::Bytes;
use futures_util::StreamExt;
use std::io::Write;
use tokio::sync::mpsc;

/// Bytes of an archive sent per chunk, and chunks made ahead of the client.
const ARCHIVE_CHUNK: usize = 64 * 1024;
const ARCHIVE_AHEAD: usize = 4;
/// How long an archive waits for a client that stopped reading before it
/// gives up (and frees its thread).
const ARCHIVE_STALL: std::time::Duration = std::time::Duration::from_secs(60);

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

    async fn download(&self, path: &str) -> Result<Download, FileError> {
        let open = self.blocking(path, |f, p| f.open_file(p)).await?;
        let file = tokio::fs::File::from_std(open.file);
        Ok(Download {
            size: open.size,
            body: tokio_util::io::ReaderStream::new(tokio::io::AsyncReadExt::take(file, open.size))
                .boxed(),
        })
    }

    fn archive(&self, top: &str) -> ByteStream {
        let (tx, rx) = mpsc::channel(ARCHIVE_AHEAD);
        let (folder, top) = (self.folder.clone(), top.to_owned());
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let out = ChannelWriter {
                tx: tx.clone(),
                runtime,
                buf: Vec::with_capacity(ARCHIVE_CHUNK),
            };
            let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            let made = folder
                .archive(&top, gz)
                .and_then(|gz| gz.finish())
                .and_then(|mut out| out.flush());
            if let Err(e) = made {
                // The client left or stalled (nothing to tell), or a read
                // failed: the archive ends with an error rather than
                // looking whole.
                let _ = tx.try_send(Err(e));
            }
        });
        tokio_stream_of(rx)
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

/// A `Write` that hands its bytes, in chunks, to an async receiver; writing
/// fails once the receiver is gone, or has taken nothing for
/// [`ARCHIVE_STALL`].
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(ARCHIVE_CHUNK),
        ));
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(ARCHIVE_STALL, self.tx.send(Ok(chunk))));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::ErrorKind::BrokenPipe.into()),
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= ARCHIVE_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn tokio_stream_of(mut rx: mpsc::Receiver<std::io::Result<Bytes>>) -> ByteStream {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
