//! A request body that must come whole within a time: what reaches Paddock
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

/// `request` with its body given up (an error for whatever reads it, which
/// answers 400) unless it has come whole within `limit`.
pub fn within(request: Request, limit: Duration) -> Request {
    request.map(|body| {
        Body::new(Deadline {
            body,
            left: Box::pin(tokio::time::sleep(limit)),
        })
    })
}

struct Deadline {
    body: Body,
    left: Pin<Box<Sleep>>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.left.as_mut().poll(cx).is_ready() {
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
