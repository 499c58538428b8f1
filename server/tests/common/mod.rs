//! The harness the integration tests share: a temporary home for a Paddock
//! (database, workspaces, Claude Code folders) and its config, the scripted
//! model server, Paddock opened there, a real server on port 0, Docker
//! sandboxes of their own, and the waits and summaries the tests read
//! transcripts with. Every part is real; only the model is scripted.

// Each test binary uses its own part of the harness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod git_server;
pub mod postgres;
pub mod rest;
pub mod senders;
pub mod tls_docker;

use app::domain::{Event, EventKind, NewSession, Session, SessionId, SessionStatus};
use clap::Parser;
use leptos::config::LeptosOptions;
use paddock_model::{Scenario, ScriptedModel};
use server::config::DEFAULT_IMAGE;
use server::http::AppState;
use server::hub::Hub;
use server::paddock::Paddock;
use server::sandbox::{workspace_dir, DockerSandbox, ExecOutcome, ExecRequest, Limits, Sandbox};
use server::Config;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The Docker runtime the sandbox tests run under: the engine's default,
/// or `PADDOCK_TEST_DOCKER_RUNTIME` (`scripts/test` runs the sandbox suite
/// a second time under `runsc`, gVisor).
pub fn docker_runtime() -> Option<String> {
    std::env::var("PADDOCK_TEST_DOCKER_RUNTIME")
        .ok()
        .filter(|r| !r.is_empty())
}

/// A temporary folder holding one Paddock's database, workspaces and
/// Claude Code homes; the containers of its sessions are removed with it.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The folder holding each session's workspace.
    pub fn workspaces(&self) -> PathBuf {
        self.path().join("workspaces")
    }

    /// A session's workspace folder on the host.
    pub fn workspace(&self, session: SessionId) -> PathBuf {
        workspace_dir(&self.workspaces(), session)
    }

    /// Paddock's config over this home with `sandbox` (`docker` or
    /// `local`), plus `extra` flags.
    pub fn config(&self, sandbox: &str, extra: &[String]) -> Config {
        let mut args = vec!["paddock".to_owned(), format!("--sandbox={sandbox}")];
        // A SQLite file in the home, unless a test names another database.
        if !extra.iter().any(|a| a.starts_with("--database-url=")) {
            args.push(format!(
                "--database-url=sqlite://{}/paddock.db",
                self.path().display()
            ));
        }
        args.extend([
            format!("--workspace-root={}", self.workspaces().display()),
            format!("--claude-code-root={}", self.path().join("cc").display()),
            // Relative, as the default (`data/git`) is: the server must
            // make it absolute before git runs anywhere else.
            format!(
                "--git-root={}",
                from_cwd(&self.path().join("git")).display()
            ),
            format!(
                "--master-key-file={}",
                self.path().join("master.key").display()
            ),
            // Its server runs in this test's process: trigger templates
            // are rendered by the built binary.
            format!("--template-renderer={}", env!("CARGO_BIN_EXE_paddock")),
        ]);
        // Sign-in is off unless a test turns it on: most tests are about
        // something else, and the accounts tests say `--auth=on`.
        if !extra.iter().any(|a| a.starts_with("--auth=")) {
            args.push("--auth=off".to_owned());
        }
        args.extend_from_slice(extra);
        Config::try_parse_from(args).unwrap()
    }
}

/// `path` (absolute) as a path relative to the current directory.
fn from_cwd(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let up = cwd.components().skip(1).map(|_| Path::new(".."));
    up.collect::<PathBuf>()
        .join(path.strip_prefix("/").unwrap())
}

impl Drop for Home {
    fn drop(&mut self) {
        remove_containers(&self.workspaces());
        unmount_under(self.path());
    }
}

/// Unmounts the workspaces' own filesystems under `dir`, which a test
/// leaves mounted unless it deleted its sessions (or failed), so that the
/// folder can go.
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
        if Path::new(point).starts_with(dir) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(point)
                .output();
        }
    }
}

/// Removes the sandbox containers of the sessions whose workspaces are in
/// `workspaces`. Best effort: a failed test must not leave containers
/// behind.
fn remove_containers(workspaces: &Path) {
    for entry in std::fs::read_dir(workspaces)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = format!("paddock-{}", entry.file_name().to_string_lossy());
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &name])
            .output();
    }
}

/// The scripted model server playing `scenario` (with `api_key` required,
/// when given), and its URL.
pub async fn scripted(
    scenario: &serde_json::Value,
    api_key: Option<&str>,
) -> (ScriptedModel, String) {
    let model = ScriptedModel::new(Scenario::from_json(&scenario.to_string()).unwrap())
        .with_api_key(api_key.map(str::to_owned));
    let url = format!("http://{}", model.spawn().await.unwrap());
    (model, url)
}

