//! Paddock's server: [`Paddock`](paddock::Paddock) composes the store, the
//! sandboxes, the journal and hub, the engines and the credential proxy; the
//! [`http`] surface serves the dashboard, its server functions, the REST API
//! and the event streams. The README's architecture section maps the
//! modules.

pub mod activity;
pub mod agent_templates;
pub mod auth;
pub mod bus;
pub mod changes;
pub mod cli;
pub mod config;
pub mod egress;
pub mod engine;
pub mod git;
pub mod http;
pub mod hub;
pub mod journal;
pub mod listener;
pub mod llm;
pub mod metrics;
pub mod notifications;
pub mod origin;
pub mod paddock;
pub mod presence;
pub mod proxy;
pub mod replica_lock;
pub mod replicas;
pub mod sandbox;
pub mod seal;
pub mod secret;
pub mod skill_archive;
pub mod store;
pub mod stream_budget;
pub mod sync;
pub mod telemetry;
pub mod template_renderers;
pub mod terminal_slots;
pub mod terminals;
pub mod tools;
pub mod transfers;
pub mod trigger_limits;
pub mod triggers;
pub mod vault;
pub mod workspace_files;
pub mod workspace_setup;
pub mod workspace_watch;

pub use config::Config;

use anyhow::Context;
use bus::Notice;
use std::future::Future;
use tokio::net::TcpListener;

/// Binds the configured address, opens the store and serves until SIGINT
/// or SIGTERM.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    // First: a second Paddock started by mistake on the same address stops
    // here, before its recovery takes the running one's sessions as its own.
    let addr = config.listen_addr();
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    // Named once (a default name may be drawn at random), then held: a
    // second process of this replica's name stops here too.
    config.replica = Some(config.replica_name());
    let _alone = replica_lock::hold(&config).await?;
    open_files_to_the_hard_limit();
    let state = http::AppState::new(&config).await?;
    let bound = listener.local_addr()?;
    tracing::info!("Paddock listening on http://{bound}");
    if let Some(warning) = http::request_guard::RequestGuard::new(&config).startup_warning() {
        tracing::warn!("{warning}");
    }
    if !state.paddock.auth.enabled() {
        tracing::warn!("sign-in is OFF (PADDOCK_AUTH=off): whoever reaches {addr} is the admin");
    } else if let Some(token) = state.paddock.auth.open_setup().await? {
        tracing::warn!(
            "No account exists yet. Open {}/setup?token={token} to create the first admin \
             (the link works once, until Paddock restarts), or run `paddock user add LOGIN \
             --role admin`.",
            config.base_url(bound)
        );
    }
    serve(listener, state, shutdown_signal()).await
}

/// Raises this process's limit of open files to the most it may have: the
/// usual soft limit (1024) is what the egress proxy's connections alone
/// may take (512 at once, two files each), and the web listener, the
/// database and the sandboxes' sockets would then fail to open files.
fn open_files_to_the_hard_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let was = limit.current;
        limit.current = limit.maximum;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => tracing::debug!("open files: at most {:?} (was {was:?})", limit.current),
            Err(e) => tracing::warn!("cannot raise the open files limit from {was:?}: {e}"),
        }
    }
}

/// Serves the app on `listener` until `shutdown` completes, then ends the
/// live streams, lets in-flight requests finish, and hands the sessions
/// running here to the other replicas.
pub async fn serve(
    listener: TcpListener,
    state: http::AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let paddock = state.paddock.clone();
    let hub = paddock.hub.clone();
    let shutdown = async move {
        shutdown.await;
        hub.shut_down();
    };
    // Event frames and deltas are small writes that must leave at once, not
    // wait for Nagle's algorithm to batch them with the next one.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY: {e}");
        }
    });
    let limits = listener::Limits {
        stall: paddock.config.client_stall(),
        connections: None,
    };
    listener::serve(listener, http::router(state), limits, shutdown).await;
    // Told to close with the shutdown: their ends in the transcripts.
    paddock
        .terminals
        .wait_closed(std::time::Duration::from_secs(5))
        .await;
    paddock.runner.hand_off().await;
    if let Some(bus) = &paddock.bus {
        if let Err(e) = bus.send(Notice::HandedOff).await {
            tracing::warn!("the other replicas were not told of this one's sessions: {e}");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
