//! Sandboxes: where every command of a session's agent runs.
//!
//! One sandbox per session, behind the [`Sandbox`] trait. The Docker backend
//! (the default when a daemon answers) gives each session a closed container;
//! the local backend (for hosts without Docker, e.g. inside a PaaS container)
//! runs a child process with a scrubbed environment, under bubblewrap when it
//! is installed, and says plainly that its isolation is weaker.
//!
//! A session's files are its [`Workspace`]: for both backends a host folder
//! mounted into the sandbox ([`HostWorkspace`]), every path confined to it,
//! with a disk limit where the host can hold one ([`WorkspaceRoot`]); for
//! Docker sandboxes on a remote host, a volume there, whose files go
//! through the sandbox's agent (`docker_remote`, `agent_workspace`).

mod agent_call;
mod agent_link;
mod agent_workspace;
mod docker;
mod docker_connect;
mod docker_remote;
mod host_workspace;
mod local;
mod mount_policy;
mod output;
mod read_ahead;
mod shell;
mod workspace;
mod workspace_root;

pub use docker::DockerSandbox;
pub use host_workspace::HostWorkspace;
pub use local::{LocalSandbox, OwnData};
pub use mount_policy::MountPolicy;
pub use output::{CappedOutput, CUT_SHORT_MARK, TRUNCATION_MARK, TRUNCATION_MARK_END};
pub use paddock_sandbox_agent::folder::{ConfinedFolder, LISTING_MAX_BYTES, MOUNT_POINT};
pub use paddock_sandbox_agent::watch::Changes;
pub use paddock_sandbox_agent::TerminalSize;
pub use read_ahead::held_while_read;
use shell::shell_quote;
pub use workspace::{
    normalized, relative, ByteStream, Download, Entry, FileError, FileKind, GlobMatches, GlobQuery,
    GrepMatches, GrepQuery, SearchError, SearchLimits, Stat, Workspace, PATTERN_MAX_CHARS,
    READ_MAX_BYTES,
};
pub use workspace_root::{DiskFolder, WorkspaceRoot};

use app::domain::SessionId;
use app::files::DiskUse;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

/// The sandbox user (and its group); files Paddock writes into a workspace
/// are given to it.
pub const SANDBOX_UID: u32 = 10001;

/// Where the deploy image keeps the sandbox agent. A server in it uploads
/// it into sandboxes on another machine's Docker daemon; to a local daemon
/// (the host's socket mounted in) it would be a path of the image, which
/// the host does not have to mount, so there only a configured agent is.
pub const BUNDLED_SANDBOX_AGENT_BIN: &str = "/usr/local/lib/paddock/paddock-sandbox-agent";

/// [`SANDBOX_UID`] as `uid:gid`.
fn sandbox_user() -> String {
    format!("{SANDBOX_UID}:{SANDBOX_UID}")
}

/// Resource limits of one sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Limits {
    pub memory_mb: i64,
    pub cpus: f64,
    pub pids: i64,
    /// Size of the workspace's own filesystem; `None`: no limit.
    pub disk_mb: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: 1024,
            cpus: 1.0,
            pids: 256,
            disk_mb: Some(10 * 1024),
        }
    }
}

/// One command to run in a sandbox with `bash -c`, in `/workspace`.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    pub command: String,
    /// Variables set for it besides the sandbox's own ([`SANDBOX_ENV`]).
    pub env: Vec<(String, String)>,
    /// Wall-clock limit; the whole process tree is killed when it passes.
    pub timeout: Duration,
    /// Bytes of output kept (head and tail halves); the rest is counted.
    pub output_cap: usize,
}

impl ExecRequest {
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            env: Vec::new(),
            timeout: Duration::from_secs(120),
            output_cap: 64 * 1024,
        }
    }
}

/// How long a stopped command has to end on `SIGTERM` (a tool cleaning up:
/// git removing its lock file) before its group is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a command's output is read on after it ended or was killed: a
/// process that left its group (`setsid`) can hold the output open for
/// good, and what it writes then is not the command's.
pub const DRAIN_AFTER_END: Duration = Duration::from_secs(2);

