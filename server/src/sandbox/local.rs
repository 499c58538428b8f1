//! The local backend, for hosts without Docker (such as a PaaS container):
//! a child process in the session's workspace with a scrubbed environment,
//! inside bubblewrap (no network; an empty root holding only the system's
//! programs, read-only; private /tmp; an unprivileged uid; a session's
//! read-only mounts) when it is installed and usable. Weaker than a
//! container: no memory or CPU limits, and without bubblewrap the command
//! sees the host as the server's user. `info()` says so, and so does the UI.

use super::{
    workspace_dir, BackendInfo, BackendKind, CappedOutput, ConfinedFolder, ExecOutcome,
    ExecRequest, Found, HostWorkspace, Mount, OutputSink, OutputStream, Process, Result, Sandbox,
    SandboxError, SandboxSpec, SpawnRequest, Workspace, WorkspaceRoot, DRAIN_AFTER_END,
    MOUNT_POINT, SANDBOX_ENV, SANDBOX_UID,
};
use crate::sync::lock;
use app::domain::SessionId;
use app::files::DiskUse;
use command_fds::{CommandFdExt, FdMapping};
use rustix::process::{kill_process_group, Pid, Signal};
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Writable mounts and long-running processes serve the claude-code engine
/// only, which runs in closed containers: local sandboxes refuse both
/// plainly. Read-only mounts (a session's folders) work under bubblewrap.
const NEEDS_DOCKER: SandboxError = SandboxError::Unsupported(
    "the claude-code engine needs the Docker sandbox backend (PADDOCK_SANDBOX=docker)",
);
const NEEDS_BWRAP: SandboxError = SandboxError::Unsupported(
    "read-only mounts need bubblewrap (or the Docker sandbox backend), which this host lacks",
);

pub struct LocalSandbox {
    workspaces: WorkspaceRoot,
    bwrap: Option<PathBuf>,
    /// Each session's read-only mounts, bound into every command it runs
    /// (nothing runs between commands, so they are kept here).
    mounts: Mutex<HashMap<SessionId, Vec<Mount>>>,
    /// The server's own data, hidden from every command where it lies
    /// inside the system folders bound into it ([`LocalSandbox::hiding`]).
    own: OwnData,
}

/// What the server keeps of its own: folders, and files apart (the master
/// key's, which may lie in a folder such as `/etc`).
#[derive(Clone, Debug, Default)]
pub struct OwnData {
    pub folders: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
}

impl LocalSandbox {
    /// The session's workspace folder. Inside bubblewrap the sandbox uid
    /// maps to ours: files stay ours.
    fn folder(&self, session: SessionId) -> ConfinedFolder {
        self.workspaces.folder(session)
    }

    pub fn new(workspace_root: PathBuf) -> Self {
        let bwrap = find_usable_bwrap();
        if bwrap.is_none() {
            tracing::warn!(
                "bubblewrap is not usable here: local sandboxes run as plain child processes"
            );
        }
        Self {
            workspaces: WorkspaceRoot::new(workspace_root, None),
            bwrap,
            mounts: Mutex::default(),
            own: OwnData::default(),
        }
    }

    /// Hides `own` (the server's own data) from every command, where it
    /// lies inside a system folder bound into it (a server run from
    /// `/opt/paddock`): under bubblewrap, a command runs as the server's
    /// own user, which may read all it keeps. Looked at again for each
    /// command, as what is made later is there then.
    pub fn hiding(mut self, own: OwnData) -> Self {
        self.own = own;
        self
    }

