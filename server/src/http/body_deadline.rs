//! A request body that must come whole in time: what reaches Paddock
//! without signing in (the sign-in and setup forms, deliveries to
//! triggers) could otherwise hold a connection for ever by sending a byte
//! just within each stall ([`RequestBodyTimeoutLayer`] counts from the
//! last frame).
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
use tokio::time::Sleep;

/// The slowest a body is taken to come, past the stall: an email of 40 MB
/// to a trigger has ten minutes more.
const SLOWEST_BYTES_PER_SEC: u64 = 64 * 1024;

/// `request` with its body given up (an error for whatever reads it, which
/// answers 400) unless it has come whole within `stall` and the time its
/// declared length takes at [`SLOWEST_BYTES_PER_SEC`] (counted up to the
/// largest body a door without sign-in takes, an email), from when it is
/// first read (a delivery may wait its turn to be read).
pub fn within(request: Request, stall: Duration) -> Request {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0)
        .min(crate::triggers::EMAIL_MAX_BYTES);
    let limit = stall + Duration::from_secs(declared / SLOWEST_BYTES_PER_SEC);
    request.map(|body| {
        Body::new(Deadline {
            body,
            limit,
            left: None,
        })
    })
}

struct Deadline {
    body: Body,
    limit: Duration,
    /// Started at the first read.
    left: Option<Pin<Box<Sleep>>>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let limit = this.limit;
        let left = this
            .left
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if left.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(
                "the request's body did not come whole in time",
            ))));
        }
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
