//! The Docker backend: one closed container per session, driven with bollard.
//!
//! Closed by default (invariant 3): non-root (uid 10001), no network, every capability
//! dropped, no-new-privileges, read-only root filesystem with tmpfs `/tmp`,
//! memory/CPU/pids limits, and an init process that reaps zombies. Containers
//! carry `paddock.session` and `paddock.instance` labels so a restarted server
//! finds its own and nobody else's.
//!
//! On this server's host, the workspace is a host folder mounted into the
//! sandbox, and the agent dials a socket in another; on a remote Docker
//! host, see [`docker_remote`](super::docker_remote).

use super::agent_call;
use super::agent_link::{AgentConnection, AgentLinks, Listening};
use super::agent_workspace::{AgentFiles, AgentWorkspace, STREAMS_PER_SESSION};
use super::docker_remote;
use super::{
    sandbox_user, shell, BackendInfo, BackendKind, CappedOutput, Changes, ConfinedFolder,
    ExecOutcome, ExecRequest, Found, HostWorkspace, OutputSink, OutputStream, Process,
    ProcessControl, Result, Sandbox, SandboxError, SandboxSpec, SpawnRequest, Terminal,
    TerminalSize, Workspace, WorkspaceRoot, DRAIN_AFTER_END, MOUNT_POINT, SANDBOX_ENV, SANDBOX_UID,
};
use crate::sync::lock;
use app::domain::SessionId;
use app::files::DiskUse;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptions, StopContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use paddock_sandbox_agent::{AGENT_DIR, AGENT_PATH, SOCKET_DIR};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub const SESSION_LABEL: &str = "paddock.session";
pub const INSTANCE_LABEL: &str = "paddock.instance";

/// Runs the command under `timeout`, which gives it a process group of its
/// own and kills that whole group when time is up. The group id is printed
/// first (before `exec`, so before any output) so Paddock can kill the group
/// on Stop; whatever the command left running in it is killed when it ends,
/// so no tool call outlives itself (a fork bomb's children included). The
/// wrapper's own stderr is silenced after the fork, so its job notices
/// ("Killed") never mix with the command's output. The group keeps the
/// exec's stdin (`<&0`): bash would give a background job /dev/null, and a
/// spawned process (the Claude Code CLI) reads its input there.
const EXEC_WRAPPER: &str = r#"{ echo "$BASHPID"; exec timeout -s KILL "$1" "${@:2}"; } <&0 & pid=$!
exec 2>/dev/null; wait "$pid"; rc=$?; kill -KILL -- "-$pid"; exit "$rc""#;
/// The longest the wrapper's first line (its group's id) is waited for:
/// a process of the sandbox writing into the wrapper's output first would
/// otherwise have it held until the command's end.
const PID_LINE_MAX: usize = 64;

/// A read of a workspace under way here: its session's read lock, and the
/// pause asked for it, held until Docker has answered.
struct Read {
    _lock_file: std::fs::File,
    pausing: Arc<tokio::sync::Mutex<()>>,
    /// Whether Docker paused it (set before `pausing` is let go): one that
    /// was not running is kept from starting by the lock alone.
    paused: Arc<std::sync::atomic::AtomicBool>,
}

pub struct DockerSandbox {
    docker: Docker,
    image: String,
    instance: String,
    workspaces: WorkspaceRoot,
    /// The OCI runtime sandboxes run under: the configured one (`runsc`:
    /// gVisor) or the engine's default (`runc`).
    runtime: String,
    /// OOM-kill count of each container when last read, to tell an OOM kill
    /// from any other SIGKILL.
    oom_kills: Mutex<HashMap<SessionId, u64>>,
    /// One start at a time per session: two concurrent creates of the same
    /// container race inside the daemon (one sees 409, then 404 on start).
    starting: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>,
    /// The server's reads of a workspace under way here, each holding its
    /// session's read lock (a file in the workspace root) while the sandbox
    /// is paused for it: a start waits for the read to end rather than let
    /// the agent run in the middle of it.
    reads: Mutex<HashMap<SessionId, Read>>,
    /// The sandbox agent's binary on this host, mounted into every
    /// sandbox; `None`: commands go through `docker exec`.
    agent_bin: Option<PathBuf>,
    agents: AgentLinks,
    /// One agent start at a time per session.
    agent_starts: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>,
    /// Sandboxes whose agent cannot run (made before it was mounted, or it
    /// failed to start): `docker exec` until they are made again.
    without_agent: Mutex<HashSet<SessionId>>,
    /// On a remote Docker host: the agent's binary as the tar uploaded
    /// into every sandbox ([`docker_remote`]); `None`: this host's.
    remote_agent: Option<Bytes>,
    /// On a remote Docker host: the files each session's agent may send at
    /// once ([`STREAMS_PER_SESSION`]).
    file_streams: Mutex<HashMap<SessionId, Arc<tokio::sync::Semaphore>>>,
}

/// How long a started agent has to dial in.
const AGENT_START: Duration = Duration::from_secs(3);

/// Why an agent did not start, and whether that holds for the sandbox's
/// life (it exits, or another process dialled) or may pass (the daemon's
/// answer, a busy host).
struct AgentStartError {
    why: String,
    lasting: bool,
}

impl AgentStartError {
    fn passing(why: String) -> Self {
        Self {
            why,
            lasting: false,
        }
    }

    fn lasting(why: String) -> Self {
        Self { why, lasting: true }
    }
}

fn unavailable(e: DockerError) -> SandboxError {
    SandboxError::Unavailable(e.to_string())
}