/// A host path mounted into a sandbox when it is created: how the
/// claude-code engine gets its CLI (read-only), a home that survives the
/// container, the proxy's socket folder into a closed sandbox, and the
/// session's own read-only folders ([`MountPolicy`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub host: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// How a session's sandbox is made when it does not exist yet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SandboxSpec {
    pub limits: Limits,
    /// Its image, on a backend that runs images; `None`: the backend's own.
    pub image: Option<String>,
    pub mounts: Vec<Mount>,
    /// The egress proxy, for a session that may reach some hosts; `None`:
    /// no network at all.
    pub proxy: Option<ProxyRelay>,
}

/// How a sandbox reaches the egress proxy: a loopback port relayed (socat,
/// beside the sandbox's main process) to the proxy's Unix socket, mounted
/// into it, and `HTTP_PROXY`/`HTTPS_PROXY` set to that port for every
/// command, `localhost` and loopback addresses excepted.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyRelay {
    /// The socket's path inside the sandbox.
    pub socket: String,
    pub port: u16,
}

impl ProxyRelay {
    /// The variables every command of the sandbox gets.
    pub fn env(&self) -> Vec<(String, String)> {
        let url = format!("http://127.0.0.1:{}", self.port);
        let direct = "localhost,127.0.0.1,::1".to_owned();
        ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
            .into_iter()
            .map(|name| (name.to_owned(), url.clone()))
            .chain(["NO_PROXY", "no_proxy"].map(|name| (name.to_owned(), direct.clone())))
            .collect()
    }

    /// The sandbox's main command: the relay in the background, then sleep.
    pub fn main_command(&self) -> Vec<String> {
        let relay = format!(
            "socat TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:{} & exec sleep infinity",
            self.port,
            shell_quote(&self.socket)
        );
        vec!["sh".into(), "-c".into(), relay]
    }
}

/// The argv of shell command `command`: `bash -c` and it.
fn shell(command: &str) -> Vec<String> {
    vec!["bash".to_owned(), "-c".to_owned(), command.to_owned()]
}

/// A long-running program with its stdin attached (the Claude Code CLI,
/// which speaks JSON lines both ways; an MCP server), run like
/// [`ExecRequest`] in its own process group under a time limit.
#[derive(Clone, Debug)]
pub struct SpawnRequest {
    /// The program, then its arguments, each passed as it is (no shell
    /// reads them).
    pub argv: Vec<String>,
    /// Added to [`SANDBOX_ENV`]; nothing of the server's own environment.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// A running [`SpawnRequest`]: write to `stdin`, read `output` until it
/// ends, then ask `control` for the exit code.
pub struct Process {
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    pub output: BoxStream<'static, Result<(OutputStream, Bytes)>>,
    pub control: Box<dyn ProcessControl>,
}

/// A terminal in a sandbox (through its agent): a login shell on a
/// pseudo-terminal. `process.stdin` is its keyboard, `process.output` what
/// it shows (all of it stdout); killing it, or dropping it, ends the shell
/// and everything it started.
pub struct Terminal {
    pub process: Process,
    pub resizer: Resizer,
}

/// Resizes a [`Terminal`]: its records go beside the keyboard's.
pub struct Resizer(tokio::sync::mpsc::Sender<Bytes>);

impl Resizer {
    /// Resizes the terminal (its foreground job gets `SIGWINCH`).
    pub async fn resize(&self, size: TerminalSize) -> Result<()> {
        let json = serde_json::to_vec(&size).map_err(|e| SandboxError::Failed(e.to_string()))?;
        self.0
            .send(Bytes::from(paddock_sandbox_agent::record(
                paddock_sandbox_agent::Kind::Resize,
                &json,
            )))
            .await
            .map_err(|_| SandboxError::Failed("the terminal is closed".into()))
    }
}

#[async_trait::async_trait]
pub trait ProcessControl: Send + Sync {
    /// Kills the process group at once.
    async fn kill(&self);
    /// The exit code once `output` has ended; `None` if killed by a signal.
    async fn exit_code(&self) -> Result<Option<i64>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Receives output as it is produced, before capping: for live display.
pub type OutputSink<'a> = &'a mut (dyn FnMut(OutputStream, &[u8]) + Send);

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExecOutcome {
    /// `None` when the process was killed (timeout, cancel, OOM).
    pub exit_code: Option<i64>,
    /// stdout and stderr interleaved as they arrived, capped.
    pub output: String,
    pub truncated: bool,
    pub total_bytes: u64,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub cancelled: bool,
}

impl ExecOutcome {
    /// How a command ended: its exit code (`None` when it was killed by the
    /// timeout, a Stop or the OOM killer) and its captured output.
    pub fn new(
        exit_code: Option<i64>,
        captured: CappedOutput,
        timed_out: bool,
        cancelled: bool,
        oom_killed: bool,
    ) -> Self {
        Self {
            exit_code: if timed_out || cancelled || oom_killed {
                None
            } else {
                exit_code
            },
            truncated: captured.truncated(),
            total_bytes: captured.total(),
            output: captured.finish(),
            timed_out,
            oom_killed,
            cancelled,
        }
    }

    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Docker,
    Local,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Local => "local",
        }
    }
}

