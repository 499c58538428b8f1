//! Git on the server's side of a session: cloning its repository, and
//! later committing and pushing what its agent changed, with a token from
//! the credential store that never enters the sandbox.
//!
//! Every command runs against a repository the server owns
//! (`PADDOCK_GIT_ROOT/<session>`, never mounted into a sandbox) with the
//! workspace as its work tree. Git reads configuration from the repository
//! it runs in, and some keys run programs (`core.fsmonitor`, hooks, filter
//! drivers, `core.sshCommand`); the agent can write the workspace's own
//! `.git`, so host-side git never runs in it. The process starts with an
//! empty environment, no system or global configuration, hooks off, and
//! only the `https`, `http` and `git` transports (no `file::` or `ext::`,
//! also not through a submodule or a redirect). A token reaches git as an
//! `Authorization` header through `GIT_CONFIG_*` variables: not in the
//! arguments (`ps`), not in any file, not in the clone's remote URL.
//!
//! Where git may go is checked before it goes ([`Reach`]): with sign-in on,
//! a source's host must have only public addresses (or ones in the
//! networks the operator names), none of them this host's own, which git
//! is then held to, with no
//! redirect followed: a URL cannot make the server fetch from its own
//! network.

use crate::egress::{is_cloud_metadata, own_addresses, unreachable_why, Network};
use base64::Engine as _;
use rustix::process::{kill_process_group, Pid, Signal};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Bytes of git's error output kept for a message.
const STDERR_MAX: usize = 4096;

/// Most of git's output read: a listing of the work tree (whose names the
/// sandbox chooses) is bounded like the rest.
const OUTPUT_MAX: usize = 64 * 1024 * 1024;
/// Files and folders of a work tree looked through for what would block
/// git, at most.
const WALK_MAX_ENTRIES: usize = 4_000_000;
/// The largest `.gitignore` or `.gitattributes` git on the host reads:
/// git holds one whole, and its patterns, for as long as it walks below
/// it (a sparse file of gigabytes takes no room on the workspace's disk).
const PATTERNS_MAX_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {step} took longer than {0} s and was stopped", .limit.as_secs())]
    TimedOut { step: &'static str, limit: Duration },
    #[error("the repository is larger than the limit of {} MiB", .0 / (1024 * 1024))]
    TooLarge(u64),
    #[error("git {step} failed: {message}")]
    Failed { step: &'static str, message: String },
    #[error("git {step} said more than {} MiB (a work tree of too many files?)", OUTPUT_MAX / (1024 * 1024))]
    SaidTooMuch { step: &'static str },
    /// The revision asked for (or the default branch's) is not in the
    /// repository.
    #[error("git checkout failed: {0}")]
    NoRevision(String),
    #[error("git cannot be run: {0}")]
    Spawn(std::io::Error),
    /// A commit would make the session's repository, on the server's disk
    /// and outside the workspace's limit, larger than it may be.
    #[error(
        "the changes to commit ({} MiB) and the repository ({} MiB) would be more than the {} MiB \
         a session's repository may hold: leave generated files out (.gitignore)",
        .adding / (1024 * 1024), .held / (1024 * 1024), .max / (1024 * 1024)
    )]
    CommitTooLarge { adding: u64, held: u64, max: u64 },
    /// The source's host is on a network git may not reach from here.
    #[error("{0}")]
    Unreachable(String),
}

impl GitError {
    /// Whether trying again would fail the same way: the repository or
    /// revision is not there, access is refused, or it is too large. A
    /// forge that is down, slow or answered in a way not understood here,
    /// or a step on this host that failed (a full disk), may pass.
    pub fn lasts(&self) -> bool {
        match self {
            GitError::TooLarge(_)
            | GitError::CommitTooLarge { .. }
            | GitError::SaidTooMuch { .. }
            | GitError::NoRevision(_)
            | GitError::Unreachable(_) => true,
            GitError::TimedOut { .. } | GitError::Spawn(_) => false,
            // What git says of the remote (its messages are not
            // translated: see `git`).
            GitError::Failed { step, message } => {
                *step == "clone"
                    && [
                        "not found",
                        "Authentication failed",
                        "could not read Username",
                        "could not read Password",
                        "returned error: 401",
                        "returned error: 403",
                        "returned error: 404",
                        "returned error: 410",
                        "not allowed",
                        "does not appear to be a git repository",
                        "not a git repository",
                    ]
                    .iter()
                    .any(|said| message.contains(said))
            }
        }
    }
}

/// A token git authenticates with over HTTP: `user:token`, or a bare token
/// (sent with the user `x-access-token`, which GitHub, GitLab and Gitea
/// accept for tokens).
#[derive(Clone)]
pub struct GitToken(String);

impl GitToken {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for masking.
    pub fn value(&self) -> &str {
        &self.0
    }

    fn header(&self) -> String {
        let pair = if self.0.contains(':') {
            self.0.clone()
        } else {
            format!("x-access-token:{}", self.0)
        };
        format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// What bounds a clone.
#[derive(Clone, Debug)]
pub struct CloneLimits {
    pub max_bytes: u64,
    pub timeout: Duration,
    pub reach: Reach,
}

/// A session's server-side repository: its git folder and the workspace
/// that is its work tree.
#[derive(Clone, Debug)]
pub struct HostRepo {
    pub git_dir: PathBuf,
    pub work_tree: PathBuf,
}

/// [`folder_size`] off the async threads.
async fn size_of(path: &Path) -> u64 {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || folder_size(&path))
        .await
        .unwrap_or(0)
}

/// Size of a folder's files, following no links.
fn folder_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Where git may go for a session's source.
#[derive(Clone, Debug)]
pub enum Reach {
    /// Anywhere: sign-in is off (one person's own machine).
    Anywhere,
    /// Public addresses, and those of the networks the operator named
    /// (`PADDOCK_EGRESS_NETWORKS`).
    Public(Arc<[Network]>),
}

impl Reach {
    pub fn new(sign_in: bool, networks: &[Network]) -> Self {
        match sign_in {
            false => Reach::Anywhere,
            true => Reach::Public(networks.into()),
        }
    }

