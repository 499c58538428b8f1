//! `paddock-model`: the scripted Anthropic-compatible model server as a
//! process, for clients that must reach it over the network (the Claude Code
//! CLI in a sandbox, browser tests). Point `ANTHROPIC_BASE_URL` at the address
//! it prints. See `server::scripted` for the scenario format.

use anyhow::Context;
use clap::Parser;
use server::scripted::{Scenario, ScriptedModel};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "paddock-model",
    about = "Scripted Anthropic Messages API server for tests"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is
    /// printed).
    #[arg(long, env = "PADDOCK_MODEL_ADDR", default_value = "127.0.0.1:4000")]
    addr: SocketAddr,
    /// Scenario file (JSON) to play.
    #[arg(long, env = "PADDOCK_MODEL_SCENARIO")]
    scenario: PathBuf,
    /// When set, every request must carry it as `x-api-key` or
    /// `Authorization: Bearer`.
    #[arg(long, env = "PADDOCK_MODEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries only the "listening" line that
    // callers parse.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let args = Args::parse();
    let scenario = Scenario::from_file(&args.scenario)?;
    tracing::info!(
        turns = scenario.turns.len(),
        "scenario {}",
        args.scenario.display()
    );
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "paddock-model listening on http://{addr}")?;
    stdout.flush()?;

    ScriptedModel::new(scenario)
        .with_api_key(args.api_key)
        .serve_with_shutdown(listener, shutdown_signal())
        .await
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
