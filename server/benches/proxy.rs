//! The LLM proxy's cost, and the two engines side by side, in one run:
//!
//! 1. The same streamed Messages API request sent to the scripted model
//!    directly (TCP) and through Paddock's credential proxy (its Unix socket:
//!    token check, budget check, forward, metered stream back), interleaved,
//!    each on one kept-alive connection as the CLI keeps its own: time to
//!    the first streamed byte and to the last, p50/p99, and what the proxy
//!    adds.
//! 2. One scripted multi-tool task (a command, a file write, a command that
//!    reads both files, a final answer) run by the native engine and by the
//!    claude-code engine (the real CLI in its sandbox), wall time from the
//!    prompt to idle.
//!
//! Run:
//!
//!     cargo bench --bench proxy     # needs dockerd, the agent image and the CLI (scripts/setup)
//!     PROXY_BENCH_RUNS=500 ENGINE_BENCH_RUNS=5 cargo bench --bench proxy

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use app::accounts::Caller;
use app::api::Backend;
use app::domain::{Engine, EventKind, NewSession, Session, SessionStatus};
use clap::Parser;
use common::{ms, percentile};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use paddock_model::{Scenario, ScriptedModel};
use serde_json::{json, Value};
use server::paddock::Paddock;
use server::proxy::SOCKET_NAME;
use server::Config;
use std::time::{Duration, Instant};

fn runs(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn paddock(dir: &std::path::Path, model: std::net::SocketAddr, sandbox: &str) -> Paddock {
    Paddock::open(
        Config::try_parse_from([
            "paddock".to_owned(),
            format!("--sandbox={sandbox}"),
            format!("--database-url=sqlite://{}/paddock.db", dir.display()),
            format!("--workspace-root={}", dir.join("workspaces").display()),
            format!("--claude-code-root={}", dir.join("cc").display()),
            format!("--master-key-file={}", dir.join("master.key").display()),
            format!("--anthropic-base-url=http://{model}"),
            "--anthropic-api-key=sk-bench".into(),
        ])
        .unwrap(),
    )
    .await
    .unwrap()
}

async fn session(paddock: &Paddock, engine: Engine) -> Session {
    let spec = NewSession {
        name: "bench".into(),
        engine: Some(engine),
        permission_mode: Some(app::domain::PermissionMode::Auto),
        ..Default::default()
    }
    .validate()
    .unwrap();
    paddock.store.create_session(&spec, None).await.unwrap()
}

/// Sends one request; returns (time to the first body byte, to the last).
async fn timed(
    sender: &mut SendRequest<Full<Bytes>>,
    token: &str,
    body: &Bytes,
) -> (Duration, Duration) {
    let request = hyper::Request::post("/v1/messages?beta=true")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", token)
        .body(Full::new(body.clone()))
        .unwrap();
    sender.ready().await.unwrap();
    let started = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut first = None;
    while let Some(frame) = body.frame().await {
        frame.unwrap();
        first.get_or_insert_with(|| started.elapsed());
    }
    (first.unwrap(), started.elapsed())
}

async fn connect<S>(stream: S) -> SendRequest<Full<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn proxy_latency(runs: usize) {
    let turn = json!({"reply": "A streamed answer of a few deltas, as a short reply would be.", "chunk": 8});
    let scenario = Value::Array(vec![turn; 2 * runs + 20]);
    let model = ScriptedModel::new(Scenario::from_json(&scenario.to_string()).unwrap())
        .with_api_key(Some("sk-bench".into()));
    let addr = model.spawn().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paddock = paddock(dir.path(), addr, "local").await;
    let s = session(&paddock, Engine::ClaudeCode).await;
    let lease = paddock.proxy.open(s.id).await.unwrap();
    let socket = paddock.proxy.socket_dir(s.id).join(SOCKET_NAME);
    let mut direct = connect(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    let mut proxied = connect(tokio::net::UnixStream::connect(&socket).await.unwrap()).await;
    let body = Bytes::from(
        json!({
            "model": "claude-sonnet-4-5", "max_tokens": 256, "stream": true,
            "messages": [{"role": "user", "content": "Say something short."}],
        })
        .to_string(),
    );
    // Warm both paths (connections, the proxy's upstream pool, SQLite).
    for _ in 0..10 {
        timed(&mut direct, "sk-bench", &body).await;
        timed(&mut proxied, &lease.token, &body).await;
    }
    let (mut d_first, mut d_total, mut p_first, mut p_total) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let (f, t) = timed(&mut direct, "sk-bench", &body).await;
        d_first.push(f);
        d_total.push(t);
        let (f, t) = timed(&mut proxied, &lease.token, &body).await;
        p_first.push(f);
        p_total.push(t);
    }
    paddock.proxy.close(s.id, lease).await;
    println!("\nLLM proxy, {runs} streamed requests each way, interleaved:\n");
    println!("| measure | direct p50 | direct p99 | via proxy p50 | via proxy p99 | added p50 | added p99 |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, direct, proxied) in [
        ("time to first byte", &mut d_first, &mut p_first),
        ("whole response", &mut d_total, &mut p_total),
    ] {
        let (d50, d99) = (percentile(direct, 0.5), percentile(direct, 0.99));
        let (p50, p99) = (percentile(proxied, 0.5), percentile(proxied, 0.99));
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            ms(d50),
            ms(d99),
            ms(p50),
            ms(p99),
            ms(p50.saturating_sub(d50)),
            ms(p99.saturating_sub(d99)),
        );
    }
}

