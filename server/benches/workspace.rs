//! From "create a session from an agent with a repository" to the agent's
//! first model call, for a small repository and a 100 MB one, beside a bare
//! `git clone` of the same repository from the same server in the same run
//! (the floor any clone-based start pays).
//!
//!     cargo bench --bench workspace      # needs dockerd and the agent image
//!     WORKSPACE_BENCH_RUNS=5 cargo bench --bench workspace
//!
//! The real parts: `git http-backend` behind basic auth on loopback (the
//! tests' git server), Paddock opened in this process on a temporary home
//! with Docker sandboxes, a saved git token, an agent template naming the
//! repository, and the scripted model server, whose first request marks the
//! end of each run. Each run creates the session and sends its prompt at
//! once, as a script would; the clone, the workspace's preparation and the
//! sandbox's start all lie between the two instants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/common/git_server.rs"]
mod git_server;

use app::accounts::{Caller, CredentialId, CredentialKind, CredentialScope};
use app::agents::TemplateDraft;
use app::api::Backend;
use app::domain::NewSession;
use app::workspace_source::WorkspaceSource;
use clap::Parser;
use common::{ms, percentile};
use git_server::{noise, GitServer};
use paddock_model::{Scenario, ScriptedModel};
use server::paddock::Paddock;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-git-token-0123456789";

fn bare_clone(url: &str, into: &std::path::Path) -> Duration {
    use base64::Engine as _;
    let header = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
    );
    let started = Instant::now();
    let out = std::process::Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["-c", &format!("http.extraHeader={header}")])
        .args(["clone", "--quiet", url])
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("WORKSPACE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let git = GitServer::start(Some(TOKEN)).await;
    let small: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("src/file{i}.rs"), noise(4 * 1024, i)))
        .collect();
    let big: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("assets/blob{i}.bin"), noise(1024 * 1024, 1000 + i)))
        .collect();
    for (name, files) in [("small.git", &small), ("big.git", &big)] {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        git.repo(name, &refs);
    }

    let turns: Vec<serde_json::Value> = (0..runs * 2)
        .map(|_| serde_json::json!({"reply": "Ready."}))
        .collect();
    let model = ScriptedModel::new(
        Scenario::from_json(&serde_json::Value::Array(turns).to_string()).unwrap(),
    )
    .with_api_key(Some("sk-bench".into()));
    let model_url = format!("http://{}", model.spawn().await.unwrap());

    let home = tempfile::tempdir().unwrap();
    let dir = home.path().display().to_string();
    let config = server::Config::try_parse_from([
        "paddock".to_owned(),
        "--sandbox=docker".into(),
        "--auth=off".into(),
        format!("--database-url=sqlite://{dir}/paddock.db"),
        format!("--workspace-root={dir}/workspaces"),
        format!("--claude-code-root={dir}/cc"),
        format!("--git-root={dir}/git"),
        format!("--master-key-file={dir}/master.key"),
        format!("--anthropic-base-url={model_url}"),
        "--anthropic-api-key=sk-bench".into(),
    ])
    .unwrap();
    let paddock = Paddock::open(config)
        .await
        .expect("a Docker daemon and the agent image");
    let operator = Caller::local_operator();
    paddock
        .save_credential(
            &operator,
            CredentialId::named(CredentialScope::Server, CredentialKind::GitToken, "FORGE"),
            TOKEN.into(),
        )
        .await
        .unwrap();

    println!("| repository | Paddock: create → first model call, p50 | max | bare `git clone`, p50 | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    for (label, repo) in [
        ("small (20 files, 80 KiB)", "small.git"),
        ("100 MB (100 files of 1 MiB)", "big.git"),
    ] {
        let url = format!("{}/{repo}", git.url);
        let agent = paddock
            .save_template(
                &operator,
                None,
                None,
                TemplateDraft {
                    name: format!("bench {repo}"),
                    description: String::new(),
                    session: NewSession {
                        permission_mode: Some("auto".parse().unwrap()),
                        source: Some(WorkspaceSource::Git {
                            url: url.clone(),
                            rev: None,
                            credential: Some("FORGE".into()),
                        }),
                        ..Default::default()
                    },
                    triggers_require: None,
                },
            )
            .await
            .unwrap();
        let (mut paddock_runs, mut bare_runs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let before = model.turns_left();
            let started = Instant::now();
            let s = paddock
                .create_session(
                    &operator,
                    NewSession {
                        template: Some(agent.id),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            paddock
                .send_prompt(&operator, s.id, "Start.".into())
                .await
                .unwrap();
            while model.turns_left() == before {
                assert!(
                    started.elapsed() < Duration::from_secs(600),
                    "no model call"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            paddock_runs.push(started.elapsed());
            while paddock.runner.is_running(s.id) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            paddock.delete_session(&operator, s.id).await.unwrap();

            let into = tempfile::tempdir().unwrap();
            bare_runs.push(bare_clone(&url, &into.path().join("clone")));
        }
        let max = *paddock_runs.iter().max().unwrap();
        let (p50, bare) = (
            percentile(&mut paddock_runs, 0.5),
            percentile(&mut bare_runs, 0.5),
        );
        println!(
            "| {label} | {} | {} | {} | {:.2}× |",
            ms(p50),
            ms(max),
            ms(bare),
            p50.as_secs_f64() / bare.as_secs_f64()
        );
    }
}