fn failed(e: DockerError) -> SandboxError {
    SandboxError::Failed(e.to_string())
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl DockerSandbox {
    /// The session's read lock, once no read of its workspace is under way
    /// on this host (here or in another replica): held while the server
    /// reads it with the sandbox paused.
    async fn read_lock(&self, session: SessionId) -> Result<std::fs::File> {
        let path = self.read_lock_path(session);
        tokio::task::spawn_blocking(move || crate::sync::lock_file(&path))
            .await
            .map_err(|e| SandboxError::Failed(e.to_string()))?
            .map_err(|e| {
                SandboxError::Failed(format!("cannot take the workspace's read lock: {e}"))
            })
    }

    fn read_lock_path(&self, session: SessionId) -> PathBuf {
        self.workspaces.root().join(format!("{session}.read.lock"))
    }

    /// Resumes a sandbox found paused, once no read of its workspace is
    /// under way: one that is pauses it for its own safety, and resumes it
    /// itself; one paused after all that is left from a server that stopped
    /// mid-read.
    async fn resume_left_paused(&self, session: SessionId) -> Result<()> {
        let _no_read = self.read_lock(session).await?;
        let name = Self::container_name(session);
        let paused = self
            .docker
            .inspect_container(&name, None)
            .await
            .map_err(failed)?
            .state
            .and_then(|s| s.paused);
        if paused == Some(true) {
            if let Err(e) = self.docker.unpause_container(&name).await {
                tracing::warn!(%session, "cannot resume the sandbox: {e}");
            }
        }
        Ok(())
    }

    /// Waits until the container `name`, whose creation another start
    /// (another replica's) began, is there: Docker holds a name from the
    /// moment its creation begins, before the container can be started.
    async fn made_elsewhere(&self, name: &str) -> Result<()> {
        for _ in 0..100 {
            match self.docker.inspect_container(name, None).await {
                Ok(_) => return Ok(()),
                Err(e) if status_of(&e) == Some(404) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(failed(e)),
            }
        }
        Err(SandboxError::Unavailable(format!(
            "another start was making {name}, and it is not there after 5 s"
        )))
    }

    /// Connects to `DOCKER_HOST` or the default socket (see
    /// [`docker_connect`](super::docker_connect): TCP only with mutual
    /// TLS), agreeing on an API version the daemon speaks (Debian's engine
    /// is older than bollard).
    /// With a `runtime`, sandboxes run under it, and one the engine does
    /// not have configured is refused here, by name; without, under the
    /// engine's default. `remote` says whether the daemon is on another
    /// machine ([`docker_remote`]); `None`: guessed from `DOCKER_HOST`.
    pub async fn connect(
        image: String,
        instance: String,
        workspace_root: PathBuf,
        runtime: Option<String>,
        agent_bin: Option<PathBuf>,
        remote: Option<bool>,
    ) -> Result<Self> {
        let remote = super::docker_connect::is_remote(remote);
        // The agent given, if it is there; for another machine's daemon,
        // else the deploy image's.
        let agent_bin = agent_bin.filter(|bin| bin.is_file()).or_else(|| {
            let bundled = PathBuf::from(super::BUNDLED_SANDBOX_AGENT_BIN);
            (remote && bundled.is_file()).then_some(bundled)
        });
        if agent_bin.is_none() && !remote {
            tracing::warn!(
                "no sandbox agent: sandbox commands go through docker exec (run scripts/setup, \
                 or set PADDOCK_SANDBOX_AGENT_BIN)"
            );
        }
        let remote_agent =
            match (remote, &agent_bin) {
                (false, _) => None,
                (true, Some(bin)) => Some(docker_remote::agent_tar(bin).map_err(|e| {
                    SandboxError::Unavailable(format!(
                        "cannot read the sandbox agent {}: {e}",
                        bin.display()
                    ))
                })?),
                (true, None) => return Err(SandboxError::Unavailable(
                    "sandboxes on a remote Docker host (DOCKER_HOST over TCP) need the sandbox \
                     agent, and this server has none: run scripts/setup, or set \
                     PADDOCK_SANDBOX_AGENT_BIN"
                        .into(),
                )),
            };
        let docker = super::docker_connect::client()?
            .negotiate_version()
            .await
            .map_err(unavailable)?;
        docker.ping().await.map_err(unavailable)?;
        let info = docker.info().await.map_err(unavailable)?;
        let runtime = match runtime {
            None => info.default_runtime.unwrap_or_else(|| "runc".into()),
            Some(wanted) => {
                let mut have: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
                if !have.contains(&wanted) {
                    have.sort();
                    return Err(SandboxError::Unavailable(format!(
                        "the Docker engine has no runtime {wanted:?} (it has: {}); configure it \
                         in the engine's daemon.json (\"runtimes\"), or unset \
                         PADDOCK_DOCKER_RUNTIME",
                        have.join(", ")
                    )));
                }
                wanted
            }
        };
        Ok(Self {
            docker,
            image,
            instance,
            agents: AgentLinks::new(workspace_root.clone()),
            workspaces: WorkspaceRoot::new(workspace_root, Some(SANDBOX_UID)),
            runtime,
            oom_kills: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashMap::new()),
            reads: Mutex::new(HashMap::new()),
            agent_bin,
            agent_starts: Mutex::new(HashMap::new()),
            without_agent: Mutex::new(HashSet::new()),
            remote_agent,
            file_streams: Mutex::new(HashMap::new()),
        })
    }

    /// The session's workspace folder, given to the sandbox user.
    fn folder(&self, session: SessionId) -> ConfinedFolder {
        self.workspaces.folder(session)
    }

    pub fn container_name(session: SessionId) -> String {
        format!("paddock-{session}")
    }

    /// The image a sandbox is made from: the session's, else the server's.
    fn image_of<'a>(&'a self, spec: &'a SandboxSpec) -> &'a str {
        spec.image.as_deref().unwrap_or(&self.image)
    }

    /// What a session's sandbox mounts, as binds and as mounts: its
    /// workspace, its own mounts, and the agent's binary and socket folder;
    /// on a remote host, volumes ([`docker_remote::volumes`]).
    fn storage(&self, session: SessionId, spec: &SandboxSpec) -> (Vec<String>, Vec<Mount>) {
        if self.remote_agent.is_some() {
            return (
                Vec::new(),
                docker_remote::volumes(session, self.labels(session)),
            );
        }
        let workspace = self.folder(session);
        let agent = self.agent_bin.iter().flat_map(|bin| {
            [
                format!("{}:{AGENT_PATH}:ro", bin.display()),
                format!(
                    "{}:{SOCKET_DIR}:ro",
                    self.agents.socket_dir(session).display()
                ),
            ]
        });
        let binds = std::iter::once(format!("{}:{MOUNT_POINT}", workspace.root().display()))
            .chain(spec.mounts.iter().map(|m| {
                let mode = if m.read_only { ":ro" } else { "" };
                format!("{}:{}{mode}", m.host.display(), m.target)
            }))
            .chain(agent)
            .collect();
        (binds, Vec::new())
    }

    /// What marks a session's container (and volume) as this server's.
    fn labels(&self, session: SessionId) -> HashMap<String, String> {
        HashMap::from([
            (SESSION_LABEL.to_owned(), session.to_string()),
            (INSTANCE_LABEL.to_owned(), self.instance.clone()),
        ])
    }

    fn create_body(&self, session: SessionId, spec: &SandboxSpec) -> ContainerCreateBody {
        let limits = spec.limits;
        let (binds, mounts) = self.storage(session, spec);
        let uid = SANDBOX_UID;
        ContainerCreateBody {
            image: Some(self.image_of(spec).to_owned()),
            // The image's own entry point does not run first: the sandbox
            // runs what Paddock says.
            entrypoint: Some(vec![String::new()]),
            user: Some(sandbox_user()),
            cmd: Some(match &spec.proxy {
                Some(relay) => relay.main_command(),
                None => vec!["sleep".into(), "infinity".into()],
            }),
            working_dir: Some(MOUNT_POINT.into()),
            env: Some(
                SANDBOX_ENV
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .chain(["HOME=/home/agent".to_owned()])
                    .chain(
                        spec.proxy.iter().flat_map(|relay| {
                            relay.env().into_iter().map(|(k, v)| format!("{k}={v}"))
                        }),
                    )
                    .collect(),
            ),
            labels: Some(self.labels(session)),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                binds: Some(binds),
                mounts: Some(mounts),
                network_mode: Some("none".into()),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([
                    ("/tmp".to_owned(), "rw,nosuid,nodev,size=512m".to_owned()),
                    (
                        "/home/agent".to_owned(),
                        format!("rw,nosuid,nodev,size=256m,uid={uid},gid={uid}"),
                    ),
                ])),
                memory: Some(limits.memory_mb * 1024 * 1024),
                // No swap: the memory limit is the limit.
                memory_swap: Some(limits.memory_mb * 1024 * 1024),
                nano_cpus: Some((limits.cpus * 1e9) as i64),
                pids_limit: Some(limits.pids),
                init: Some(true),
                runtime: Some(self.runtime.clone()),
                // Nothing reads a sandbox's own output, and Docker's default
                // log grows without bound: the agent, whose commands run as
                // the container's first process's user, could fill the
                // host's disk past its disk limit.
                log_config: Some(HostConfigLogConfig {
                    typ: Some("none".into()),
                    config: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The session's agent, started (and waited for) if it is not running;
    /// `None` where it cannot run, which is logged once.
    async fn agent(&self, session: SessionId) -> Option<AgentConnection> {
        if let Some(connection) = self.ready_agent(session).await {
            return Some(connection);
        }
        let unusable = || self.agent_bin.is_none() || lock(&self.without_agent).contains(&session);
        if unusable() {
            return None;
        }
        let gate = lock(&self.agent_starts).entry(session).or_default().clone();
        let _one_at_a_time = gate.lock().await;
        if let Some(connection) = self.ready_agent(session).await {
            return Some(connection);
        }
        if unusable() {
            return None;
        }
        let began = Instant::now();
        let started = self.start_agent(session).await;
        if started.is_err() {
            self.agents.forget(session);
        }
        match started {
            Ok(connection) => {
                tracing::debug!(%session, elapsed_ms = began.elapsed().as_millis() as u64, "sandbox agent started");
                Some(connection)
            }
            Err(AgentStartError { why, lasting }) => {
                tracing::warn!(%session, "the sandbox agent cannot be started ({why}): this command goes through docker exec{}", if lasting { ", and the sandbox's next ones until it is made again" } else { "" });
                if lasting {
                    lock(&self.without_agent).insert(session);
                }
                None
            }
        }
    }

    /// The session's agent connection, if it is open and takes requests (an
    /// agent that just died is forgotten here, so that a new one starts).
    async fn ready_agent(&self, session: SessionId) -> Option<AgentConnection> {
        let mut connection = self.agents.connection(session)?;
        if connection.ready().await.is_ok() {
            return Some(connection);
        }
        self.agents.forget(session);
        None
    }

    /// Starts the agent in the running container with a new secret on its
    /// stdin (never in its arguments or environment, which the sandbox's
    /// processes could read), and waits for it to dial in.
    async fn start_agent(
        &self,
        session: SessionId,
    ) -> std::result::Result<AgentConnection, AgentStartError> {
        let passing = |e: &dyn std::fmt::Display| AgentStartError::passing(e.to_string());
        if let Some(agent) = &self.remote_agent {
            let container = Self::container_name(session);
            let start = || {
                docker_remote::start_agent(
                    &self.docker,
                    &container,
                    session,
                    exec_env(&[]),
                    &self.agents,
                )
            };
            let first = match start().await {
                Ok(connection) => return Ok(connection),
                Err(first) => first,
            };
            // A sandbox left running by an older server runs its agent:
            // this server's is put in place (the old one has gone with its
            // streams), once.
            tracing::info!(%session, "the sandbox agent did not start ({first}): putting this server's in place");
            docker_remote::upload_agent(&self.docker, &container, agent)
                .await
                .map_err(|e| passing(&e))?;
            return start().await.map_err(AgentStartError::passing);
        }
        let Listening {
            socket_in_sandbox,
            secret,
            mut connected,
        } = self.agents.listen(session).map_err(|e| passing(&e))?;
        let options = CreateExecOptions {
            attach_stdin: Some(true),
            cmd: Some(vec![
                AGENT_PATH.to_owned(),
                "--connect".to_owned(),
                socket_in_sandbox,
            ]),
            env: Some(exec_env(&[])),
            working_dir: Some(MOUNT_POINT.to_owned()),
            user: Some(sandbox_user()),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(&Self::container_name(session), options)
            .await
            .map_err(|e| passing(&e))?;
        let StartExecResults::Attached { mut input, output } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| passing(&e))?
        else {
            return Err(AgentStartError::passing(
                "its input could not be attached".into(),
            ));
        };
        input
            .write_all(format!("{secret}\n").as_bytes())
            .await
            .map_err(|e| passing(&e))?;
        let waited = Instant::now();
        let arrival = loop {
            let arrived = tokio::time::timeout(
                Duration::from_millis(100),
                connected.wait_for(Option::is_some),
            )
            .await
            .ok()
            .and_then(|seen| seen.ok().map(|arrival| arrival.clone()));
            if let Some(arrival) = arrived {
                break arrival;
            }
            // An agent that could not start ends at once: no need to wait.
            let ended = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .ok()
                .filter(|e| e.running == Some(false) && e.exit_code.is_some());
            if let Some(ended) = ended {
                return Err(AgentStartError::lasting(format!(
                    "it exited with code {:?}",
                    ended.exit_code
                )));
            }
            if waited.elapsed() >= AGENT_START {
                return Err(AgentStartError::passing(format!(
                    "it did not dial in within {} s",
                    AGENT_START.as_secs()
                )));
            }
        };
        // Detached: the agent runs on, on its own.
        drop((input, output));
        let Some(arrival) = arrival else {
            return Err(AgentStartError::passing("it did not dial in".into()));
        };
        // Under runc the kernel names the process that dialled (0 when the
        // server has a pid namespace of its own): it must be the one just
        // started, not another that got the secret somehow. Other runtimes
        // (gVisor) answer for processes of their own, not named here.
        let expected = match self.runtime.as_str() {
            "runc" => self
                .docker
                .inspect_exec(&exec.id)
                .await
                .ok()
                .and_then(|e| e.pid)
                .filter(|pid| *pid > 0),
            _ => None,
        };
        match (expected, arrival.peer.filter(|pid| *pid > 0)) {
            (Some(expected), Some(peer)) if expected != i64::from(peer) => {
                Err(AgentStartError::lasting(format!(
                    "process {peer} dialled with its secret, not the agent ({expected})"
                )))
            }
            _ => Ok(arrival.connection),
        }
    }

    /// How many processes the container's cgroup has OOM-killed so far.
    async fn oom_kill_count(&self, session: SessionId) -> Option<u64> {
        let text = run_helper(
                &self.docker,
                session,
                &[
                    "sh",
                    "-c",
                    "cat /sys/fs/cgroup/memory.events 2>/dev/null || cat /sys/fs/cgroup/memory/memory.oom_control",
                ],
            )
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    }

    async fn kill_group(&self, session: SessionId, pgid: Option<u32>) {
        kill_group(&self.docker, session, pgid).await;
    }

    /// Starts `argv` in the session's container under the process-group
    /// wrapper and its time limit, as the sandbox user in the workspace,
    /// with [`SANDBOX_ENV`] and `env`: the exec's id, its output, and its
    /// stdin (attached only when `stdin`).
    async fn start_wrapped(
        &self,
        session: SessionId,
        argv: &[String],
        timeout: Duration,
        env: &[(String, String)],
        stdin: bool,
    ) -> Result<(String, ExecOutput, Pin<Box<dyn AsyncWrite + Send>>)> {
        if argv.is_empty() {
            return Err(SandboxError::Failed("nothing to run: argv is empty".into()));
        }
        let options = CreateExecOptions {
            attach_stdin: stdin.then_some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(
                [
                    "bash".to_owned(),
                    "-c".to_owned(),
                    EXEC_WRAPPER.to_owned(),
                    "paddock".to_owned(),
                    format!("{:.3}", timeout.as_secs_f64()),
                ]
                .into_iter()
                .chain(argv.iter().cloned())
                .collect(),
            ),
            env: Some(exec_env(env)),
            working_dir: Some(MOUNT_POINT.to_owned()),
            user: Some(sandbox_user()),
            ..Default::default()
        };
        // A sandbox paused for a moment (the server's git reading its
        // files) takes the command once it runs again.
        let mut waited = Duration::ZERO;
        let exec = loop {
            match self
                .docker
                .create_exec(&Self::container_name(session), options.clone())
                .await
            {
                Ok(exec) => break exec,
                Err(e)
                    if status_of(&e) == Some(409)
                        && waited < PAUSE_PATIENCE
                        && self.is_paused(session).await =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    waited += Duration::from_millis(100);
                }
                Err(e) => {
                    return Err(match status_of(&e) {
                        Some(404) => SandboxError::Missing(session),
                        Some(409) => {
                            SandboxError::Failed(format!("the sandbox is not running: {e}"))
                        }
                        _ => failed(e),
                    })
                }
            }
        };
        match self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(failed)?
        {
            StartExecResults::Attached { output, input } => Ok((exec.id, output, input)),
            StartExecResults::Detached => Err(SandboxError::Failed("exec did not attach".into())),
        }
    }
}

/// How long a command waits for a paused sandbox to run again.
const PAUSE_PATIENCE: Duration = Duration::from_secs(120);

impl DockerSandbox {
    async fn is_paused(&self, session: SessionId) -> bool {
        self.docker
            .inspect_container(&Self::container_name(session), None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.paused)
            .unwrap_or(false)
    }
}

/// The output of a started exec, as bollard streams it.
type ExecOutput = Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, DockerError>> + Send>>;

/// Longest a helper command may take, and the most of its output kept: it
/// runs as the sandbox's user, whose processes may stop it or write into
/// its output for ever.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
const HELPER_OUTPUT_MAX: usize = 64 * 1024;
/// Longest counting a remote workspace's disk use may take (many files on
/// a cold network disk), in seconds; `du` is killed in the sandbox then.
const DISK_COUNT_SECS: u64 = 60;

/// Runs a short helper command (no timeout wrapper) and returns stdout,
/// within [`HELPER_TIMEOUT`] and [`HELPER_OUTPUT_MAX`].
async fn run_helper(docker: &Docker, session: SessionId, cmd: &[&str]) -> Result<String> {
    run_helper_within(docker, session, cmd, HELPER_TIMEOUT).await
}

/// [`run_helper`], within `limit`.
async fn run_helper_within(
    docker: &Docker,
    session: SessionId,
    cmd: &[&str],
    limit: Duration,
) -> Result<String> {
    tokio::time::timeout(limit, helper_output(docker, session, cmd))
        .await
        .map_err(|_| {
            SandboxError::Failed(format!("{cmd:?} did not end within {} s", limit.as_secs()))
        })?
}

async fn helper_output(docker: &Docker, session: SessionId, cmd: &[&str]) -> Result<String> {
    let exec = docker
        .create_exec(
            &DockerSandbox::container_name(session),
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd.to_vec()),
                user: Some(sandbox_user().as_str()),
                ..Default::default()
            },
        )
        .await
        .map_err(failed)?;
    let mut out = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.map_err(failed)?
    {
        while let Some(item) = output.next().await {
            if let LogOutput::StdOut { message } = item.map_err(failed)? {
                out.push_str(&String::from_utf8_lossy(&message));
                if out.len() > HELPER_OUTPUT_MAX {
                    return Err(SandboxError::Failed(format!(
                        "{cmd:?} said more than {HELPER_OUTPUT_MAX} bytes"
                    )));
                }
            }
        }
    }
    Ok(out)
}

