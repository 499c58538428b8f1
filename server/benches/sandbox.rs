//! Sandbox overheads, Paddock versus the bare Docker CLI, in one run:
//! create+start of a closed container, and an exec round trip of `true`,
//! through the sandbox agent and through Docker's exec API (Paddock
//! without the agent); then the same round trip on a remote Docker host (a
//! second `dockerd` on a loopback port, over mutual TLS): through the
//! agent, reached over its `docker exec`'s streams, and with the docker CLI.
//!
//!     cargo bench --bench sandbox            # needs dockerd and the agent image
//!     SANDBOX_BENCH_RUNS=50 cargo bench --bench sandbox
//!
//! Both sides create the same container (same image, limits and hardening
//! flags) and exec the same command; the CLI side includes the docker
//! client's own start-up, which is what a script calling `docker` pays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[allow(dead_code)]
#[path = "../tests/common/tls_docker.rs"]
mod tls_docker;

use common::{ms, percentile};
use server::config::DEFAULT_IMAGE;
use server::sandbox::{DockerSandbox, ExecRequest, Limits, Sandbox};
use std::process::Command;
use std::time::{Duration, Instant};
use tls_docker::TlsDocker;
use tokio_util::sync::CancellationToken;

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn report(name: &str, paddock: &mut [Duration], bare: &mut [Duration]) {
    let (p50, p99) = (percentile(paddock, 0.5), percentile(paddock, 0.99));
    let (b50, b99) = (percentile(bare, 0.5), percentile(bare, 0.99));
    println!(
        "| {name} | {} | {} | {} | {} | {:.2}× | {:.2}× |",
        ms(p50),
        ms(p99),
        ms(b50),
        ms(b99),
        p50.as_secs_f64() / b50.as_secs_f64(),
        p99.as_secs_f64() / b99.as_secs_f64(),
    );
}

/// The docker CLI's arguments that run `true` in container `name` as the
/// sandbox user, in the workspace.
fn exec_true(name: &str) -> [&str; 7] {
    [
        "exec",
        "-u",
        "10001:10001",
        "-w",
        "/workspace",
        name,
        "true",
    ]
}