    /// Why `ip` may not be cloned from, if it may not: a public address
    /// of another host, or any in a network the operator opened (a forge
    /// on this host's own internal address too, unlike the egress proxy's
    /// sandboxes: git here goes only to a repository's URL), but a cloud's
    /// metadata service.
    fn refusal(&self, ip: IpAddr, own: &[IpAddr]) -> Option<&'static str> {
        match self {
            Reach::Anywhere => None,
            Reach::Public(_) if is_cloud_metadata(ip) => Some("a cloud's metadata service"),
            Reach::Public(networks) if networks.iter().any(|n| n.contains(ip)) => None,
            Reach::Public(_) => unreachable_why(ip, own, &[]),
        }
    }

    /// Checks the addresses `url`'s host has now, and gives the options
    /// that hold git to them: over http and https it resolves the name no
    /// more (`http.curloptResolve`, which git 2.37 and later know) and
    /// follows no redirect, which could lead elsewhere. The git protocol
    /// resolves a name itself, so only an address is taken for it.
    async fn hold(&self, step: &'static str, url: &str) -> Result<Vec<String>, GitError> {
        if matches!(self, Reach::Anywhere) {
            return Ok(Vec::new());
        }
        let failed = |message: String| GitError::Failed { step, message };
        let parsed = reqwest::Url::parse(url).map_err(|e| failed(format!("{url:?}: {e}")))?;
        let port = parsed.port_or_known_default().unwrap_or(GIT_PROTOCOL_PORT);
        let host = parsed.host_str().unwrap_or_default();
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        let (name, addresses) = match literal {
            Ok(ip) => (None, vec![ip]),
            Err(_) if host.is_empty() => return Err(failed(format!("{url:?} names no host"))),
            Err(_) if parsed.scheme() == "git" => {
                return Err(GitError::Unreachable(format!(
                    "{host}: the git protocol looks its host up itself, past the check of \
                     where it may go; give the host's address, or an https:// URL"
                )))
            }
            Err(_) if !pins_addresses().await => {
                return Err(GitError::Unreachable(format!(
                    "{host}: this server's git cannot be held to the addresses checked (it is \
                     older than 2.37, or its version could not be read); give the host's \
                     address, or update git"
                )))
            }
            Err(_) => {
                let found = tokio::time::timeout(QUICK, tokio::net::lookup_host((host, port)))
                    .await
                    .map_err(|_| {
                        failed(format!("looking {host} up took over {} s", QUICK.as_secs()))
                    })?
                    .map_err(|e| failed(format!("cannot resolve {host}: {e}")))?;
                (Some(host), found.map(|a| a.ip()).collect::<Vec<_>>())
            }
        };
        let own = own_addresses();
        if let Some((ip, why)) = addresses
            .iter()
            .find_map(|ip| Some((ip, self.refusal(*ip, &own)?)))
        {
            return Err(GitError::Unreachable(format!(
                "{host} is at {ip}, {why}: this server clones only from public addresses of \
                 other hosts, and from the networks PADDOCK_EGRESS_NETWORKS names"
            )));
        }
        let mut options = vec!["-c".to_owned(), "http.followRedirects=false".to_owned()];
        if let Some(name) = name {
            let listed: Vec<String> = addresses
                .iter()
                .map(|ip| match ip {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                })
                .collect();
            // With its trailing dot and without: curl may look either up.
            let mut names = vec![name, name.trim_end_matches('.')];
            names.dedup();
            for name in names {
                options.push("-c".to_owned());
                options.push(format!(
                    "http.curloptResolve={name}:{port}:{}",
                    listed.join(",")
                ));
            }
        }
        Ok(options)
    }
}

/// Whether this server's git knows `http.curloptResolve` (2.37 and later;
/// an older one ignores it, unpinned). Asked until it is known.
async fn pins_addresses() -> bool {
    static KNOWN: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    // A version that could not be read is asked again next time.
    let known = KNOWN
        .get_or_try_init(|| async {
            let mut version = git(None);
            version.arg("--version");
            let said = run("version", version, QUICK, None).await?;
            let said = String::from_utf8_lossy(&said);
            let mut numbers = said
                .trim()
                .trim_start_matches("git version ")
                .split('.')
                .map(|n| n.parse::<u32>().unwrap_or(0));
            let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
            Ok::<_, GitError>((major, minor) >= (2, 37))
        })
        .await;
    known.is_ok_and(|pins| *pins)
}

/// The git protocol's port.
const GIT_PROTOCOL_PORT: u16 = 9418;