async fn kill_group(docker: &Docker, session: SessionId, pgid: Option<u32>) {
    let Some(pgid) = pgid else { return };
    let target = format!("-{pgid}");
    if let Err(e) = run_helper(docker, session, &["kill", "-KILL", "--", &target]).await {
        tracing::warn!(%session, "cannot kill process group {pgid}: {e}");
    }
}

/// The environment of a command: [`SANDBOX_ENV`] and the request's own.
fn exec_env(extra: &[(String, String)]) -> Vec<String> {
    SANDBOX_ENV
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(extra.iter().map(|(k, v)| format!("{k}={v}")))
        .collect()
}

/// A spawned command: the exec to inspect and the process group to kill.
struct DockerProcess {
    docker: Docker,
    session: SessionId,
    exec_id: String,
    pgid: Option<u32>,
}

#[async_trait::async_trait]
impl ProcessControl for DockerProcess {
    async fn kill(&self) {
        kill_group(&self.docker, self.session, self.pgid).await;
    }

    async fn exit_code(&self) -> Result<Option<i64>> {
        let code = self
            .docker
            .inspect_exec(&self.exec_id)
            .await
            .map_err(failed)?
            .exit_code;
        // Whatever the command left running in its group goes with it.
        self.kill().await;
        Ok(code.filter(|c| *c != 137))
    }
}

