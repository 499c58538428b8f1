//! Serving a router on a listener, as `axum::serve` does, with what that
//! leaves out: a connection has [`Limits::stall`] to send each request's
//! head, from the moment it opens or goes idle (hyper's header timeout,
//! which needs a timer `axum::serve` never sets, so a connection that sent
//! nothing, or a byte now and then, was held for ever), and as long to take
//! something of what is written to it once the socket's buffers are full
//! (an answer or a stream left unread, a client gone without a word: the
//! connection is closed, and what it held let go), and at most
//! [`Limits::connections`] are open at once where a limit is given. HTTP/1.1
//! only (with upgrades, for WebSockets): HTTP/2 without TLS would open many
//! requests on a connection, and no browser speaks it. Each request carries
//! its connection's peer address (`ConnectInfo`). Shutting down stops
//! accepting and lets the requests underway finish, for [`DRAIN`] at most;
//! the connections still busy then are cut (a credential proxy's, which a
//! sandbox could hold open past its run, reading an answer slowly).

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What one client may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest a request's head may take to arrive, counted from when the
    /// connection opens or its last answer ends; and longest the client
    /// may take nothing of what is written to it.
    pub stall: Duration,
    /// Connections open at once; more wait to be accepted.
    pub connections: Option<usize>,
}

/// Serves `app` on `listener` until `shutdown` completes, then until the
/// requests underway have.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let connections = TaskTracker::new();
    let (stop, stopping) = watch::channel(false);
    let cut = CancellationToken::new();
    let slots = limits.connections.map(|n| Arc::new(Semaphore::new(n)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = match &slots {
            Some(slots) => tokio::select! {
                slot = slots.clone().acquire_owned() => slot.ok(),
                () = &mut shutdown => break,
            },
            None => None,
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer.clone()));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let mut stopping = stopping.clone();
        let cut = cut.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.stall);
            let connection = http
                .serve_connection(TokioIo::new(WriteStall::new(io, limits.stall)), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let stop_asked = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop_asked => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        ended = connection => ended,
                        // Dropped, with the answer it was sending: its
                        // socket closes.
                        () = cut.cancelled() => return,
                    }
                }
            };
            if let Err(e) = ended {
                tracing::trace!("a connection ended: {e}");
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections still busy after {} s (a long download?): cut off",
            connections.len(),
            DRAIN.as_secs()
        );
        cut.cancel();
        connections.wait().await;
    }
}

/// A connection's socket, which fails a write its client has taken
/// nothing of for `stall` (the socket's buffers full all that time).
struct WriteStall<T> {
    io: T,
    stall: Duration,
    /// When the write waiting now fails, once one waits.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl<T> WriteStall<T> {
    fn new(io: T, stall: Duration) -> Self {
        Self {
            io,
            stall,
            deadline: None,
            waiting: false,
        }
    }

    /// `polled`, a write-side poll of the socket; an error in its place
    /// when it has waited for `stall`.
    fn watched<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        let at = tokio::time::Instant::now() + self.stall;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if !self.waiting {
            self.waiting = true;
            deadline.as_mut().reset(at);
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing of the answer for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watched(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watched(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watched(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watched(cx, polled)
    }
}

/// How long requests underway may take to finish once shutting down: well
/// within the 10 s a platform (`docker stop`) gives before it kills, so
/// that the sessions running here are handed off.
const DRAIN: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn shutting_down_does_not_wait_for_ever_on_a_request_that_never_ends() {
        // The request is under way once its handler runs.
        let (begun, handled) = tokio::sync::oneshot::channel::<()>();
        let begun = Arc::new(std::sync::Mutex::new(Some(begun)));
        let app = Router::new().fallback(move || {
            if let Some(begun) = begun.lock().unwrap().take() {
                let _ = begun.send(());
            }
            std::future::pending::<&'static str>()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = Limits {
            stall: Duration::from_secs(60),
            connections: None,
        };
        let served = tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /forever HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        handled.await.unwrap();
        let _ = stop.send(());
        tokio::time::timeout(DRAIN * 4, served)
            .await
            .expect("still waiting for the request")
            .unwrap();
        // Cut, not left to go on.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DRAIN, client.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection is still open");
    }

    #[tokio::test]
    async fn an_answer_left_unread_is_given_up() {
        // An endless answer, which says when it is let go.
        let (dropped, let_go) = tokio::sync::oneshot::channel::<()>();
        let dropped = Arc::new(std::sync::Mutex::new(Some(dropped)));
        let app = Router::new().fallback(move || {
            let on_drop = scopeguard(dropped.lock().unwrap().take());
            let chunks = futures_util::stream::repeat_with(move || {
                let _held = &on_drop;
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(vec![b'x'; 64 * 1024]))
            });
            async move { axum::body::Body::from_stream(chunks) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            stall: Duration::from_secs(1),
            connections: None,
        };
        tokio::spawn(serve(listener, app, limits, std::future::pending()));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /endless HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // Nothing read: the socket's buffers fill, and then the answer
        // waits on the client.
        tokio::time::timeout(Duration::from_secs(60), let_go)
            .await
            .expect("the unread answer is still held")
            .unwrap();
    }

    /// Sends on `signal` when dropped.
    fn scopeguard(signal: Option<tokio::sync::oneshot::Sender<()>>) -> impl Send + Sync {
        struct OnDrop(Option<tokio::sync::oneshot::Sender<()>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                if let Some(signal) = self.0.take() {
                    let _ = signal.send(());
                }
            }
        }
        OnDrop(signal)
    }
}