    /// The command that runs `request`, and, under bubblewrap, what to
    /// write to it once started: the session's variables as `--setenv`
    /// arguments, which bubblewrap reads from a pipe (`--args`), so that no
    /// value (a secret) is on a command line, which every user of the host
    /// can read (`ps`).
    fn command(
        &self,
        workspace: &Path,
        mounts: &[Mount],
        request: &ExecRequest,
    ) -> Result<(Command, Option<EnvArgs>)> {
        let secs = format!("{:.3}", request.timeout.as_secs_f64());
        let inner = [
            "timeout",
            "-s",
            "KILL",
            &secs,
            "bash",
            "-c",
            &request.command,
        ];
        let mut setenv = None;
        let mut cmd = match &self.bwrap {
            Some(bwrap) => {
                let mut c = Command::new(bwrap);
                c.args(bwrap_system_args());
                for folder in self.own.folders.iter().filter_map(|f| in_system_folder(f)) {
                    if folder.is_dir() {
                        c.arg("--tmpfs").arg(folder);
                    }
                }
                for file in self.own.files.iter().filter_map(|f| in_system_folder(f)) {
                    if file.is_file() {
                        c.arg("--ro-bind").arg("/dev/null").arg(file);
                    }
                }
                c.args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
                c.arg("--bind").arg(workspace).arg(MOUNT_POINT);
                for m in mounts {
                    c.arg("--ro-bind").arg(&m.host).arg(&m.target);
                }
                let uid = SANDBOX_UID.to_string();
                c.args(["--chdir", MOUNT_POINT, "--uid", &uid, "--gid", &uid]);
                // The session's variables are the sandboxed command's, never
                // bwrap's own: on bwrap (which runs on the host) a variable
                // such as LD_PRELOAD would load code outside the sandbox.
                if !request.env.is_empty() {
                    let args = setenv_args(&request.env)?;
                    let (reader, writer) = std::io::pipe()
                        .map_err(|e| SandboxError::Failed(format!("cannot make a pipe: {e}")))?;
                    // Not its standard input: bubblewrap closes the file
                    // it read them from, then opens the host's /proc,
                    // which takes the lowest number free. Its init keeps
                    // 0 to 2 open, and closes the others, so the host's
                    // /proc must land at 3 or above.
                    c.fd_mappings(vec![FdMapping {
                        parent_fd: reader.into(),
                        child_fd: ARGS_FD,
                    }])
                    .map_err(|e| SandboxError::Failed(format!("cannot pass a pipe: {e}")))?;
                    c.args(["--args", &ARGS_FD.to_string()]);
                    setenv = Some(EnvArgs { writer, args });
                }
                c.args(["--unshare-all", "--die-with-parent", "--new-session", "--"]);
                c.args(inner);
                c
            }
            None => {
                let mut c = Command::new(inner[0]);
                c.args(&inner[1..]).current_dir(workspace);
                c
            }
        };
        cmd.env_clear()
            .envs(SANDBOX_ENV.iter().copied())
            .env(
                "HOME",
                if self.bwrap.is_some() {
                    Path::new(MOUNT_POINT)
                } else {
                    workspace
                },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if self.bwrap.is_none() {
            // Without bubblewrap the command is this process, on the host
            // anyway.
            cmd.envs(request.env.iter().map(|(k, v)| (k, v)));
        }
        Ok((cmd, setenv))
    }
}

/// The file bubblewrap reads the session's variables from.
const ARGS_FD: i32 = 3;

/// The session's variables for bubblewrap, and the pipe they go down.
struct EnvArgs {
    writer: std::io::PipeWriter,
    args: Vec<u8>,
}

impl EnvArgs {
    /// Writes them for bubblewrap, which reads them all before it starts
    /// anything, apart (the pipe holds 64 KiB): should bubblewrap end
    /// first, or be killed, the write fails, and its exit says why.
    fn send(self) {
        let Self { mut writer, args } = self;
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let _ = writer.write_all(&args);
        });
    }
}

/// `--setenv NAME VALUE` for each variable, NUL-separated as bubblewrap's
/// `--args` reads them. A NUL inside a name or value would end it there
/// and begin another argument of bubblewrap's own: refused.
fn setenv_args(env: &[(String, String)]) -> Result<Vec<u8>> {
    let mut args = Vec::new();
    for (name, value) in env {
        if name.contains('\0') || value.contains('\0') {
            return Err(SandboxError::Failed(format!(
                "the variable {name:?} holds a NUL character, which no environment can"
            )));
        }
        for part in ["--setenv", name, value] {
            args.extend_from_slice(part.as_bytes());
            args.push(0);
        }
    }
    Ok(args)
}

/// The system's folders, bound read-only (or linked) into every sandbox.
const SYSTEM_FOLDERS: [&str; 8] = [
    "/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
];

/// Where `path` is, if it is inside (or is) a system folder bound into
/// every sandbox; nothing for what is not there (yet).
fn in_system_folder(path: &Path) -> Option<PathBuf> {
    let path = std::fs::canonicalize(path).ok()?;
    SYSTEM_FOLDERS
        .iter()
        .any(|system| path.starts_with(system))
        .then_some(path)
}