/// The flags that point a Paddock at a model at `url` with `key`.
pub fn model_flags(url: &str, key: &str) -> Vec<String> {
    vec![
        format!("--anthropic-base-url={url}"),
        format!("--anthropic-api-key={key}"),
    ]
}

/// Paddock opened on `home`.
pub async fn open(home: &Home, sandbox: &str, extra: &[String]) -> Arc<Paddock> {
    open_with_hub(home, sandbox, extra, Hub::new()).await
}

pub async fn open_with_hub(home: &Home, sandbox: &str, extra: &[String], hub: Hub) -> Arc<Paddock> {
    Arc::new(
        Paddock::open_with_hub(home.config(sandbox, extra), hub)
            .await
            .unwrap(),
    )
}

/// The HTTP state over `paddock`, as the server builds it.
pub fn state(paddock: Arc<Paddock>) -> AppState {
    AppState {
        leptos: LeptosOptions::builder().output_name("paddock").build(),
        paddock,
    }
}

/// A real server on a port of its own, stopped when dropped.
pub struct Served {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn serve(paddock: Arc<Paddock>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state(paddock), async {
        let _ = stopped.await;
    }));
    Served {
        url,
        stop: Some(stop),
    }
}

/// The real `paddock` binary serving a home folder `dir`, killed when
/// dropped; its log is kept for the tests to read.
pub struct Binary {
    pub child: std::process::Child,
    pub url: String,
    log: Arc<std::sync::Mutex<String>>,
    /// Whose sandboxes go with it; `None` once it crashed on purpose, for
    /// the server started after it to find them.
    workspaces: Option<PathBuf>,
}

impl Binary {
    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills it as a crash would (SIGKILL), leaving its sandboxes for the
    /// next server on the same home; its address.
    pub fn crash(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.workspaces = None;
        self.url.trim_start_matches("http://").to_owned()
    }
}

impl Drop for Binary {
    /// A failing test must not leave a server (or its sandboxes) running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(workspaces) = &self.workspaces {
            remove_containers(workspaces);
        }
    }
}

/// The `paddock` command over a home folder `dir` (sign-in off, Docker
/// sandboxes), with `env` added last so that it can change any of it.
pub fn paddock_command(dir: &Path, env: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_paddock"));
    command
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/paddock.db", dir.display()),
        )
        .env("WORKSPACE_ROOT", dir.join("workspaces"))
        .env("PADDOCK_GIT_ROOT", dir.join("git"))
        .env("PADDOCK_MASTER_KEY_FILE", dir.join("master.key"))
        .env("PADDOCK_AUTH", "off")
        .env("PADDOCK_SANDBOX", "docker")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("ANTHROPIC_API_KEY")
        .envs(env.iter().copied());
    command
}

