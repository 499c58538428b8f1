//! A request body that must come whole in time: what reaches Paddock
//! without signing in (the sign-in and setup forms, deliveries to
//! triggers), or holds one of few places while it comes (an upload to a
//! workspace), could otherwise hold a connection, or the place, for ever
//! by sending a byte just within each stall ([`RequestBodyTimeoutLayer`]
//! counts from the last frame).
//!
//! [`RequestBodyTimeoutLayer`]: tower_http::timeout::RequestBodyTimeoutLayer

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The slowest a body is taken to come, past the stall: each byte that
/// came earns this much more time (a 40 MB email, ten minutes), so a body
/// sent a byte at a time earns next to none.
const SLOWEST_BYTES_PER_SEC: u64 = 64 * 1024;

/// `request` with its body given up (an error for whatever reads it, which
/// answers 400) unless it has come whole within `stall` from when it is
/// first read (a delivery may wait its turn to be read), and the time what
/// came of it takes at [`SLOWEST_BYTES_PER_SEC`].
pub fn within(request: Request, stall: Duration) -> Request {
    request.map(|body| {
        Body::new(Deadline {
            body,
            stall,
            received: 0,
            left: None,
        })
    })
}

struct Deadline {
    body: Body,
    stall: Duration,
    received: u64,
    /// Started at the first read, and moved on by what comes.
    left: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let stall = this.stall;
        let (started, left) = this.left.get_or_insert_with(|| {
            let now = Instant::now();
            (now, Box::pin(tokio::time::sleep_until(now + stall)))
        });
        if left.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(
                "the request's body did not come whole in time",
            ))));
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.received += data.len() as u64;
                let earned =
                    Duration::from_secs_f64(this.received as f64 / SLOWEST_BYTES_PER_SEC as f64);
                left.as_mut().reset(*started + stall + earned);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