/// Runs `true` in the session's sandbox.
async fn run_true(sandbox: &DockerSandbox, session: uuid::Uuid) {
    let outcome = sandbox
        .exec(
            session,
            &ExecRequest::new("true"),
            &CancellationToken::new(),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    assert!(outcome.success());
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("SANDBOX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let instance = uuid::Uuid::now_v7().to_string();
    let agent = server::config::default_sandbox_agent_bin();
    assert!(agent.is_file(), "the sandbox agent (scripts/setup)");
    let sandbox = DockerSandbox::connect(
        DEFAULT_IMAGE.into(),
        instance.clone(),
        root.clone(),
        None,
        Some(agent.clone()),
        None,
    )
    .await
    .expect("a Docker daemon and the agent image (scripts/setup)");
    let without_agent = DockerSandbox::connect(
        DEFAULT_IMAGE.into(),
        instance.clone(),
        root.clone(),
        None,
        None,
        None,
    )
    .await
    .unwrap();
    let limits = Limits::default();

    // create + start, then the first command (which starts the agent)
    let (mut paddock_start, mut bare_start) = (Vec::new(), Vec::new());
    let (mut paddock_first, mut bare_first) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let session = uuid::Uuid::now_v7();
        let t = Instant::now();
        sandbox.start(session, limits).await.unwrap();
        paddock_start.push(t.elapsed());
        run_true(&sandbox, session).await;
        paddock_first.push(t.elapsed());
        sandbox.destroy(session).await.unwrap();

        let name = format!("paddock-bench-{i}-{}", std::process::id());
        let ws = root.join(&name);
        std::fs::create_dir_all(&ws).unwrap();
        let bind = format!("{}:/workspace", ws.display());
        let t = Instant::now();
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--user",
            "10001:10001",
            "--network",
            "none",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--memory",
            "1g",
            "--memory-swap",
            "1g",
            "--cpus",
            "1",
            "--pids-limit",
            "256",
            "--init",
            "-v",
            &bind,
            "-w",
            "/workspace",
            DEFAULT_IMAGE,
            "sleep",
            "infinity",
        ]);
        bare_start.push(t.elapsed());
        docker(&exec_true(&name));
        bare_first.push(t.elapsed());
        docker(&["rm", "-f", &name]);
    }

    // exec round trip of `true` in one running container: through the
    // agent, through Docker's exec API, and with the docker CLI
    let session = uuid::Uuid::now_v7();
    sandbox.start(session, limits).await.unwrap();
    let name = DockerSandbox::container_name(session);
    let (mut paddock_exec, mut api_exec, mut bare_exec) = (Vec::new(), Vec::new(), Vec::new());
    // The agent's start (once per sandbox) is not a round trip.
    run_true(&sandbox, session).await;
    // Back to back, as an agent's tool calls come; then each between a
    // Docker exec through the API and one with the CLI, whose aftermath
    // (the exec's shim ending) competes for the host's cores.
    let mut burst = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        run_true(&sandbox, session).await;
        burst.push(t.elapsed());
    }
    for _ in 0..runs {
        let t = Instant::now();
        run_true(&sandbox, session).await;
        paddock_exec.push(t.elapsed());

        let t = Instant::now();
        run_true(&without_agent, session).await;
        api_exec.push(t.elapsed());

        let t = Instant::now();
        docker(&exec_true(&name));
        bare_exec.push(t.elapsed());
    }
    sandbox.destroy(session).await.unwrap();

    // The remote host: Paddock told so by its environment, as it is run.
    let remote_dir = tempfile::tempdir().unwrap();
    let daemon = TlsDocker::start(remote_dir.path()).await;
    for (name, value) in daemon.env(&daemon.client_certs) {
        std::env::set_var(name, value);
    }
    let remote = DockerSandbox::connect(
        DEFAULT_IMAGE.into(),
        instance,
        root.clone(),
        None,
        Some(agent),
        Some(true),
    )
    .await
    .unwrap();
    let session = uuid::Uuid::now_v7();
    remote.start(session, limits).await.unwrap();
    let name = DockerSandbox::container_name(session);
    run_true(&remote, session).await;
    let (mut remote_agent, mut remote_cli) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        run_true(&remote, session).await;
        remote_agent.push(t.elapsed());
    }
    for _ in 0..runs {
        let t = Instant::now();
        tls_docker::run(daemon.docker().args(exec_true(&name)));
        remote_cli.push(t.elapsed());
    }
    remote.destroy(session).await.unwrap();

    println!("\n{runs} runs each, interleaved\n");
    println!("| operation | Paddock p50 | Paddock p99 | docker CLI p50 | docker CLI p99 | ratio p50 | ratio p99 |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    report("create + start", &mut paddock_start, &mut bare_start);
    report(
        "create + start + first command (the agent starts)",
        &mut paddock_first,
        &mut bare_first,
    );
    report(
        "exec `true`, through the agent, back to back",
        &mut burst,
        &mut bare_exec,
    );
    report(
        "exec `true`, through the agent, between Docker execs",
        &mut paddock_exec,
        &mut bare_exec,
    );
    report(
        "exec `true`, through Docker's exec API",
        &mut api_exec,
        &mut bare_exec,
    );
    let (agent50, api50) = (
        percentile(&mut paddock_exec, 0.5),
        percentile(&mut api_exec, 0.5),
    );
    println!(
        "\nexec `true`: the agent takes {:.2}× the time of Docker's exec API at p50 ({} vs {}, \
         both between Docker execs; {} back to back)",
        agent50.as_secs_f64() / api50.as_secs_f64(),
        ms(agent50),
        ms(api50),
        ms(percentile(&mut burst, 0.5))
    );
    println!("\nOn a remote Docker host over mutual TLS, {runs} runs each, back to back\n");
    println!("| operation | Paddock p50 | Paddock p99 | docker CLI p50 | docker CLI p99 | ratio p50 | ratio p99 |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    report(
        "exec `true`, through the agent over its exec's streams",
        &mut remote_agent,
        &mut remote_cli,
    );
}