/// Starts the binary over `dir` with `env` (on an address of its own),
/// which must stop at start, refused (within 30 s: a panic past it, the
/// process killed); what it said.
pub async fn refused_at_start(dir: &Path, env: &[(&str, &str)]) -> String {
    let mut process = paddock_command(dir, env)
        .env("PADDOCK_ADDR", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while process.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            process.kill().unwrap();
            panic!("it serves: {env:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = process.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    said
}

/// Starts the binary on `addr` and waits until it listens.
pub fn start_with(dir: &Path, addr: &str, env: &[(&str, &str)]) -> Binary {
    use std::io::{BufRead, BufReader};
    let mut child = paddock_command(dir, env)
        .env("PADDOCK_ADDR", addr)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let url = loop {
        let line = lines
            .next()
            .expect("paddock exited before listening")
            .unwrap();
        log.lock().unwrap().push_str(&format!("{line}\n"));
        if let Some((_, rest)) = line.split_once("listening on ") {
            // The URL ends the text line, or the JSON line's message.
            let url = rest.split(['"', ' ']).next().unwrap_or(rest);
            break url.trim().to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    Binary {
        child,
        url,
        log,
        workspaces: Some(dir.join("workspaces")),
    }
}

/// A Paddock on a new home with Docker sandboxes, its model at `url`
/// (key `sk-test`), and `extra` flags.
pub async fn with_model(url: &str, extra: &[&str]) -> (Home, Arc<Paddock>) {
    let home = Home::new();
    let mut flags = model_flags(url, "sk-test");
    flags.extend(extra.iter().map(|s| s.to_string()));
    let paddock = open(&home, "docker", &flags).await;
    (home, paddock)
}

/// A session made as the local operator makes one (validated, its
/// workspace prepared and sandbox started in the background).
pub async fn create(paddock: &Paddock, new: NewSession) -> Session {
    use app::api::Backend;
    paddock
        .create_session(&app::accounts::Caller::local_operator(), new)
        .await
        .unwrap()
}

/// Sends a prompt as the local operator, and the transcript once its run
/// is over.
pub async fn run(paddock: &Paddock, session: SessionId, text: &str) -> Vec<Event> {
    use app::api::Backend;
    paddock
        .send_prompt(
            &app::accounts::Caller::local_operator(),
            session,
            text.into(),
        )
        .await
        .unwrap();
    wait_idle(paddock, session).await
}

/// A session made straight in the store.
pub async fn session(paddock: &Paddock, new: NewSession) -> Session {
    paddock
        .store
        .create_session(&new.validate().unwrap(), None)
        .await
        .unwrap()
}

/// A session's whole transcript.
pub async fn events(paddock: &Paddock, session: SessionId) -> Vec<Event> {
    paddock
        .store
        .events_after(session, 0, 100_000)
        .await
        .unwrap()
}

/// The transcript once the session's run (and its queue) is over.
pub async fn wait_idle(paddock: &Paddock, session: SessionId) -> Vec<Event> {
    for _ in 0..1200 {
        if !paddock.runner.is_running(session) {
            return events(paddock, session).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the session did not finish: {:#?}",
        events(paddock, session).await
    );
}

/// Waits until the session's transcript holds a tool call.
pub async fn wait_for_tool_call(paddock: &Paddock, session: SessionId) {
    for _ in 0..600 {
        if kinds(&events(paddock, session).await).contains(&"tool_call") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no tool call: {:#?}", events(paddock, session).await);
}

/// The session's permission requests (request id, tool), in order, once
/// there are at least `count` and the session awaits a decision (the
/// request is journaled a moment before the status is set).
pub async fn wait_for_permissions(
    paddock: &Paddock,
    session: SessionId,
    count: usize,
) -> Vec<(String, String)> {
    for _ in 0..1200 {
        let found: Vec<(String, String)> = events(paddock, session)
            .await
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::PermissionRequest {
                    request_id, tool, ..
                } => Some((request_id, tool)),
                _ => None,
            })
            .collect();
        let awaiting = paddock
            .store
            .get_session(session)
            .await
            .unwrap()
            .is_some_and(|s| s.status == SessionStatus::AwaitingPermission);
        if found.len() >= count && awaiting {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no permission request: {:#?}",
        events(paddock, session).await
    );
}

/// Each event's kind, in order.
pub fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

/// The status (and its message) the transcript ends in.
pub fn last_status(events: &[Event]) -> (SessionStatus, Option<String>) {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::Status { status, message } => Some((*status, message.clone())),
            _ => None,
        })
        .unwrap()
}

/// The output of the transcript's first tool result.
pub fn first_tool_output(events: &[Event]) -> String {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ToolResult { output, .. } => Some(output.clone()),
            _ => None,
        })
        .unwrap()
}

/// The messages of the transcript's error events.
pub fn errors(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Error { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// A started Docker container for a fresh session, with its own instance
/// label so that parallel tests never see each other's containers; removed
/// when dropped.
pub struct DockerBox {
    dir: tempfile::TempDir,
    /// The workspace root, as the sandbox sees it (canonical).
    pub root: PathBuf,
    pub sandbox: DockerSandbox,
    pub session: SessionId,
}

impl DockerBox {
    pub async fn start(limits: Limits) -> Self {
        Self::made(limits, true).await
    }

    /// A sandbox whose commands go through `docker exec`, as where the
    /// agent cannot run (a server without its binary).
    pub async fn start_without_agent(limits: Limits) -> Self {
        Self::made(limits, false).await
    }

    async fn made(limits: Limits, agent: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let sandbox = DockerSandbox::connect(
            DEFAULT_IMAGE.into(),
            uuid::Uuid::now_v7().to_string(),
            root.clone(),
            docker_runtime(),
            Some(server::config::default_sandbox_agent_bin()).filter(|bin| agent && bin.is_file()),
            None,
        )
        .await
        .expect("a Docker daemon (scripts/setup starts one)");
        let session = uuid::Uuid::now_v7();
        sandbox.start(session, limits).await.unwrap();
        Self {
            dir,
            root,
            sandbox,
            session,
        }
    }

    /// The session's workspace folder on the host.
    pub fn workspace(&self) -> PathBuf {
        workspace_dir(&self.root, self.session)
    }

    /// Runs `command` in the container, within `timeout_secs`.
    pub async fn run(&self, command: &str, timeout_secs: u64) -> ExecOutcome {
        exec(&self.sandbox, self.session, command, timeout_secs).await
    }
}

/// Runs `command` in a session's sandbox, within `timeout_secs`.
pub async fn exec(
    sandbox: &dyn Sandbox,
    session: SessionId,
    command: &str,
    timeout_secs: u64,
) -> ExecOutcome {
    let mut request = ExecRequest::new(command);
    request.timeout = Duration::from_secs(timeout_secs);
    sandbox
        .exec(session, &request, &CancellationToken::new(), &mut |_, _| {})
        .await
        .unwrap()
}

/// Runs `command` in a session's sandbox and stops it once it has printed
/// `ready`: how it ended, and how long it took to end after the Stop.
pub async fn stopped_once_ready(
    sandbox: &dyn Sandbox,
    session: SessionId,
    command: &str,
) -> (ExecOutcome, Duration) {
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let request = ExecRequest::new(command);
    let mut seen = Vec::new();
    let mut stopped_at = None;
    let mut sink = |_, bytes: &[u8]| {
        seen.extend_from_slice(bytes);
        if stopped_at.is_none() && seen.ends_with(b"ready\n") {
            stopped_at = Some(std::time::Instant::now());
            stop.cancel();
        }
    };
    let ran = sandbox.exec(session, &request, &cancel, &mut sink);
    let outcome = tokio::time::timeout(Duration::from_secs(60), ran)
        .await
        .expect("a stopped command ends")
        .unwrap();
    let took = stopped_at.expect("the command said it was ready").elapsed();
    (outcome, took)
}

/// Waits a few seconds at most for no process of the sandbox to match
/// `pattern` (`pgrep -f`; written so that it does not match itself, e.g.
/// `sleep 60[0]`), and fails if one still does.
pub async fn assert_none_left(sandbox: &dyn Sandbox, session: SessionId, pattern: &str) {
    let count = format!("pgrep -c -f '{pattern}'");
    let mut left = exec(sandbox, session, &count, 10).await;
    for _ in 0..30 {
        if left.output.trim() == "0" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = exec(sandbox, session, &count, 10).await;
    }
    panic!("processes matching {pattern} are left: {left:?}");
}

/// A Stop through the sandbox agent gives a command
/// [`server::sandbox::STOP_GRACE`] to end on `SIGTERM`, then kills its
/// group. A command that cleans up on it does, and what it says as it ends
/// is kept; so does a child of a shell that ended at once (the rest of the
/// group is given its time); one that ignores `SIGTERM` is killed once the
/// time has passed, with everything it started. `workspace` is the
/// session's folder as this host sees it.
pub async fn stop_lets_commands_clean_up(
    sandbox: &dyn Sandbox,
    session: SessionId,
    workspace: &Path,
) {
    let (cleaned, took) = stopped_once_ready(
        sandbox,
        session,
        "exec 2>/dev/null; touch held.lock; \
         trap 'rm -f held.lock; echo cleaned up; exit 3' TERM; sleep 600 & echo ready; wait",
    )
    .await;
    assert!(cleaned.cancelled, "{cleaned:?}");
    assert_eq!(cleaned.output, "ready\ncleaned up\n");
    assert!(!workspace.join("held.lock").exists());
    // Over as soon as it ended, not at the end of the grace.
    assert!(took < server::sandbox::STOP_GRACE, "{took:?}");

    // The shell ends on the SIGTERM at once; its child takes a moment to
    // clean up, and is let.
    let (child, took) = stopped_once_ready(
        sandbox,
        session,
        "sh -c 'trap \"sleep 0.2; rm -f child.lock; echo child cleaned up; exit\" TERM; \
         touch child.lock; echo ready; while :; do sleep 0.05; done'; echo after",
    )
    .await;
    assert!(child.cancelled, "{child:?}");
    assert!(
        child.output.contains("child cleaned up\n") && !child.output.contains("after"),
        "{child:?}"
    );
    assert!(!workspace.join("child.lock").exists());
    assert!(took < server::sandbox::STOP_GRACE, "{took:?}");

    let (stubborn, took) = stopped_once_ready(
        sandbox,
        session,
        "trap '' TERM; sleep 600 & echo ready; while :; do sleep 0.1; done",
    )
    .await;
    assert!(stubborn.cancelled, "{stubborn:?}");
    assert_eq!(stubborn.output, "ready\n");
    assert!(took >= server::sandbox::STOP_GRACE, "{took:?}");
    assert_none_left(sandbox, session, "sleep 60[0]").await;
}

impl Drop for DockerBox {
    fn drop(&mut self) {
        let name = DockerSandbox::container_name(self.session);
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &name])
            .output();
        unmount_under(&self.root);
    }
}

/// Sends a request's body a byte every 300 ms (each within a stall of a
/// second or more) until the server answers, for at most 30 s; what it
/// answered (once it closes, or 10 s on), and how long that took.
pub async fn trickle_until_answered(
    stream: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let began = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while began.elapsed() < Duration::from_secs(30) {
        let _ = stream.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {
                answer.push(byte[0]);
                break;
            }
            Err(_) => {}
        }
    }
    let took = began.elapsed();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    (String::from_utf8_lossy(&answer).into_owned(), took)
}
