//! Serving a router on a listener, as `axum::serve` does, with what that
//! leaves out: a client has [`Limits::stall`] to send a request's head
//! (hyper's header timeout, which needs a timer `axum::serve` never sets,
//! so a connection that sends a byte now and then was held for ever), and
//! at most [`Limits::connections`] are open at once where a limit is given.
//! Each request carries its connection's peer address (`ConnectInfo`).
//! Shutting down stops accepting and lets the requests underway finish.

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What one client may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest a request's head may take to arrive.
    pub stall: Duration,
    /// Connections open at once; more wait to be accepted.
    pub connections: Option<usize>,
    /// Whether HTTP/2 (without TLS, by prior knowledge) is served too.
    pub http2: bool,
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
    let graceful = GracefulShutdown::new();
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
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.stall);
            if limits.http2 {
                // WebSockets over HTTP/2 need CONNECT, as axum::serve has it.
                builder.http2().enable_connect_protocol();
            }
            let builder = match limits.http2 {
                true => builder,
                false => builder.http1_only(),
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::trace!("a connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
