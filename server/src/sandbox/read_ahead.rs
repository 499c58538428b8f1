//! A byte stream (a download, an archive) read ahead of its reader by a
//! task of its own, which holds what the stream costs (a transfer slot)
//! only while the reader reads.

use super::ByteStream;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks taken ahead of the reader.
const AHEAD: usize = 4;

/// `stream`, read by a task that holds `slot`. The task, and with it the
/// stream's source and the slot, ends when the stream does, when the
/// reader goes away, or when the reader takes nothing for `stall`: a
/// download left unread on a connection kept open holds nothing. A
/// reader that comes back after that gets an error after what was read
/// ahead, never a clean end of something cut short.
pub fn held_while_read(
    mut stream: ByteStream,
    slot: impl Send + 'static,
    stall: Duration,
) -> ByteStream {
    let (tx, mut rx) = mpsc::channel(AHEAD);
    // Whether the reader got all there is to get: the end, or an error.
    let told_all = Arc::new(AtomicBool::new(false));
    let telling = told_all.clone();
    tokio::spawn(async move {
        let _slot = slot;
        loop {
            let chunk = tokio::select! {
                chunk = stream.next() => chunk,
                () = tx.closed() => return,
            };
            let Some(chunk) = chunk else {
                telling.store(true, Ordering::Release);
                return;
            };
            let last = chunk.is_err();
            match tokio::time::timeout(stall, tx.send(chunk)).await {
                Ok(Ok(())) if !last => {}
                Ok(Ok(())) => {
                    telling.store(true, Ordering::Release);
                    return;
                }
                Ok(Err(_)) | Err(_) => return,
            }
        }
    });
    let mut cut_short_told = false;
    futures_util::stream::poll_fn(move |cx| match rx.poll_recv(cx) {
        Poll::Ready(None) if !cut_short_told && !told_all.load(Ordering::Acquire) => {
            cut_short_told = true;
            Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "given up: its reader took nothing for too long",
            ))))
        }
        polled => polled,
    })
    .boxed()
}
