//! A frame of a live stream before it is written: its name (the SSE
//! `event:`), its id (the `seq` of a stored event, the resume point) and
//! its data (JSON). The streams of one session or of the sessions list
//! write frames as they are (`events.rs`, `updates.rs`); the browser's one
//! connection carries frames of many of them, each tagged (`live.rs`).
//! [`respond`] makes any of them the answer.

use axum::http::HeaderName;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::{Stream, StreamExt};
use std::convert::Infallible;
use std::future::Future;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::AbortOnDropHandle;

/// A live stream as the answer, until `end` completes: `keep_alive` while
/// idle (every 15 s), and no buffering by proxies such as nginx.
pub fn respond(
    frames: impl Stream<Item = sse::Event> + Send + 'static,
    end: impl Future<Output = ()> + Send + 'static,
    keep_alive: KeepAlive,
) -> impl IntoResponse {
    let (ended, watching) = apart(end);
    let stream = frames
        .map(move |frame| {
            let _ = &watching;
            Ok::<_, Infallible>(frame)
        })
        .take_until(ended);
    (
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(stream).keep_alive(keep_alive),
    )
}

/// `end` (a stream's check that its caller may still follow it) run on a
/// task of its own: a stream is read only as fast as its client takes it,
/// so one that stopped reading would have its check wait too, and on
/// reading again get what it may no longer see before the check caught
/// up. What completes once `end` has, and the guard that ends the task
/// with the stream.
pub fn apart(
    end: impl Future<Output = ()> + Send + 'static,
) -> (WaitForCancellationFutureOwned, AbortOnDropHandle<()>) {
    let ended = CancellationToken::new();
    let done = ended.clone();
    let watching = AbortOnDropHandle::new(tokio::spawn(async move {
        // Cut however the check ends, a panic of its included.
        let _cut = done.drop_guard();
        end.await;
    }));
    (ended.cancelled_owned(), watching)
}

pub struct Frame {
    pub name: &'static str,
    pub id: Option<i64>,
    pub data: String,
}

impl Frame {
    pub fn new(name: &'static str, data: String) -> Self {
        Self {
            name,
            id: None,
            data,
        }
    }

    /// `data` as JSON.
    pub fn json(name: &'static str, data: &impl serde::Serialize) -> serde_json::Result<Self> {
        Ok(Self::new(name, serde_json::to_string(data)?))
    }

    /// The frame as it is on a stream of its own.
    pub fn into_sse(self) -> sse::Event {
        let event = sse::Event::default().event(self.name).data(self.data);
        match self.id {
            Some(id) => event.id(id.to_string()),
            None => event,
        }
    }
}
