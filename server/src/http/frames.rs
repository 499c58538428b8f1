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

/// A live stream as the answer, until `end` completes: `keep_alive` while
/// idle (every 15 s), and no buffering by proxies such as nginx.
pub fn respond(
    frames: impl Stream<Item = sse::Event> + Send + 'static,
    end: impl Future<Output = ()> + Send + 'static,
    keep_alive: KeepAlive,
) -> impl IntoResponse {
    let stream = frames.map(Ok::<_, Infallible>).take_until(end);
    (
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(stream).keep_alive(keep_alive),
    )
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