/// A process spawned through the agent, whose group is also killed
/// through `docker exec` (the agent may have gone away).
struct AgentSpawned {
    inner: Box<dyn ProcessControl>,
    docker: Docker,
    session: SessionId,
    group: Option<u32>,
}

#[async_trait::async_trait]
impl ProcessControl for AgentSpawned {
    async fn kill(&self) {
        self.inner.kill().await;
        kill_group(&self.docker, self.session, self.group).await;
    }

    async fn exit_code(&self) -> Result<Option<i64>> {
        self.inner.exit_code().await
    }
}

/// A terminal opened through the agent, whose shell's session is also
/// killed through `docker exec` (by the agent's binary, run for that
/// alone): for when the agent is gone.
struct AgentTerminal {
    inner: Box<dyn ProcessControl>,
    docker: Docker,
    session: SessionId,
    leader: Option<u32>,
}

#[async_trait::async_trait]
impl ProcessControl for AgentTerminal {
    async fn kill(&self) {
        self.inner.kill().await;
        let Some(leader) = self.leader else { return };
        let leader = leader.to_string();
        let command = [AGENT_PATH, "--kill-session", &leader];
        if let Err(e) = run_helper(&self.docker, self.session, &command).await {
            tracing::warn!(session = %self.session, "cannot end the terminal of shell {leader}: {e}");
        }
    }

