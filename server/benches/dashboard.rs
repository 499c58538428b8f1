//! Server-side rendering of a long session: the page of a session with
//! 10,000 events (prompts, Markdown answers with code, file edits with their
//! diffs, tool output), rendered by the real router from a real SQLite file.
//!
//!     cargo bench --bench dashboard
//!     DASHBOARD_BENCH_EVENTS=50000 cargo bench --bench dashboard
//!
//! The page renders the newest page of the transcript (older events load on
//! request), so its cost should not grow with the length of the session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use app::domain::{EventKind, NewSession, SessionStatus};
use clap::Parser;
use leptos::config::LeptosOptions;
use serde_json::json;
use server::http::AppState;
use server::paddock::Paddock;
use server::Config;
use std::sync::Arc;
use std::time::Instant;

mod common;

use common::{ms, percentile};

fn event(i: usize) -> EventKind {
    let call = format!("toolu_{i}");
    match i % 6 {
        0 => EventKind::UserMessage {
            text: format!("Step {i}: refactor the parser and keep the tests green."),
        },
        1 => EventKind::AssistantText {
            text: format!(
                "## Step {i}\n\nI changed **three** things:\n\n- the lexer\n- the `Parser::next` loop\n- its tests\n\n```rust\nfn next(&mut self) -> Option<Token> {{\n    // step {i}\n    self.tokens.pop()\n}}\n```\n"
            ),
        },
        2 => EventKind::ToolCall {
            id: call,
            name: "edit_file".into(),
            input: json!({"path": "src/parser.rs", "old_string": "fn old() {}\nlet a = 1;\n", "new_string": format!("fn new() {{}}\nlet a = {i};\n")}),
        },
        3 => EventKind::ToolResult {
            id: format!("toolu_{}", i - 1),
            output: "Edited src/parser.rs (1 replacement).".into(),
            is_error: false,
            truncated: false,
        },
        4 => EventKind::Usage {
            input_tokens: 2000,
            output_tokens: 300,
            cost_usd: 0.0105,
        },
        _ => EventKind::Status {
            status: SessionStatus::Idle,
            message: None,
        },
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("DASHBOARD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runs: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let config = Config::try_parse_from([
        "paddock".into(),
        "--sandbox=local".into(),
        format!(
            "--database-url=sqlite://{}/paddock.db",
            dir.path().display()
        ),
        format!("--workspace-root={}", dir.path().join("w").display()),
        format!(
            "--master-key-file={}",
            dir.path().join("master.key").display()
        ),
        // The page's rendering, not the door (the identity bench has that).
        "--auth=off".into(),
    ])
    .unwrap();
    let paddock = Paddock::open(config).await.unwrap();
    let spec = NewSession {
        name: "long".into(),
        ..Default::default()
    }
    .validate()
    .unwrap();
    let session = paddock.store.create_session(&spec, None).await.unwrap().id;
    for i in 0..n {
        paddock
            .store
            .append_event(session, &event(i))
            .await
            .unwrap();
    }
    let state = AppState {
        leptos: LeptosOptions::builder().output_name("paddock").build(),
        paddock: Arc::new(paddock),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/sessions/{session}",
        listener.local_addr().unwrap()
    );
    tokio::spawn(server::serve(listener, state, std::future::pending()));

    let client = reqwest::Client::new();
    let mut samples = Vec::new();
    let mut bytes = 0;
    for i in 0..runs + 5 {
        let start = Instant::now();
        let res = client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.text().await.unwrap();
        if i >= 5 {
            samples.push(start.elapsed()); // the first few warm caches up
        }
        bytes = body.len();
        assert!(body.contains("data-testid=\"transcript\""));
    }
    println!(
        "SSR of a session with {n} events ({runs} runs, page {} KiB):",
        bytes / 1024
    );
    println!("| events | p50 | p99 | max |");
    println!(
        "| {n} | {} | {} | {} |",
        ms(percentile(&mut samples, 0.5)),
        ms(percentile(&mut samples, 0.99)),
        ms(percentile(&mut samples, 1.0)),
    );
}