/// The same task in each engine's own tool names.
fn task(engine: Engine) -> Value {
    let (bash, write, path) = match engine {
        Engine::Native => ("bash", "write_file", "path"),
        Engine::ClaudeCode => ("Bash", "Write", "file_path"),
    };
    let b = match engine {
        Engine::Native => "notes/b.txt",
        Engine::ClaudeCode => "/workspace/notes/b.txt",
    };
    json!([
        {"reply": [{"text": "Setting up."}, {"tool_use": {"name": bash, "input": {"command": "mkdir -p notes && echo one > notes/a.txt"}}}]},
        {"reply": [{"tool_use": {"name": write, "input": {path: b, "content": "two\n"}}}]},
        {"reply": [{"tool_use": {"name": bash, "input": {"command": "cat notes/a.txt notes/b.txt | wc -l"}}}]},
        {"reply": "Both files are there: 2 lines."}
    ])
}

async fn engine_wall_time(engine: Engine, runs: usize) -> Vec<Duration> {
    let mut scenario = Vec::new();
    for _ in 0..runs + 1 {
        scenario.extend(task(engine).as_array().unwrap().iter().cloned());
    }
    let model =
        ScriptedModel::new(Scenario::from_json(&Value::Array(scenario).to_string()).unwrap())
            .with_api_key(Some("sk-bench".into()));
    let addr = model.spawn().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paddock = paddock(dir.path(), addr, "docker").await;
    let mut times = Vec::new();
    // The first run of each engine warms its sandbox and is not counted.
    for i in 0..runs + 1 {
        let s = session(&paddock, engine).await;
        paddock.runner.start_sandbox(&s).await.unwrap();
        let started = Instant::now();
        paddock
            .send_prompt(
                &Caller::local_operator(),
                s.id,
                "Write notes/a.txt and notes/b.txt, then count their lines.".into(),
            )
            .await
            .unwrap();
        while paddock.runner.is_running(s.id) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        let events = paddock.store.events_after(s.id, 0, 10_000).await.unwrap();
        let ok = events.iter().rev().find_map(|e| match &e.kind {
            EventKind::Status { status, .. } => Some(*status == SessionStatus::Idle),
            _ => None,
        });
        assert_eq!(ok, Some(true), "{engine} run failed: {events:#?}");
        let notes = dir
            .path()
            .join("workspaces")
            .join(s.id.to_string())
            .join("notes");
        assert_eq!(
            std::fs::read_to_string(notes.join("a.txt")).unwrap(),
            "one\n"
        );
        assert_eq!(
            std::fs::read_to_string(notes.join("b.txt")).unwrap(),
            "two\n"
        );
        let counted = events.iter().any(|e| {
            matches!(&e.kind, EventKind::ToolResult { output, is_error: false, .. } if output.trim() == "2")
        });
        assert!(
            counted,
            "{engine}: the last command did not count 2 lines: {events:#?}"
        );
        if i > 0 {
            times.push(elapsed);
        }
        paddock.sandbox.destroy(s.id).await.unwrap();
    }
    times
}

#[tokio::main]
async fn main() {
    proxy_latency(runs("PROXY_BENCH_RUNS", 300)).await;
    let runs = runs("ENGINE_BENCH_RUNS", 5);
    let mut native = engine_wall_time(Engine::Native, runs).await;
    let mut cli = engine_wall_time(Engine::ClaudeCode, runs).await;
    println!("\nOne scripted task (command, file write, command, answer), {runs} runs each, wall time prompt → idle:\n");
    println!("| engine | p50 | max |");
    println!("| --- | --- | --- |");
    for (name, times) in [("native", &mut native), ("claude-code", &mut cli)] {
        let p50 = percentile(times, 0.5);
        let max = percentile(times, 1.0);
        println!("| {name} | {} | {} |", ms(p50), ms(max));
    }
}