    async fn exit_code(&self) -> Result<Option<i64>> {
        self.inner.exit_code().await
    }
}

#[async_trait::async_trait]
impl AgentFiles for DockerSandbox {
    fn file_stream_slot(&self, session: SessionId) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slots = lock(&self.file_streams)
            .entry(session)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(STREAMS_PER_SESSION)))
            .clone();
        slots.try_acquire_owned().ok()
    }

    async fn files_agent(
        &self,
        session: SessionId,
    ) -> std::result::Result<Option<AgentConnection>, String> {
        if let Some(connection) = self.ready_agent(session).await {
            return Ok(Some(connection));
        }
        // A start under way (a new session's sandbox is made as it is
        // created) is waited for: its container is made before it runs.
        let gate = lock(&self.starting).entry(session).or_default().clone();
        drop(gate.lock().await);
        let name = Self::container_name(session);
        match self.docker.inspect_container(&name, None).await {
            Ok(info) if info.state.as_ref().and_then(|s| s.running) == Some(true) => {}
            Ok(_) => {
                return Err(
                    "the session's sandbox is stopped, and on a remote Docker host its files are \
                     reached only through it: send a prompt to start it"
                        .into(),
                )
            }
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
        self.agent(session).await.map(Some).ok_or_else(|| {
            "the sandbox agent cannot be started, and on a remote Docker host the workspace's \
             files are reached only through it"
                .to_owned()
        })
    }
}