/// A git command with the hardened environment (see the module's doc).
fn git(token: Option<&GitToken>) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("LANG", "C.UTF-8")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false")
        .args([
            "-c",
            "protocol.allow=never",
            "-c",
            "protocol.https.allow=always",
            "-c",
            "protocol.http.allow=always",
            "-c",
            "protocol.git.allow=always",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "credential.helper=",
            "-c",
            "submodule.recurse=false",
            "-c",
            "advice.detachedHead=false",
            // No maintenance after a command: it would detach itself, out
            // of the command's time limit and its group's kill, and still
            // run when the session's repository is removed.
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, killed whole (see `Group`).
        .process_group(0)
        .kill_on_drop(true);
    if let Some(token) = token {
        // A redirect could take the header to another host.
        cmd.env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", token.header())
            .env("GIT_CONFIG_KEY_1", "http.followRedirects")
            .env("GIT_CONFIG_VALUE_1", "false");
    }
    cmd
}

/// A git command's process group, killed when it is cut short: the
/// helpers a transfer runs (`git-remote-https`, `fetch-pack`,
/// `index-pack`) do not end with git killed alone, and would go on writing
/// a pack into the server's disk. Killed while git, its leader, is not yet
/// reaped, so that the group's id is still its own; let go once git ended
/// by itself (having waited for its helpers).
struct Group(Option<Pid>);

impl Group {
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` to its end within `limit`, killing it (and failing) if it
/// takes longer or if `too_large` says so while it runs; its stdout.
async fn run(
    step: &'static str,
    mut cmd: Command,
    limit: Duration,
    too_large: Option<(&Path, u64)>,
) -> Result<Vec<u8>, GitError> {
    let mut child = cmd.spawn().map_err(GitError::Spawn)?;
    // (Dropped before `child`, which is not reaped before it is dropped.)
    let mut group = Group(child.id().and_then(|id| Pid::from_raw(id as i32)));
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(GitError::Spawn(std::io::Error::other(
            "git's output is not piped",
        )));
    };
    let out = tokio::spawn(async move {
        let mut buf = Vec::new();
        // Past the limit the pipe closes, which ends git (SIGPIPE).
        let _ = (&mut stdout)
            .take(OUTPUT_MAX as u64 + 1)
            .read_to_end(&mut buf)
            .await;
        buf
    });
    let err = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf).await;
        // Drain the rest so git never blocks on a full pipe.
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        buf
    });
    let deadline = tokio::time::Instant::now() + limit;
    let status = loop {
        tokio::select! {
            status = child.wait() => {
                group.0 = None;
                break status.map_err(GitError::Spawn)?;
            }
            () = tokio::time::sleep_until(deadline) => {
                group.kill();
                let _ = child.kill().await;
                return Err(GitError::TimedOut { step, limit });
            }
            () = tokio::time::sleep(Duration::from_millis(200)), if too_large.is_some() => {
                if let Some((path, max)) = too_large {
                    if size_of(path).await > max {
                        group.kill();
                        let _ = child.kill().await;
                        return Err(GitError::TooLarge(max));
                    }
                }
            }
        }
    };
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    if stdout.len() > OUTPUT_MAX {
        return Err(GitError::SaidTooMuch { step });
    }
    // A transfer quicker than the watch is measured once it is done.
    if let Some((path, max)) = too_large.filter(|_| status.success()) {
        if size_of(path).await > max {
            return Err(GitError::TooLarge(max));
        }
    }
    if status.success() {
        Ok(stdout)
    } else {
        let text = String::from_utf8_lossy(&stderr);
        let message: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
            .collect::<Vec<_>>()
            .join("; ");
        let message = if message.is_empty() {
            format!("exit status {status}")
        } else {
            app::text::elided(&message, STDERR_MAX)
        };
        Err(GitError::Failed { step, message })
    }
}

/// What a clone left: the commit the session starts from and its working
/// branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cloned {
    pub base_commit: String,
    pub branch: String,
}

const QUICK: Duration = Duration::from_secs(60);

impl HostRepo {
    fn git(&self, token: Option<&GitToken>) -> Command {
        let mut cmd = git(token);
        // The work tree belongs to the sandbox user: git would refuse it as
        // "dubious". Its own .git is never read (see the module's doc).
        let safe = format!("safe.directory={}", self.work_tree.display());
        cmd.args(["-c", &safe])
            .arg("--git-dir")
            .arg(&self.git_dir)
            .arg("--work-tree")
            .arg(&self.work_tree);
        cmd
    }

    /// Clones `url` into the server's repository, starts the working
    /// branch `branch` at `rev` (the remote's default branch when `None`),
    /// and checks it out into the (empty) work tree, with a `.git` of the
    /// agent's own (its `origin` the URL, which it cannot reach).
    pub async fn clone(
        &self,
        url: &str,
        rev: Option<&str>,
        branch: &str,
        token: Option<&GitToken>,
        limits: CloneLimits,
    ) -> Result<Cloned, GitError> {
        let held = limits.reach.hold("clone", url).await?;
        let mut clone = git(token);
        clone
            .args(held)
            .args(["clone", "--bare", "--quiet", "--", url])
            .arg(&self.git_dir);
        run(
            "clone",
            clone,
            limits.timeout,
            Some((&self.git_dir, limits.max_bytes)),
        )
        .await?;
        let spec = format!("{}^{{commit}}", rev.unwrap_or("HEAD"));
        let mut resolve = self.git(None);
        resolve.args([
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ]);
        let base = run("rev-parse", resolve, QUICK, None).await.map_err(|_| {
            GitError::NoRevision(match rev {
                Some(rev) => format!("{rev} is not a branch, tag or commit of the repository"),
                None => "the repository has no commit on its default branch".to_owned(),
            })
        })?;
        let base_commit = String::from_utf8_lossy(&base).trim().to_owned();
        // The checkout, measured before it is written: a small pack can
        // hold one large file at many paths.
        let mut tree = self.git(None);
        tree.args(["ls-tree", "-r", "-l", "-z", "--full-tree", &base_commit]);
        let listed = run("checkout", tree, limits.timeout, None).await?;
        let checkout_bytes: u64 = listed
            .split(|b| *b == 0)
            .filter_map(|entry| {
                let meta = entry.split(|b| *b == b'\t').next()?;
                let size = meta.rsplit(|b| *b == b' ').next()?;
                std::str::from_utf8(size).ok()?.parse::<u64>().ok()
            })
            .sum();
        if checkout_bytes > limits.max_bytes {
            return Err(GitError::TooLarge(limits.max_bytes));
        }
        // The branch a pull request would go into: the one asked for, else
        // the remote's default (a bare clone's HEAD, until it is moved).
        let mut default = self.git(None);
        default.args(["symbolic-ref", "--short", "HEAD"]);
        let default = run("clone", default, QUICK, None).await.unwrap_or_default();
        let default = String::from_utf8_lossy(&default).trim().to_owned();
        let mut is_branch = self.git(None);
        is_branch.args(["show-ref", "--verify", "--quiet"]);
        is_branch.arg(format!("refs/heads/{}", rev.unwrap_or_default()));
        let target = match rev {
            Some(rev) if run("clone", is_branch, QUICK, None).await.is_ok() => rev.to_owned(),
            _ => default,
        };
        // A branch of the remote's named as the first part of ours (a
        // `paddock` beside `paddock/<session>`), which git cannot keep
        // with it: not needed here (its commit is resolved), it goes.
        if let Some((top, _)) = branch.split_once('/') {
            let clash = format!("refs/heads/{top}");
            let mut there = self.git(None);
            there.args(["show-ref", "--verify", "--quiet", &clash]);
            // (Deleting one that is not there fails where branches under
            // its name are, as Paddock's own pushes make.)
            if run("branch", there, QUICK, None).await.is_ok() {
                let mut gone = self.git(None);
                gone.args(["update-ref", "-d", &clash]);
                run("branch", gone, QUICK, None).await?;
            }
        }
        let refname = format!("refs/heads/{branch}");
        for (step, args) in [
            ("branch", vec!["config", "paddock.target", target.as_str()]),
            (
                "branch",
                vec!["update-ref", refname.as_str(), base_commit.as_str()],
            ),
            ("branch", vec!["symbolic-ref", "HEAD", refname.as_str()]),
            ("checkout", vec!["config", "core.bare", "false"]),
            ("checkout", vec!["read-tree", "-u", "--reset", "HEAD"]),
        ] {
            let mut cmd = self.git(None);
            cmd.args(args);
            run(step, cmd, limits.timeout, None).await?;
        }
        // The agent's own repository: a copy (never hard links into ours),
        // on the same branch.
        let agent_git = self.work_tree.join(".git");
        let mut copy = git(None);
        // From our own folder: the one place the file transport is used.
        copy.args(["-c", "protocol.file.allow=always"])
            .args([
                "clone",
                "--bare",
                "--quiet",
                "--no-hardlinks",
                "--branch",
                branch,
                "--",
            ])
            .arg(&self.git_dir)
            .arg(&agent_git);
        run("checkout", copy, limits.timeout, None).await?;
        let mut own = git(None);
        own.arg("--git-dir")
            .arg(&agent_git)
            .arg("--work-tree")
            .arg(&self.work_tree);
        let settings = [
            ["config", "core.bare", "false"],
            ["config", "remote.origin.url", url],
            [
                "config",
                "remote.origin.fetch",
                "+refs/heads/*:refs/remotes/origin/*",
            ],
        ];
        for args in settings {
            let mut cmd = git(None);
            cmd.arg("--git-dir").arg(&agent_git).args(args);
            run("checkout", cmd, QUICK, None).await?;
        }
        own.args(["read-tree", "HEAD"]);
        run("checkout", own, limits.timeout, None).await?;
        self.refresh_index(&agent_git).await;
        self.refresh_index(&self.git_dir).await;
        Ok(Cloned {
            base_commit,
            branch: branch.to_owned(),
        })
    }
}

impl HostRepo {
    /// Brings an index's file stats up to date, so the first status after
    /// a checkout does not read every file again (best effort).
    async fn refresh_index(&self, git_dir: &Path) {
        let mut cmd = git(None);
        cmd.arg("--git-dir")
            .arg(git_dir)
            .arg("--work-tree")
            .arg(&self.work_tree)
            .args(["update-index", "-q", "--refresh"]);
        let _ = run("checkout", cmd, QUICK, None).await;
    }

    /// What [`Self::exclude`] was given, as the server's own copy of the
    /// exclude file has it (the agent's is theirs to change).
    fn written(&self) -> Vec<String> {
        std::fs::read_to_string(self.git_dir.join("info").join("exclude"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with('/'))
            .map(str::to_owned)
            .collect()
    }

    /// Paths git leaves out of the working branch's changes (and the
    /// agent's `git status`): what Paddock itself wrote into the workspace,
    /// each from the workspace's top (`/.claude/CLAUDE.md`, a folder with
    /// a `/` at its end).
    pub fn exclude(&self, patterns: &[String]) -> std::io::Result<()> {
        if patterns.is_empty() {
            return Ok(());
        }
        let lines: String = patterns.iter().map(|p| format!("{p}\n")).collect();
        for git_dir in [self.git_dir.clone(), self.work_tree.join(".git")] {
            let info = git_dir.join("info");
            std::fs::create_dir_all(&info)?;
            use std::io::Write;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(info.join("exclude"))?
                .write_all(lines.as_bytes())?;
        }
        Ok(())
    }
}

/// How a path changed, as `git diff --name-status` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Modified,
    Added,
    Deleted,
}

/// A path as git names it: bytes, which need not be UTF-8 (a file named
/// `a\xff` is committed as it is; shown, it is read lossily).
pub type GitPath = Vec<u8>;

/// Each `(status, path)` of `git diff --name-status -z` output.
fn name_status(out: &[u8]) -> Vec<(Status, GitPath)> {
    let mut fields = out.split(|b| *b == 0).filter(|f| !f.is_empty());
    let mut found = Vec::new();
    while let (Some(code), Some(path)) = (fields.next(), fields.next()) {
        let status = match code.first() {
            Some(b'A') => Status::Added,
            Some(b'D') => Status::Deleted,
            _ => Status::Modified,
        };
        found.push((status, path.to_vec()));
    }
    found
}

impl HostRepo {
    // What changed is listed, never staged with `git add`: a nested
    // repository would make git look inside with a `git status` of its
    // own, which reads the configuration the agent wrote there (a filter's
    // command would run on the host). Nested repositories are left alone.

    /// The tracked files of the work tree that differ from `commit`.
    pub async fn changed_since(
        &self,
        commit: &str,
        limit: Duration,
    ) -> Result<Vec<(Status, GitPath)>, GitError> {
        let mut diff = self.git(None);
        diff.args([
            "diff",
            "--name-status",
            "--no-renames",
            "--ignore-submodules=all",
            "-z",
            commit,
            "--",
        ]);
        Ok(name_status(&run("status", diff, limit, None).await?))
    }

    /// The files no commit has, less what `.gitignore` and our exclude file
    /// leave out, once the work tree is known not to block git.
    pub async fn untracked(&self, limit: Duration) -> Result<Vec<GitPath>, GitError> {
        let repo = Clone::clone(self);
        tokio::task::spawn_blocking(move || repo.check_readable())
            .await
            .map_err(|e| GitError::Spawn(std::io::Error::other(e)))??;
        let mut others = self.git(None);
        // A nested repository is listed as its folder (`sub/`), never entered.
        others.args(["ls-files", "-z", "--others", "--exclude-standard", "--"]);
        // What Paddock wrote, also where the repository's own `.gitignore`
        // takes it back (`!.claude/`): those outrank the exclude file.
        others.args(self.written().iter().map(|path| {
            let path = path.trim_start_matches('/').trim_end_matches('/');
            format!(":(top,exclude,literal){path}")
        }));
        Ok(run("status", others, limit, None)
            .await?
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty() && !p.ends_with(b"/"))
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// A commit's id (`HEAD`: the working branch's newest).
    pub async fn resolve(&self, rev: &str) -> Result<String, GitError> {
        let mut cmd = self.git(None);
        cmd.args([
            "rev-parse",
            "--verify",
            "--end-of-options",
            &format!("{rev}^{{commit}}"),
        ]);
        let out = run("rev-parse", cmd, QUICK, None).await?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }

    /// A file's bytes at `commit`, if it has it (a folder there is no
    /// file) and they are at most `max` (a larger one reads as `max + 1`
    /// zero bytes: too large).
    pub async fn blob(
        &self,
        commit: &str,
        path: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, GitError> {
        let object = format!("{commit}:{path}");
        let mut kind = self.git(None);
        kind.args(["cat-file", "-t", &object]);
        match run("show", kind, QUICK, None).await {
            Ok(kind) if kind.trim_ascii() == b"blob" => {}
            // Another object (a folder), or none: git refuses to name it.
            Ok(_) | Err(GitError::Failed { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut size = self.git(None);
        size.args(["cat-file", "-s", &object]);
        let size = run("show", size, QUICK, None).await?;
        let size: usize = String::from_utf8_lossy(&size)
            .trim()
            .parse()
            .unwrap_or(usize::MAX);
        if size > max {
            return Ok(Some(vec![0; max + 1]));
        }
        let mut cat = self.git(None);
        cat.args(["cat-file", "blob", &object]);
        run("show", cat, QUICK, None).await.map(Some)
    }

    /// The branch a pull request would go into.
    pub async fn target_branch(&self) -> Option<String> {
        let mut cmd = self.git(None);
        cmd.args(["config", "paddock.target"]);
        let out = run("config", cmd, QUICK, None).await.ok()?;
        Some(String::from_utf8_lossy(&out).trim().to_owned()).filter(|b| !b.is_empty())
    }

    /// Removes the locks a git killed mid-write left (at its time limit,
    /// or with the request that ran it gone): the index's, `HEAD`'s and
    /// its branch's. Only this session's one change at a time runs here
    /// (see changes.rs), so any there now is stale.
    fn clear_stale_locks(&self) {
        let mut locks = vec![
            self.git_dir.join("index.lock"),
            self.git_dir.join("HEAD.lock"),
        ];
        let head = read_small(&self.git_dir.join("HEAD"));
        if let Some(branch) = head.as_deref().and_then(|h| h.trim().strip_prefix("ref: ")) {
            if branch.starts_with("refs/heads/") && !branch.contains("..") {
                locks.push(self.git_dir.join(format!("{branch}.lock")));
            }
        }
        for lock in locks {
            let _ = std::fs::remove_file(lock);
        }
    }

    /// Commits every change of the work tree (less what is ignored, and
    /// nested repositories) to the working branch, by `author` (`Name
    /// <email>`, also the committer); the new commit, or `None` when
    /// nothing changed since the last one. Refused when the files it adds
    /// and the repository together are more than `max_bytes`.
    pub async fn commit_all(
        &self,
        message: &str,
        (name, email): (&str, &str),
        limit: Duration,
        max_bytes: u64,
    ) -> Result<Option<String>, GitError> {
        self.clear_stale_locks();
        // Staged from the last commit on: what a commit cut off after its
        // staging left in the index (a file the agent removed since, which
        // no change shows) is not taken along unseen.
        let mut from_head = self.git(None);
        from_head.args(["read-tree", "-m", "HEAD"]);
        run("read-tree", from_head, limit, None).await?;
        let untracked = self.untracked(limit).await?;
        let changed = self.changed_since("HEAD", limit).await?;
        if changed.is_empty() && untracked.is_empty() {
            return Ok(None);
        }
        // What is a file or a link (not behind a link) is added; what is
        // gone, or is now something git cannot keep, is removed.
        let (add, remove): (Vec<GitPath>, Vec<GitPath>) = changed
            .into_iter()
            .map(|(_, p)| p)
            .chain(untracked)
            .partition(|p| self.keepable(p));
        // Each commit writes what it adds into the repository on the
        // server's disk: a file the agent makes again and again, committed
        // each time, would fill it. Past the most, its loose objects are
        // packed first (what a failed packing leaves is only measured); a
        // commit that adds nothing (it removes) is never refused.
        let adding = self.sizes_in_work_tree(&add).await;
        let mut held = size_of(&self.git_dir).await;
        if adding > 0 && adding.saturating_add(held) > max_bytes {
            if adding <= max_bytes {
                let mut pack = self.git(None);
                pack.args(["repack", "-d", "-q"]);
                if let Err(e) = run("repack", pack, limit, None).await {
                    tracing::warn!("cannot pack a session's repository: {e}");
                }
                held = size_of(&self.git_dir).await;
            }
            if adding.saturating_add(held) > max_bytes {
                return Err(GitError::CommitTooLarge {
                    adding,
                    held,
                    max: max_bytes,
                });
            }
        }
        // Removals first; an addition may replace a folder by a file.
        for (paths, how) in [(remove, "--force-remove"), (add, "--add --replace")] {
            if paths.is_empty() {
                continue;
            }
            let list: Vec<u8> = paths
                .into_iter()
                .flat_map(|p| p.into_iter().chain([0]))
                .collect();
            let list_file = self.git_dir.join("PADDOCK_PATHS");
            std::fs::write(&list_file, list).map_err(GitError::Spawn)?;
            let mut stage = self.git(None);
            stage
                .arg("update-index")
                .args(how.split(' '))
                .args(["-z", "--stdin"])
                .stdin(std::fs::File::open(&list_file).map_err(GitError::Spawn)?);
            let staged = run("add", stage, limit, None).await;
            let _ = std::fs::remove_file(&list_file);
            staged?;
        }
        let message_file = self.git_dir.join("PADDOCK_COMMIT_MSG");
        std::fs::write(&message_file, message).map_err(GitError::Spawn)?;
        let mut commit = self.git(None);
        commit
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", email)
            .env("GIT_COMMITTER_NAME", name)
            .env("GIT_COMMITTER_EMAIL", email)
            .args([
                "commit",
                "--quiet",
                "--no-verify",
                "--cleanup=whitespace",
                "-F",
            ])
            .arg(&message_file);
        let done = run("commit", commit, limit, None).await;
        let _ = std::fs::remove_file(&message_file);
        done?;
        self.resolve("HEAD").await.map(Some)
    }

    /// The sizes of the work tree's `paths` as they are (a link's own),
    /// added up off the async threads.
    async fn sizes_in_work_tree(&self, paths: &[GitPath]) -> u64 {
        use std::os::unix::ffi::OsStrExt;
        let at: Vec<PathBuf> = paths
            .iter()
            .map(|p| self.work_tree.join(std::ffi::OsStr::from_bytes(p)))
            .collect();
        tokio::task::spawn_blocking(move || {
            at.iter()
                .map(|p| p.symlink_metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .await
        .unwrap_or(0)
    }

    /// Whether the work tree's `path` is a regular file or a link that no
    /// link leads to (what a commit can hold).
    fn keepable(&self, path: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let mut at = self.work_tree.clone();
        let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        for (i, part) in parts.iter().enumerate() {
            at.push(std::ffi::OsStr::from_bytes(part));
            let Ok(meta) = at.symlink_metadata() else {
                return false;
            };
            let last = i + 1 == parts.len();
            let kind = meta.file_type();
            if !last && !kind.is_dir() {
                return false;
            }
            if last {
                return kind.is_file() || kind.is_symlink();
            }
        }
        false
    }

    /// Refuses a work tree where git would block or read without end: a
    /// `.gitignore` or `.gitattributes` that is not a regular file, a named
    /// pipe called `HEAD`, or a `commondir` that is neither a file nor a
    /// link to a folder or to nothing (a link to a pipe), anywhere; and
    /// what git reads of each nested repository it tells (see
    /// [`Self::check_nested`]). A pipe nobody writes to would hold git,
    /// and the paused sandbox, until the time limit; `/dev/zero` would
    /// fill the server's memory. And one of more than [`WALK_MAX_ENTRIES`]
    /// files and folders, which the walk would take too long over.
    fn check_readable(&self) -> Result<(), GitError> {
        use std::os::unix::fs::FileTypeExt;
        let root = self
            .work_tree
            .canonicalize()
            .map_err(|e| GitError::Failed {
                step: "status",
                message: format!("cannot read the workspace: {e}"),
            })?;
        let mut stack = vec![self.work_tree.clone()];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                seen += 1;
                if seen > WALK_MAX_ENTRIES {
                    return Err(GitError::Failed {
                        step: "status",
                        message: format!(
                            "the workspace holds more than {WALK_MAX_ENTRIES} files and folders: \
                             too many to look through for changes"
                        ),
                    });
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let name = entry.file_name();
                // (The agent's own `.git` at the top is not git's here.)
                let top_git = dir == self.work_tree && name == ".git";
                if name == ".git" && !top_git {
                    self.check_nested(&root, &entry.path())?;
                }
                let blocking = if kind.is_dir() {
                    if !top_git {
                        stack.push(entry.path());
                    }
                    false
                } else if name == ".gitignore" || name == ".gitattributes" {
                    let large = kind.is_file()
                        && entry.metadata().is_ok_and(|m| m.len() > PATTERNS_MAX_BYTES);
                    if large {
                        return Err(self.unreadable(
                            &root,
                            &entry.path(),
                            &format!("is over {} MiB", PATTERNS_MAX_BYTES / 1024 / 1024),
                        ));
                    }
                    !kind.is_file() && !kind.is_symlink()
                } else if name == "commondir" {
                    // A file, or a link to a folder (pnpm links packages by
                    // name), which git cannot read as one: a link to a file
                    // could lead to a pipe, or the server's own output.
                    // (A link to nothing, which git passes over, too.)
                    !(kind.is_file() || kind.is_symlink() && to_folder_or_nothing(&entry.path()))
                } else {
                    kind.is_fifo() && name == "HEAD"
                };
                if blocking {
                    return Err(self.unreadable(&root, &entry.path(), "is not a regular file"));
                }
            }
        }
        Ok(())
    }

    /// A nested repository's `.git`, which git opens to tell whether the
    /// folder is one: a folder, or a file (or link) saying where the
    /// repository is, which must be in the work tree (a submodule's is in
    /// the agent's own `.git`, which the walk passes over). Then what git
    /// reads there: `HEAD` (its first bytes, following a link),
    /// `commondir` and `config` (whole).
    fn check_nested(&self, root: &Path, dot_git: &Path) -> Result<(), GitError> {
        let kind = match dot_git.symlink_metadata() {
            Ok(meta) => meta.file_type(),
            Err(_) => return Ok(()),
        };
        let repository = if kind.is_dir() {
            dot_git.to_owned()
        } else {
            let Some(to) = within(root, dot_git) else {
                return Err(self.unreadable(root, dot_git, "leads out of the workspace"));
            };
            let Ok(meta) = to.metadata() else {
                return Ok(());
            };
            if meta.is_dir() {
                to
            } else if !meta.is_file() {
                return Err(self.unreadable(root, dot_git, "is not a regular file"));
            } else {
                // git reads a `.git` file of a few bytes: `gitdir: <path>`,
                // from the folder that holds it.
                let said = read_small(&to);
                let Some(path) = said.as_deref().and_then(|s| s.strip_prefix("gitdir: ")) else {
                    return Ok(());
                };
                let folder = dot_git.parent().unwrap_or(root);
                let Some(to) = within(root, &folder.join(path)) else {
                    return Err(self.unreadable(root, dot_git, "leads out of the workspace"));
                };
                to
            }
        };
        self.check_repository(root, &repository, &["HEAD", "commondir", "config"])?;
        // A linked repository's own config is in the folder its
        // `commondir` names, from the repository.
        let common = repository.join("commondir");
        let common = match read_small(&common) {
            Some(path) => {
                let Some(to) = within(root, &repository.join(path)) else {
                    return Err(self.unreadable(root, &common, "leads out of the workspace"));
                };
                self.check_repository(root, &to, &["config"])?;
                to
            }
            None => repository.clone(),
        };
        self.check_head_refs(root, &repository, &common)
    }

    /// What git reads to resolve a nested repository's `HEAD` (to compare
    /// it with what the work tree had there): the branch it names and each
    /// symbolic ref after it, in the repository and in its common folder
    /// (where a linked one's branches are), and `packed-refs`. Each ref
    /// there must be a small regular file (git reads one whole, through a
    /// link not naming another ref).
    fn check_head_refs(
        &self,
        root: &Path,
        repository: &Path,
        common: &Path,
    ) -> Result<(), GitError> {
        let bases: Vec<&Path> = if repository == common {
            vec![repository]
        } else {
            vec![repository, common]
        };
        // HEAD names a branch; a ref after it may name any ref git can
        // (`FETCH_HEAD`, `x`, `main-worktree/…`), never one climbing out.
        let mut name = next_ref(&repository.join("HEAD")).filter(|n| n.starts_with("refs/"));
        // (git follows five at most.)
        for _ in 0..5 {
            let Some(refname) = name.take().filter(|n| {
                !n.starts_with('/')
                    && !n.contains('\0')
                    && n.split('/').all(|c| !c.is_empty() && c != "..")
            }) else {
                break;
            };
            let refname = refname
                .strip_prefix("main-worktree/")
                .unwrap_or(&refname)
                .to_owned();
            for base in &bases {
                let path = base.join(&refname);
                if path.symlink_metadata().is_err() {
                    continue;
                }
                if within(root, &path).is_none() {
                    return Err(self.unreadable(root, &path, "leads out of the workspace"));
                }
                self.check_repository(root, base, &[refname.as_str()])?;
                name = name.or_else(|| next_ref(&path));
            }
        }
        for base in &bases {
            let packed = base.join("packed-refs");
            let Ok(meta) = packed.symlink_metadata() else {
                continue;
            };
            // Read whole, as large as a repository's tags make it.
            let regular = meta.is_file()
                || meta.file_type().is_symlink()
                    && within(root, &packed)
                        .is_some_and(|to| to.metadata().is_ok_and(|m| m.is_file()));
            if !regular {
                return Err(self.unreadable(root, &packed, "is not a regular file"));
            }
        }
        Ok(())
    }

    /// Refuses a repository's file of these names that git could not read
    /// as a small file: a pipe, a device, one too large, or a link to one.
    fn check_repository(
        &self,
        root: &Path,
        repository: &Path,
        names: &[&str],
    ) -> Result<(), GitError> {
        for &name in names {
            let path = repository.join(name);
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            let kind = meta.file_type();
            let small = |meta: &std::fs::Metadata| meta.len() <= GITFILE_MAX_BYTES as u64;
            let readable = if kind.is_file() {
                small(&meta)
            } else if kind.is_symlink() {
                // A `HEAD` that is a link is one to the branch it names.
                within(root, &path).is_some_and(|to| {
                    to_folder_or_nothing(&to)
                        || name == "HEAD" && to.metadata().is_ok_and(|m| m.is_file() && small(&m))
                })
            } else {
                kind.is_dir()
            };
            if !readable {
                return Err(self.unreadable(root, &path, "is not a small regular file"));
            }
        }
        Ok(())
    }

    /// Why git cannot be run over the work tree now, naming the path in it
    /// (`root`: the work tree's canonical path).
    fn unreadable(&self, root: &Path, path: &Path, why: &str) -> GitError {
        let named = path
            .strip_prefix(&self.work_tree)
            .or_else(|_| path.strip_prefix(root))
            .unwrap_or(path);
        GitError::Failed {
            step: "status",
            message: format!(
                "{} {why}: remove it (the agent can) and look again",
                named.display()
            ),
        }
    }

    /// Pushes the working branch to `origin` under the same name.
    pub async fn push(
        &self,
        url: &str,
        branch: &str,
        token: Option<&GitToken>,
        limit: Duration,
        reach: &Reach,
    ) -> Result<(), GitError> {
        let held = reach.hold("push", url).await?;
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        let mut push = self.git(token);
        push.args(held)
            .args(["push", "--quiet", "--no-verify", "origin", &refspec]);
        run("push", push, limit, None).await.map(|_| ())
    }
}

/// A `.git` file, a nested repository's `commondir` or `config` read at
/// most: real ones are a few hundred bytes.
const GITFILE_MAX_BYTES: usize = 64 * 1024;

/// Whether `path` is a link to a folder or to nothing.
fn to_folder_or_nothing(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => m.is_dir(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// A small regular file's text, its line's end taken off (as git reads a
/// `.git` file or a `commondir`): `None` for anything else.
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    if !path.symlink_metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(GITFILE_MAX_BYTES as u64)
        .read_to_string(&mut text)
        .ok()?;
    Some(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// The ref a ref file names, as git reads it: a link's text when it is
/// one to another ref, else the `ref:` line it holds.
fn next_ref(path: &Path) -> Option<String> {
    if let Ok(link) = std::fs::read_link(path) {
        return link
            .to_str()
            .filter(|text| text.starts_with("refs/"))
            .map(str::to_owned);
    }
    read_small(path).and_then(|text| {
        text.trim()
            .strip_prefix("ref:")
            .map(|r| r.trim().to_owned())
    })
}

/// Where `path` leads, links followed, if that is within `root` (a
/// canonical path); a path that leads nowhere leads nowhere outside.
fn within(root: &Path, path: &Path) -> Option<PathBuf> {
    match path.canonicalize() {
        Ok(to) => to.starts_with(root).then_some(to),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(path.to_owned()),
        Err(_) => None,
    }
}

/// The folder of a session's server-side repository.
pub fn repo_dir(git_root: &Path, session: app::domain::SessionId) -> PathBuf {
    git_root.join(session.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_hosts_own_addresses_are_cloned_from_only_in_an_opened_network() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        // A public address on this host's own interface: its services.
        let own = [ip("127.0.0.1"), ip("8.8.4.4"), ip("10.0.0.5")];
        let closed = Reach::new(true, &[]);
        assert_eq!(
            closed.refusal(ip("8.8.4.4"), &own),
            Some("an address of this server's own")
        );
        assert_eq!(closed.refusal(ip("8.8.8.8"), &own), None);
        assert_eq!(
            closed.refusal(ip("10.0.0.5"), &own),
            Some("a non-public address")
        );
        // A forge on this host's internal address, its network opened.
        let opened = Reach::new(true, &["10.0.0.0/24".parse().unwrap()]);
        assert_eq!(opened.refusal(ip("10.0.0.5"), &own), None);
        assert_eq!(
            opened.refusal(ip("8.8.4.4"), &own),
            Some("an address of this server's own")
        );
        assert_eq!(Reach::new(false, &[]).refusal(ip("8.8.4.4"), &own), None);
    }

    #[tokio::test]
    async fn output_past_the_limit_ends_the_command_and_is_refused() {
        let mut said = Command::new("sh");
        // Writes for ever, unless its output is closed.
        said.args(["-c", "exec yes"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let limit = Duration::from_secs(600);
        match run("status", said, limit, None).await {
            Err(GitError::SaidTooMuch { step: "status" }) => {}
            other => panic!("{other:?}"),
        }
    }
}