/// An empty root with only the system's programs and settings, read-only:
/// no home folders, no server data, no other sessions.
fn bwrap_system_args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for dir in SYSTEM_FOLDERS {
        match std::fs::read_link(dir) {
            Ok(target) => args.extend(["--symlink".into(), target.into(), dir.into()]),
            Err(_) if Path::new(dir).is_dir() => {
                args.extend(["--ro-bind".into(), dir.into(), dir.into()])
            }
            Err(_) => {}
        }
    }
    args
}

/// bubblewrap needs user namespaces, which many container hosts forbid: try it.
fn find_usable_bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let bwrap = std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())?;
    let ok = std::process::Command::new(&bwrap)
        .args(bwrap_system_args())
        .args(["--unshare-all", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bwrap)
}

async fn read_some(
    pipe: &mut Option<impl AsyncRead + Unpin>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

#[async_trait::async_trait]
impl Sandbox for LocalSandbox {
    fn info(&self) -> BackendInfo {
        let warning = if self.bwrap.is_some() {
            "Sandboxes are local processes under bubblewrap: no network and a read-only view of the \
             system, but no memory or CPU limits. Run Paddock with Docker for closed containers."
        } else {
            "Sandboxes are plain local processes with a scrubbed environment: commands can read the \
             host's files as the server's user. Run Paddock with Docker for real isolation."
        };
        BackendInfo {
            kind: BackendKind::Local,
            warning: Some(warning.to_owned()),
            remote: false,
            read_only_mounts: self.bwrap.is_some(),
            runtime: None,
            no_disk_limits: self.workspaces.no_disk_limits().map(str::to_owned),
            agent: false,
        }
    }

    async fn check(&self) -> Result<()> {
        std::fs::create_dir_all(self.workspaces.root())
            .map_err(|e| SandboxError::Unavailable(format!("workspace root: {e}")))
    }

    /// Local sandboxes run on the host as it is: no image.
    async fn image_volumes(&self, _image: &str) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    async fn start_with(&self, session: SessionId, spec: &SandboxSpec) -> Result<()> {
        let mounts = &spec.mounts;
        if spec.image.is_some() {
            return Err(SandboxError::Unsupported(
                "local sandboxes run no images: choose an image only with Docker sandboxes",
            ));
        }
        if mounts.iter().any(|m| !m.read_only) {
            return Err(NEEDS_DOCKER);
        }
        if spec.proxy.is_some() {
            return Err(SandboxError::Unsupported(
                "network access (a session's allowed hosts) needs the Docker sandbox backend",
            ));
        }
        if !mounts.is_empty() && self.bwrap.is_none() {
            return Err(NEEDS_BWRAP);
        }
        lock(&self.mounts).insert(session, mounts.to_vec());
        self.workspaces.create(session, spec.limits.disk_mb).await
    }

    async fn exec(
        &self,
        session: SessionId,
        request: &ExecRequest,
        cancel: &CancellationToken,
        sink: OutputSink<'_>,
    ) -> Result<ExecOutcome> {
        let workspace = workspace_dir(self.workspaces.root(), session);
        if !workspace.is_dir() {
            return Err(SandboxError::Missing(session));
        }
        let mounts = lock(&self.mounts)
            .get(&session)
            .cloned()
            .unwrap_or_default();
        // bwrap resolves each mount's host path again: refuse one that now
        // leads elsewhere (a link swapped in since the sandbox started).
        for m in &mounts {
            if m.host.canonicalize().ok().as_deref() != Some(m.host.as_path()) {
                return Err(SandboxError::Failed(format!(
                    "the folder mounted at {} changed on the host since the sandbox started",
                    m.target
                )));
            }
        }
        let (mut command, env_args) = self.command(&workspace, &mounts, request)?;
        let mut child = command
            .spawn()
            .map_err(|e| SandboxError::Failed(format!("cannot start the command: {e}")))?;
        // (The command holds the pipe's other end until it goes.)
        drop(command);
        if let Some(env_args) = env_args {
            env_args.send();
        }
        let group = child.id().and_then(|id| Pid::from_raw(id as i32));
        let kill = || {
            if let Some(pid) = group {
                let _ = kill_process_group(pid, Signal::KILL);
            }
        };

        let started = Instant::now();
        let mut captured = CappedOutput::new(request.output_cap);
        let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        let (mut cancelled, mut backstop_fired) = (false, false);
        let backstop = tokio::time::sleep(request.timeout + Duration::from_secs(5));
        tokio::pin!(backstop);
        // Armed when the command ends or is killed.
        let drain = tokio::time::sleep(request.timeout + Duration::from_secs(3600));
        tokio::pin!(drain);
        let mut ended = None;
        let mut draining = false;
        let mut drain_from_now = |drain: std::pin::Pin<&mut tokio::time::Sleep>| {
            if !std::mem::replace(&mut draining, true) {
                drain.reset(tokio::time::Instant::now() + DRAIN_AFTER_END);
            }
        };
        while stdout.is_some() || stderr.is_some() {
            tokio::select! {
                n = read_some(&mut stdout, &mut out_buf) => match n {
                    Ok(0) | Err(_) => stdout = None,
                    Ok(n) => { sink(OutputStream::Stdout, &out_buf[..n]); captured.push(&out_buf[..n]); }
                },
                n = read_some(&mut stderr, &mut err_buf) => match n {
                    Ok(0) | Err(_) => stderr = None,
                    Ok(n) => { sink(OutputStream::Stderr, &err_buf[..n]); captured.push(&err_buf[..n]); }
                },
                status = child.wait(), if ended.is_none() => {
                    ended = Some(status);
                    drain_from_now(drain.as_mut());
                }
                () = cancel.cancelled(), if !cancelled => { cancelled = true; kill(); drain_from_now(drain.as_mut()); }
                () = &mut backstop, if !backstop_fired => { backstop_fired = true; kill(); drain_from_now(drain.as_mut()); }
                () = &mut drain => break,
            }
        }
        let status = match ended {
            Some(status) => status,
            None => child.wait().await,
        }
        .map_err(|e| SandboxError::Failed(format!("cannot wait for the command: {e}")))?;
        // Nothing the command left behind outlives it.
        kill();
        let exit_code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .map(i64::from);
        let killed = exit_code == Some(137);
        let timed_out =
            !cancelled && killed && (backstop_fired || started.elapsed() >= request.timeout);
        Ok(ExecOutcome::new(
            exit_code, captured, timed_out, cancelled, false,
        ))
    }

    async fn spawn(&self, _session: SessionId, _request: &SpawnRequest) -> Result<Process> {
        Err(NEEDS_DOCKER)
    }

    async fn stop(&self, _session: SessionId) -> Result<()> {
        // Nothing runs between commands.
        Ok(())
    }

    async fn destroy(&self, session: SessionId) -> Result<()> {
        lock(&self.mounts).remove(&session);
        self.workspaces.remove(session).await
    }

    async fn create_workspace(&self, session: SessionId, disk_mb: Option<u64>) -> Result<()> {
        self.workspaces.create(session, disk_mb).await
    }

    async fn disk_use(&self, session: SessionId) -> Result<DiskUse> {
        self.workspaces.usage(session).await
    }

    async fn list(&self) -> Result<Vec<Found>> {
        let entries = match std::fs::read_dir(self.workspaces.root()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SandboxError::Unavailable(e.to_string())),
        };
        Ok(entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .map(|session| Found {
                session,
                running: false,
                paused: false,
            })
            .collect())
    }

    async fn host_folder(&self, session: SessionId) -> Result<Option<ConfinedFolder>> {
        self.workspaces.mounted(session).await.map(Some)
    }

    fn workspace(&self, session: SessionId) -> Box<dyn Workspace + '_> {
        Box::new(HostWorkspace::new(self.folder(session)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_data_inside_a_system_folder_is_hidden() {
        assert_eq!(
            in_system_folder(Path::new("/etc/hostname")),
            Some("/etc/hostname".into())
        );
        assert_eq!(in_system_folder(Path::new("/opt")), Some("/opt".into()));
        assert_eq!(
            in_system_folder(Path::new("/opt/paddock-test-absent")),
            None
        );
        assert_eq!(in_system_folder(Path::new("/tmp")), None);
        // (Files right in `/` are not in a sandbox's root.)
        assert_eq!(in_system_folder(Path::new("/")), None);
    }
}