#[async_trait::async_trait]
impl Sandbox for DockerSandbox {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: BackendKind::Docker,
            warning: None,
            remote: self.remote_agent.is_some(),
            read_only_mounts: self.remote_agent.is_none(),
            runtime: Some(self.runtime.clone()),
            no_disk_limits: match self.remote_agent {
                Some(_) => Some("the workspaces are Docker volumes on a remote host".into()),
                None => self.workspaces.no_disk_limits().map(str::to_owned),
            },
            agent: self.agent_bin.is_some(),
        }
    }

    async fn check(&self) -> Result<()> {
        self.docker.ping().await.map_err(unavailable)?;
        match self.image_volumes(&self.image).await? {
            Some(_) => Ok(()),
            None => Err(SandboxError::Unavailable(format!(
                "the sandboxes' image {} is not on the Docker host (scripts/build-image builds \
                 it; PADDOCK_IMAGE names it)",
                self.image
            ))),
        }
    }

    async fn image_volumes(&self, image: &str) -> Result<Option<Vec<String>>> {
        match self.docker.inspect_image(image).await {
            Ok(found) => Ok(Some(
                found.config.and_then(|c| c.volumes).unwrap_or_default(),
            )),
            // 400: not a reference Docker reads ("invalid reference
            // format", an upper-case letter); 404: no such image here.
            Err(e) if matches!(status_of(&e), Some(400 | 404)) => Ok(None),
            // An answer that is no image's (a name the client's path
            // reached another route with): no such image.
            Err(
                bollard::errors::Error::JsonDataError { .. }
                | bollard::errors::Error::JsonSerdeError { .. },
            ) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    #[tracing::instrument(skip(self, spec))]
    async fn start_with(&self, session: SessionId, spec: &SandboxSpec) -> Result<()> {
        let gate = lock(&self.starting).entry(session).or_default().clone();
        let _one_at_a_time = gate.lock().await;
        let began = std::time::Instant::now();
        if self.remote_agent.is_some() {
            if !spec.mounts.is_empty() || spec.proxy.is_some() {
                return Err(SandboxError::Unsupported(
                    "a sandbox on a remote Docker host cannot have this server's folders mounted, \
                     nor reach the network through its egress proxy",
                ));
            }
        } else {
            self.workspaces.create(session, spec.limits.disk_mb).await?;
            if self.agent_bin.is_some() {
                self.agents.prepare(session).map_err(|e| {
                    SandboxError::Failed(format!("cannot prepare the sandbox agent's folder: {e}"))
                })?;
            }
        }
        let name = Self::container_name(session);
        let found = match self.docker.inspect_container(&name, None).await {
            Ok(info) => Some(info),
            Err(e) if status_of(&e) == Some(404) => None,
            Err(e) => return Err(failed(e)),
        };
        let made_under = found
            .as_ref()
            .and_then(|info| info.host_config.as_ref())
            .and_then(|h| h.runtime.clone());
        let found = match found {
            Some(_) if made_under.as_ref().is_some_and(|r| *r != self.runtime) => {
                // Made under another runtime (before PADDOCK_DOCKER_RUNTIME
                // changed): made again under this one; the workspace (a host
                // folder, or a named volume) stays.
                tracing::info!(%session, from = ?made_under, to = ?self.runtime, "sandbox made again under the configured runtime");
                let options = RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build();
                self.docker
                    .remove_container(&name, Some(options))
                    .await
                    .map_err(failed)?;
                lock(&self.oom_kills).remove(&session);
                None
            }
            found => found,
        };
        let with_agent = match &found {
            Some(info) => info
                .mounts
                .iter()
                .flatten()
                .any(|m| matches!(m.destination.as_deref(), Some(AGENT_PATH | AGENT_DIR))),
            None => true,
        };
        if found.is_none() {
            // Made now, with the agent: it may be tried again.
            lock(&self.without_agent).remove(&session);
        } else if !with_agent
            && self.agent_bin.is_some()
            && lock(&self.without_agent).insert(session)
        {
            tracing::info!(%session, "this sandbox was made without the agent: its commands go through docker exec until it is made again");
        }
        let running = match found {
            Some(info) => {
                let state = info.state.unwrap_or_default();
                if state.paused == Some(true) {
                    self.resume_left_paused(session).await?;
                }
                state.running.unwrap_or(false)
            }
            None => {
                // (Also the server's default image, or a name pointed at
                // another image since the session was made.)
                let image = self.image_of(spec);
                let volumes = self.image_volumes(image).await?.unwrap_or_default();
                if let Some(why) = super::volumes_refused(image, &volumes) {
                    return Err(SandboxError::Unavailable(why));
                }
                let options = CreateContainerOptionsBuilder::new().name(&name).build();
                match self
                    .docker
                    .create_container(Some(options), self.create_body(session, spec))
                    .await
                {
                    Ok(_) => {}
                    // Created meanwhile by a concurrent start (another
                    // replica's): fine, once that creation is done.
                    Err(e) if status_of(&e) == Some(409) => self.made_elsewhere(&name).await?,
                    Err(e) if status_of(&e) == Some(404) => {
                        return Err(SandboxError::Unavailable(format!(
                            "image {:?} not found: build it with scripts/build-image, set PADDOCK_IMAGE, \
                             or choose an image this Docker host has ({e})",
                            self.image_of(spec)
                        )))
                    }
                    Err(e) => return Err(failed(e)),
                }
                false
            }
        };
        // A container's cgroup, and so its OOM-kill count, starts afresh at
        // each start; only one found running (after a server restart) has a
        // history to read.
        let known = lock(&self.oom_kills).contains_key(&session);
        let baseline = if running {
            if known {
                None
            } else {
                self.oom_kill_count(session).await
            }
        } else {
            if let Some(agent) = &self.remote_agent {
                // Before each start, so a sandbox made by an older server
                // runs this one's agent.
                docker_remote::upload_agent(&self.docker, &name, agent).await?;
            }
            // Not while the server reads its workspace (a read holds this
            // lock also while the sandbox is stopped).
            let _no_read = self.read_lock(session).await?;
            match self.docker.start_container(&name, None).await {
                Ok(()) => crate::metrics::sandbox_started("docker", began.elapsed()),
                Err(e) if status_of(&e) == Some(304) => {}
                Err(e) => return Err(failed(e)),
            }
            Some(0)
        };
        if let Some(n) = baseline {
            lock(&self.oom_kills).insert(session, n);
        }
        Ok(())
    }

    #[tracing::instrument(skip(self, request, cancel, sink), fields(command = %request.command))]
    async fn exec(
        &self,
        session: SessionId,
        request: &ExecRequest,
        cancel: &CancellationToken,
        sink: OutputSink<'_>,
    ) -> Result<ExecOutcome> {
        if let Some(agent) = self.agent(session).await {
            let run = agent_call::exec(agent, request, cancel, sink).await;
            if run.orphaned_group.is_some() {
                // The agent went away or let the time limit pass: the
                // command's group is ended here, and the agent started anew.
                self.agents.forget(session);
                self.kill_group(session, run.orphaned_group).await;
            }
            return run.outcome;
        }
        let (exec_id, mut output, _) = self
            .start_wrapped(
                session,
                &shell(&request.command),
                request.timeout,
                &request.env,
                false,
            )
            .await?;

        let started = Instant::now();
        let mut captured = CappedOutput::new(request.output_cap);
        let mut pid_line: Option<Vec<u8>> = Some(Vec::new());
        let mut pgid = None;
        let (mut cancelled, mut backstop_fired) = (false, false);
        // The in-container `timeout` is the real limit; this only fires if
        // the container itself stops answering.
        let backstop = tokio::time::sleep(request.timeout + Duration::from_secs(5));
        tokio::pin!(backstop);
        // Armed when the command is killed, its group known, or at the
        // backstop (Docker holds an exec's output open while any process
        // has it, one that left its group too).
        let drain = tokio::time::sleep(request.timeout + Duration::from_secs(3600));
        tokio::pin!(drain);
        loop {
            tokio::select! {
                item = output.next() => {
                    let (stream, mut bytes) = match item {
                        None => break,
                        Some(Err(e)) => return Err(failed(e)),
                        Some(Ok(LogOutput::StdOut { message })) => (OutputStream::Stdout, message),
                        Some(Ok(LogOutput::StdErr { message })) => (OutputStream::Stderr, message),
                        Some(Ok(_)) => continue,
                    };
                    if let (OutputStream::Stdout, Some(line)) = (stream, pid_line.as_mut()) {
                        match bytes.iter().position(|b| *b == b'\n') {
                            Some(i) => {
                                line.extend_from_slice(&bytes[..i]);
                                pgid = std::str::from_utf8(line).ok().and_then(|s| s.trim().parse().ok());
                                pid_line = None;
                                bytes = bytes.slice(i + 1..);
                                // A Stop (or the backstop) that came before
                                // the group was known kills it now.
                                if cancelled || backstop_fired {
                                    self.kill_group(session, pgid).await;
                                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_END);
                                }
                            }
                            // (A process group id is a few digits: past
                            // that, something else writes there, which is
                            // output, and the group is not known.)
                            None if line.len() + bytes.len() > PID_LINE_MAX => {
                                let mut held = std::mem::take(line);
                                held.extend_from_slice(&bytes);
                                pid_line = None;
                                bytes = held.into();
                            }
                            None => {
                                line.extend_from_slice(&bytes);
                                continue;
                            }
                        }
                    }
                    if !bytes.is_empty() {
                        sink(stream, &bytes);
                        captured.push(&bytes);
                    }
                }
                () = cancel.cancelled(), if !cancelled => {
                    if !backstop_fired && pgid.is_some() {
                        drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_END);
                    }
                    cancelled = true;
                    self.kill_group(session, pgid).await;
                }
                () = &mut backstop, if !backstop_fired => {
                    // (With no group known by now, the container does not
                    // answer: nothing to wait for.)
                    if !cancelled || pgid.is_none() {
                        drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_END);
                    }
                    backstop_fired = true;
                    self.kill_group(session, pgid).await;
                }
                () = &mut drain => break,
            }
        }
        let elapsed = started.elapsed();
        let exit_code = self
            .docker
            .inspect_exec(&exec_id)
            .await
            .map_err(failed)?
            .exit_code;
        let killed = exit_code == Some(137) || exit_code.is_none();
        let timed_out = !cancelled && killed && (backstop_fired || elapsed >= request.timeout);
        let mut oom_killed = false;
        if killed && !timed_out && !cancelled {
            if let Some(now) = self.oom_kill_count(session).await {
                let mut seen = lock(&self.oom_kills);
                let before = seen.insert(session, now).unwrap_or(0);
                oom_killed = now > before;
            }
        }
        Ok(ExecOutcome::new(
            exit_code, captured, timed_out, cancelled, oom_killed,
        ))
    }

    #[tracing::instrument(skip(self, env))]
    async fn terminal(
        &self,
        session: SessionId,
        env: &[(String, String)],
        size: TerminalSize,
    ) -> Result<Terminal> {
        let Some(agent) = self.agent(session).await else {
            return Err(SandboxError::Unsupported(
                "terminals need the sandbox agent, which this sandbox cannot start (it was made \
                 before the agent, or the server has no agent binary): restart the sandbox",
            ));
        };
        let (terminal, leader) = agent_call::terminal(agent, env, size).await?;
        Ok(Terminal {
            process: Process {
                control: Box::new(AgentTerminal {
                    inner: terminal.process.control,
                    docker: self.docker.clone(),
                    session,
                    leader,
                }),
                ..terminal.process
            },
            ..terminal
        })
    }

    #[tracing::instrument(skip(self, request))]
    async fn spawn(&self, session: SessionId, request: &SpawnRequest) -> Result<Process> {
        if let Some(agent) = self.agent(session).await {
            let (process, group) = agent_call::spawn(agent, request).await?;
            // Killed through docker exec too: the agent may be gone.
            return Ok(Process {
                control: Box::new(AgentSpawned {
                    inner: process.control,
                    docker: self.docker.clone(),
                    session,
                    group,
                }),
                ..process
            });
        }
        let (exec_id, mut output, input) = self
            .start_wrapped(session, &request.argv, request.timeout, &request.env, true)
            .await?;
        // The wrapper prints the process group id first, before any output.
        let mut first = Vec::new();
        let mut early: Vec<(OutputStream, Bytes)> = Vec::new();
        let pgid = loop {
            match output.next().await {
                None => break None,
                Some(Err(e)) => return Err(failed(e)),
                Some(Ok(LogOutput::StdOut { message })) => {
                    match message.iter().position(|b| *b == b'\n') {
                        Some(i) => {
                            first.extend_from_slice(&message[..i]);
                            if i + 1 < message.len() {
                                early.push((OutputStream::Stdout, message.slice(i + 1..)));
                            }
                            break std::str::from_utf8(&first)
                                .ok()
                                .and_then(|s| s.trim().parse().ok());
                        }
                        None if first.len() + message.len() > PID_LINE_MAX => break None,
                        None => first.extend_from_slice(&message),
                    }
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    // Before the wrapper's first line only the wrapper
                    // runs: what more comes is let go.
                    if early.len() < 64 {
                        early.push((OutputStream::Stderr, message))
                    }
                }
                Some(Ok(_)) => {}
            }
        };
        let rest = output.filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok((OutputStream::Stdout, message))),
                Ok(LogOutput::StdErr { message }) => Some(Ok((OutputStream::Stderr, message))),
                Ok(_) => None,
                Err(e) => Some(Err(failed(e))),
            }
        });
        Ok(Process {
            stdin: input,
            output: futures_util::stream::iter(early.into_iter().map(Ok))
                .chain(rest)
                .boxed(),
            control: Box::new(DockerProcess {
                docker: self.docker.clone(),
                session,
                exec_id,
                pgid,
            }),
        })
    }

    /// Waits for the session's agent, never starting one (another
    /// replica may be starting it): a command or a file operation does.
    async fn watch(&self, session: SessionId) -> Result<BoxStream<'static, Result<Changes>>> {
        if self.agent_bin.is_none() {
            return Err(SandboxError::Unsupported(
                "watching a workspace needs the sandbox agent, and this server has none",
            ));
        }
        agent_call::watch(self.agents.connected(session).await).await
    }

    async fn stop(&self, session: SessionId) -> Result<()> {
        // Not while the server reads its workspace paused: the sandbox is
        // in use (and a stop would let it run for its grace). Paused with
        // no read under way, it was left so by a server that stopped
        // mid-read: resumed, to be stopped.
        let path = self.read_lock_path(session);
        let no_read = tokio::task::spawn_blocking(move || crate::sync::try_lock_file(&path))
            .await
            .map_err(|e| SandboxError::Failed(e.to_string()))?
            .map_err(|e| {
                SandboxError::Failed(format!("cannot take the workspace's read lock: {e}"))
            })?;
        let Some(_no_read) = no_read else {
            return Err(SandboxError::Failed(
                "the server is reading its workspace".into(),
            ));
        };
        if self.is_paused(session).await {
            let _ = self
                .docker
                .unpause_container(&Self::container_name(session))
                .await;
        }
        // Its agent goes with the container.
        self.agents.forget(session);
        let options = StopContainerOptionsBuilder::new().t(2).build();
        match self
            .docker
            .stop_container(&Self::container_name(session), Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    async fn pause(&self, session: SessionId) -> Result<bool> {
        let lock_file = self.read_lock(session).await?;
        // Asked for apart from the caller, and noted before: a read whose
        // request goes away while the pause is asked for is resumed once
        // the pause has been made (or refused), never before it.
        let pausing = Arc::new(tokio::sync::Mutex::new(()));
        let asking = pausing.clone().lock_owned().await;
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        lock(&self.reads).insert(
            session,
            Read {
                _lock_file: lock_file,
                pausing,
                paused: paused.clone(),
            },
        );
        let (docker, name) = (self.docker.clone(), Self::container_name(session));
        let asked = tokio::spawn(async move {
            let asked = docker.pause_container(&name).await;
            paused.store(asked.is_ok(), std::sync::atomic::Ordering::SeqCst);
            drop(asking);
            asked
        })
        .await
        .map_err(|e| SandboxError::Failed(format!("the pause was not asked for: {e}")))?;
        match asked {
            Ok(()) => Ok(true),
            // No container, or not running (or paused already): nothing
            // runs, and the read lock, held until the resume, keeps a
            // start (this replica's or another's) waiting meanwhile.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(false),
            Err(e) => {
                lock(&self.reads).remove(&session);
                Err(failed(e))
            }
        }
    }

    async fn resume(&self, session: SessionId) {
        // Only a pause of this process's reads, not another replica's;
        // once Docker has answered it (a pause it refused is unpaused in
        // vain).
        let Some(read) = lock(&self.reads).remove(&session) else {
            return;
        };
        // Apart from the caller, as the pause: a resume whose request goes
        // away still unpauses.
        let (docker, name) = (self.docker.clone(), Self::container_name(session));
        let resuming = tokio::spawn(async move {
            drop(read.pausing.lock().await);
            if read.paused.load(std::sync::atomic::Ordering::SeqCst) {
                if let Err(e) = docker.unpause_container(&name).await {
                    tracing::warn!(%session, "cannot resume the sandbox: {e}");
                }
            }
            // The read is over: a start waiting for it goes on.
            drop(read);
        });
        let _ = resuming.await;
    }

    async fn destroy(&self, session: SessionId) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(&Self::container_name(session), Some(options))
            .await
        {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(failed(e)),
        }
        lock(&self.oom_kills).remove(&session);
        lock(&self.reads).remove(&session);
        lock(&self.starting).remove(&session);
        let _ = std::fs::remove_file(self.read_lock_path(session));
        lock(&self.agent_starts).remove(&session);
        lock(&self.without_agent).remove(&session);
        lock(&self.file_streams).remove(&session);
        self.agents
            .remove(session)
            .map_err(|e| SandboxError::Failed(format!("cannot remove the agent's folder: {e}")))?;
        if self.remote_agent.is_none() {
            return self.workspaces.remove(session).await;
        }
        let volume = docker_remote::workspace_volume(session);
        match self
            .docker
            .remove_volume(&volume, None::<RemoveVolumeOptions>)
            .await
        {
            Err(e) if status_of(&e) != Some(404) => Err(failed(e)),
            _ => Ok(()),
        }
    }

    async fn create_workspace(&self, session: SessionId, disk_mb: Option<u64>) -> Result<()> {
        match self.remote_agent {
            // Made with the sandbox, on its host.
            Some(_) => Ok(()),
            None => self.workspaces.create(session, disk_mb).await,
        }
    }

    async fn disk_use(&self, session: SessionId) -> Result<DiskUse> {
        if self.remote_agent.is_none() {
            return self.workspaces.usage(session).await;
        }
        // Counted in the sandbox, where the volume is; a sandbox never made
        // has an empty workspace.
        let counted = match self.files_agent(session).await {
            Ok(None) => String::new(),
            Ok(Some(_)) => {
                let secs = DISK_COUNT_SECS.to_string();
                let du = [
                    "timeout",
                    "-s",
                    "KILL",
                    &secs,
                    "du",
                    "-s",
                    "-B1",
                    MOUNT_POINT,
                ];
                let limit = Duration::from_secs(DISK_COUNT_SECS + 5);
                run_helper_within(&self.docker, session, &du, limit).await?
            }
            Err(why) => return Err(SandboxError::Failed(why)),
        };
        Ok(DiskUse {
            used_bytes: counted
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            limit_bytes: None,
        })
    }

    async fn list(&self) -> Result<Vec<Found>> {
        let filters =
            HashMap::from([("label", vec![format!("{INSTANCE_LABEL}={}", self.instance)])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(unavailable)?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let session = c.labels.as_ref()?.get(SESSION_LABEL)?.parse().ok()?;
                use bollard::models::ContainerSummaryStateEnum as State;
                Some(Found {
                    session,
                    running: c.state == Some(State::RUNNING),
                    paused: c.state == Some(State::PAUSED),
                })
            })
            .collect())
    }

    async fn host_folder(&self, session: SessionId) -> Result<Option<ConfinedFolder>> {
        if self.remote_agent.is_some() {
            return Ok(None);
        }
        self.workspaces.mounted(session).await.map(Some)
    }

    fn workspace(&self, session: SessionId) -> Box<dyn Workspace + '_> {
        match self.remote_agent {
            Some(_) => Box::new(AgentWorkspace::new(self, session)),
            None => Box::new(HostWorkspace::new(self.folder(session))),
        }
    }
}
