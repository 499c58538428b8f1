//! `paddock-model`: the scripted Anthropic-compatible model server as a
//! process, for clients that must reach it over the network (the Claude Code
//! CLI in a sandbox, browser tests). Point `ANTHROPIC_BASE_URL` at the address
//! it prints. See the library's documentation for the scenario format.

use anyhow::Context;
use clap::Parser;
use paddock_model::{Scenario, ScriptedModel};
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

    // No graceful shutdown: a test server holds nothing worth finishing, so
    // SIGINT and SIGTERM end it at once.
    ScriptedModel::new(scenario)
        .with_api_key(args.api_key)
        .serve(listener)
        .await
}
