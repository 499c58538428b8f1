//! A workspace as a gzipped tar, made as it is sent: on the server for a
//! host folder, and in the agent for a sandbox whose files are elsewhere.

use crate::folder::ConfinedFolder;
use bytes::Bytes;
use std::io::Write;
use std::time::Duration;
use tokio::sync::mpsc;

/// Bytes sent per chunk, and chunks made ahead of the reader.
const CHUNK: usize = 64 * 1024;
const AHEAD: usize = 4;
/// How long an archive (or a file) waits for a reader that stopped
/// reading before it gives up (and frees what it holds).
pub const STALL: Duration = Duration::from_secs(60);

/// The folder as a gzipped tar, every path under `top/`, in chunks as they
/// are made (on a blocking thread of the current runtime). A read that
/// fails ends it with the error rather than looking whole; a reader that
/// goes away (or takes nothing for a minute) stops it.
pub fn archive_gz(folder: ConfinedFolder, top: String) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(AHEAD);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter {
            tx: tx.clone(),
            runtime: runtime.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        let made = folder
            .archive(&top, gz)
            .and_then(|gz| gz.finish())
            .and_then(|mut out| out.flush());
        // Waited for as a chunk is: the reader that keeps the channel
        // full still learns it (else the archive ends as if whole).
        if let Err(e) = made {
            let _ = runtime.block_on(tokio::time::timeout(STALL, tx.send(Err(e))));
        }
    });
    rx
}

/// A `Write` that hands its bytes, in chunks, to an async receiver; writing
/// fails once the receiver is gone, or has taken nothing for [`STALL`].
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
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(STALL, self.tx.send(Ok(chunk))));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::ErrorKind::BrokenPipe.into()),
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