/// What `/readyz` and the dashboard say about the sandbox backend.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendInfo {
    pub kind: BackendKind,
    /// A plain-words caveat when isolation is weaker than a closed container.
    pub warning: Option<String>,
    /// Whether its sandboxes are on another host (a remote Docker host),
    /// where nothing of this server's filesystem reaches them: no mounts,
    /// no workspace prepared or read by the server, no egress proxy.
    pub remote: bool,
    /// Whether it can mount host folders read-only (a session's mounts).
    pub read_only_mounts: bool,
    /// The container runtime sandboxes run under (`runc`, or `runsc`:
    /// gVisor); none for the local backend.
    pub runtime: Option<String>,
    /// Why workspaces have no disk limit on this host, if they have none.
    pub no_disk_limits: Option<String>,
    /// Whether commands run through the sandbox agent (else `docker exec`,
    /// or the local backend's child processes).
    pub agent: bool,
}

/// A sandbox that exists on the backend, as found when listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub session: SessionId,
    pub running: bool,
    /// Frozen for a moment while the server reads its workspace: up, and
    /// in use.
    pub paused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the sandbox backend is unavailable: {0}")]
    Unavailable(String),
    #[error("the sandbox of session {0} does not exist")]
    Missing(SessionId),
    #[error("sandbox failure: {0}")]
    Failed(String),
    #[error("{0}")]
    Unsupported(&'static str),
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// Starts `request` in the session's sandbox, waiting at most `limit` for
/// the sandbox to say it started, and not at all once `cancel` is
/// cancelled (`Ok(None)`): a sandbox that never answers holds no run.
pub async fn spawn_within(
    sandbox: &dyn Sandbox,
    session: SessionId,
    request: &SpawnRequest,
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<Option<Process>> {
    tokio::select! {
        spawned = tokio::time::timeout(limit, sandbox.spawn(session, request)) => match spawned {
            Ok(spawned) => spawned.map(Some),
            Err(_) => Err(SandboxError::Unavailable(format!(
                "the sandbox did not start it within {} s",
                limit.as_secs()
            ))),
        },
        () = cancel.cancelled() => Ok(None),
    }
}

/// Why an image that declares `volumes` makes no sandbox, if it does: their
/// files would live outside the session's workspace and its disk limit.
pub fn volumes_refused(image: &str, volumes: &[String]) -> Option<String> {
    (!volumes.is_empty()).then(|| {
        format!(
            "image {image:?} declares volumes ({}): their files would live outside the \
             session's workspace and its disk limit; use an image without VOLUME",
            volumes.join(", ")
        )
    })
}

#[async_trait::async_trait]
pub trait Sandbox: Send + Sync + 'static {
    fn info(&self) -> BackendInfo;
    /// Readiness: the backend answers, and has what a session needs (the
    /// Docker backend: its default image).
    async fn check(&self) -> Result<()>;
    /// The folders `image` declares as volumes, if the backend holds it
    /// (`None` for a name it has no image by, or takes for no image's
    /// name): a sandbox made from an image with volumes would keep their
    /// files outside its workspace and disk limit.
    async fn image_volumes(&self, image: &str) -> Result<Option<Vec<String>>>;
    /// Creates the sandbox if it does not exist and starts it if stopped.
    async fn start(&self, session: SessionId, limits: Limits) -> Result<()> {
        let spec = SandboxSpec {
            limits,
            ..SandboxSpec::default()
        };
        self.start_with(session, &spec).await
    }
    /// [`Sandbox::start`], made as `spec` says when it is created (a
    /// sandbox that exists already keeps what it was created with).
    async fn start_with(&self, session: SessionId, spec: &SandboxSpec) -> Result<()>;
    /// Runs a command; cancelling `cancel` stops it: through the sandbox
    /// agent its process group gets `SIGTERM` (its output still read, so
    /// what it says as it ends is kept) and `SIGKILL` once [`STOP_GRACE`]
    /// has passed; without the agent (`docker exec`, a local sandbox) it
    /// is killed at once.
    async fn exec(
        &self,
        session: SessionId,
        request: &ExecRequest,
        cancel: &CancellationToken,
        sink: OutputSink<'_>,
    ) -> Result<ExecOutcome>;
    /// Starts a long-running command with stdin attached.
    async fn spawn(&self, session: SessionId, request: &SpawnRequest) -> Result<Process>;
    /// Opens a terminal in the running sandbox, with `env` added to
    /// [`SANDBOX_ENV`]. Only sandboxes with the agent have terminals.
    async fn terminal(
        &self,
        _session: SessionId,
        _env: &[(String, String)],
        _size: TerminalSize,
    ) -> Result<Terminal> {
        Err(SandboxError::Unsupported(
            "terminals need the Docker sandbox backend with its sandbox agent",
        ))
    }
    /// The workspace's changes as they come, a batch an item, while the
    /// stream is read. Only sandboxes with the agent watch, once their
    /// agent runs: nothing is started for it.
    async fn watch(&self, _session: SessionId) -> Result<BoxStream<'static, Result<Changes>>> {
        Err(SandboxError::Unsupported(
            "watching a workspace needs the Docker backend with its sandbox agent",
        ))
    }
    /// Stops the sandbox; its workspace stays.
    async fn stop(&self, session: SessionId) -> Result<()>;
    /// Freezes every process of the sandbox, and keeps it from starting,
    /// while the server reads its workspace by path (host-side git), until
    /// [`Self::resume`]; `false` when nothing was running to freeze, or
    /// the backend cannot (local sandboxes, whose processes run as the
    /// server's own user anyway).
    async fn pause(&self, _session: SessionId) -> Result<bool> {
        Ok(false)
    }
    /// Ends what [`Self::pause`] began (called after every pause that did
    /// not fail): the sandbox runs, or may start, again.
    async fn resume(&self, _session: SessionId) {}
    /// Removes the sandbox and its workspace for good.
    async fn destroy(&self, session: SessionId) -> Result<()>;
    /// Makes the session's workspace unless it exists, on a filesystem of
    /// `disk_mb` MiB where the host can hold disk limits
    /// ([`WorkspaceRoot::create`]); starting the sandbox makes it too.
    async fn create_workspace(&self, session: SessionId, disk_mb: Option<u64>) -> Result<()>;
    /// How much of its disk the session's workspace uses.
    async fn disk_use(&self, session: SessionId) -> Result<DiskUse>;
    /// The sandboxes this server owns on the backend.
    async fn list(&self) -> Result<Vec<Found>>;
    /// The session's files.
    fn workspace(&self, session: SessionId) -> Box<dyn Workspace + '_>;
    /// The session's workspace as a folder on this host, where the backend
    /// keeps it here (not on a remote Docker host): where it is prepared (a
    /// clone, a copy) and where host-side git reads it. Its filesystem is
    /// mounted ([`WorkspaceRoot::mounted`]).
    async fn host_folder(&self, session: SessionId) -> Result<Option<ConfinedFolder>>;
}

/// Host folder of a session's workspace.
pub fn workspace_dir(root: &Path, session: SessionId) -> PathBuf {
    root.join(session.to_string())
}

/// Environment every sandboxed command gets (invariant 2): nothing from the server's own
/// (which may hold the API key), only what a shell needs.
pub const SANDBOX_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("LANG", "C.UTF-8"),
    ("TERM", "dumb"),
];
