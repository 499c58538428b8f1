//! Configuration from flags and the environment (12-factor: every flag has an
//! environment variable, which is how containers and PaaS set them).

use crate::origin::{parse_allowed_host, parse_public_url, Origin};
use crate::sandbox::{Limits, MountPolicy};
use crate::telemetry::LogFormat;
use app::domain::{AppError, SandboxLimits};
use clap::Parser;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "paddock",
    version,
    about = "Run Claude agents in closed sandboxes"
)]
pub struct Config {
    /// Address to listen on [default: 127.0.0.1:3000, or 0.0.0.0:$PORT when
    /// only PORT is set, as a PaaS does].
    #[arg(long, env = "PADDOCK_ADDR")]
    pub addr: Option<SocketAddr>,

    /// How log lines are written: text, or one JSON object per line.
    #[arg(long, env = "PADDOCK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Port given by a PaaS; ignored when PADDOCK_ADDR is set.
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,

    /// The URL people open Paddock at, when it is not a loopback address
    /// (behind a proxy, on a PaaS, on a team's machine): its host is served
    /// and its origin trusted. Set it whenever Paddock listens beyond
    /// loopback.
    #[arg(long, env = "PADDOCK_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<Origin>,

    /// More host names to serve (comma-separated), besides loopback ones
    /// and the public URL's.
    #[arg(long, env = "PADDOCK_ALLOWED_HOSTS", value_delimiter = ',', value_parser = parse_allowed_host)]
    pub allowed_hosts: Vec<String>,

    /// Host folders sessions may mount read-only (comma-separated; a
    /// session mounts one of them, or a folder inside one, at /mnt/<name>).
    /// None by default.
    #[arg(long, env = "PADDOCK_MOUNT_ALLOW", value_delimiter = ',')]
    pub mount_allow: Vec<PathBuf>,

    /// Sign-in: `on` (every request needs an account or an API token), or
    /// `off` for one person on their own machine, allowed only while
    /// Paddock listens on a loopback address.
    #[arg(long, env = "PADDOCK_AUTH", value_enum, default_value_t = AuthSetting::On)]
    pub auth: AuthSetting,

    /// Database URL; a missing SQLite file (and its folder) is created.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/paddock.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Folder under which each session's workspace lives.
    #[arg(long, env = "WORKSPACE_ROOT", default_value = "data/workspaces")]
    pub workspace_root: PathBuf,

    /// Proxies in front of this server whose `X-Forwarded-For` is
    /// believed (addresses or networks, comma-separated): the client a
    /// request counts for (sign-in limits, the audit log) is then the
    /// nearest address none of them has [default: none; the peer].
    #[arg(long, env = "PADDOCK_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = trusted_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Sandbox backend [default: docker when a daemon answers, else local].
    #[arg(long, env = "PADDOCK_SANDBOX", value_enum)]
    pub sandbox: Option<SandboxChoice>,

    /// The Docker runtime sandboxes run under, one the engine has
    /// configured: `runsc` for gVisor, which puts a kernel of its own
    /// between the agent and the host's [default: the engine's own, runc].
    #[arg(long, env = "PADDOCK_DOCKER_RUNTIME")]
    pub docker_runtime: Option<String>,

    /// Whether the Docker daemon is on another machine, so that nothing of
    /// this one's filesystem reaches its sandboxes: workspaces are volumes
    /// there and files go through the sandbox agent [default: when
    /// DOCKER_HOST is TCP to an address that is not loopback].
    #[arg(long, env = "PADDOCK_DOCKER_REMOTE")]
    pub docker_remote: Option<bool>,

    /// Image of the Docker sandboxes.
    #[arg(long, env = "PADDOCK_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,

    /// Default memory limit of a sandbox, in MiB.
    #[arg(long, env = "PADDOCK_SANDBOX_MEMORY_MB", default_value_t = Limits::default().memory_mb, value_parser = memory_mb)]
    pub sandbox_memory_mb: i64,

    /// Default CPU limit of a sandbox, in CPUs.
    #[arg(long, env = "PADDOCK_SANDBOX_CPUS", default_value_t = Limits::default().cpus, value_parser = cpus)]
    pub sandbox_cpus: f64,

    /// Default process limit of a sandbox.
    #[arg(long, env = "PADDOCK_SANDBOX_PIDS", default_value_t = Limits::default().pids, value_parser = pids)]
    pub sandbox_pids: i64,

    /// Non-public networks the egress proxy may reach for sessions that
    /// list hosts, and that git sources may be cloned from and pushed to
    /// with sign-in on (comma-separated CIDR, such as an internal mirror's
    /// or forge's 10.1.0.0/16). None by default: a name that resolves to a
    /// loopback, private or link-local address is refused.
    #[arg(long, env = "PADDOCK_EGRESS_NETWORKS", value_delimiter = ',')]
    pub egress_networks: Vec<crate::egress::Network>,

    /// Default disk limit of a session's workspace, in MiB (its own
    /// filesystem, where the host can mount one); 0: no limit.
    #[arg(long, env = "PADDOCK_SANDBOX_DISK_MB", default_value_t = Limits::default().disk_mb.unwrap_or(0), value_parser = disk_mb)]
    pub sandbox_disk_mb: u64,

    /// The most memory a session may ask for its sandbox, in MiB.
    #[arg(long, env = "PADDOCK_SANDBOX_MAX_MEMORY_MB", default_value_t = 8192, value_parser = memory_mb)]
    pub sandbox_max_memory_mb: i64,

    /// The most CPUs a session may ask for its sandbox.
    #[arg(long, env = "PADDOCK_SANDBOX_MAX_CPUS", default_value_t = 4.0, value_parser = cpus)]
    pub sandbox_max_cpus: f64,

    /// The most processes a session may ask for its sandbox.
    #[arg(long, env = "PADDOCK_SANDBOX_MAX_PIDS", default_value_t = 4096, value_parser = pids)]
    pub sandbox_max_pids: i64,

    /// The largest workspace disk a session may ask for, in MiB.
    #[arg(long, env = "PADDOCK_SANDBOX_MAX_DISK_MB", default_value_t = 51_200, value_parser = max_disk_mb)]
    pub sandbox_max_disk_mb: u64,

    /// The master key that seals saved credentials: 64 hex digits. Without
    /// it, the key file is used (and created on first run).
    #[arg(long, env = "PADDOCK_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// The master key's file when PADDOCK_MASTER_KEY is not set; created
    /// with mode 0600. Back it up apart from the database.
    #[arg(
        long,
        env = "PADDOCK_MASTER_KEY_FILE",
        default_value = "data/master.key"
    )]
    pub master_key_file: PathBuf,

    /// Messages API endpoint (a gateway, or the scripted model server).
    #[arg(long, env = "ANTHROPIC_BASE_URL", default_value = crate::llm::DEFAULT_BASE_URL,
          value_parser = model_endpoint)]
    pub anthropic_base_url: String,

    /// API key, sent as `x-api-key`, used when no key is saved in the
    /// credential store. Never shown, logged or given to a sandbox.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,

    /// Bearer token instead of a key (for gateways that issue tokens).
    #[arg(long, env = "ANTHROPIC_AUTH_TOKEN", hide_env_values = true)]
    pub anthropic_auth_token: Option<String>,

    /// Model turns one prompt may take.
    #[arg(long, env = "PADDOCK_MAX_TURNS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_turns: u32,

    /// How long a model call may go without a byte from the endpoint (its
    /// answer's start, or the next piece of a streaming answer), in seconds.
    #[arg(long, env = "PADDOCK_MODEL_TIMEOUT_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub model_timeout_secs: u64,

    /// Limit of one tool call (e.g. a bash command), in seconds.
    #[arg(long, env = "PADDOCK_TOOL_TIMEOUT_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub tool_timeout_secs: u64,

    /// How long a client may send nothing of a request's body, or take
    /// nothing of a workspace archive, before Paddock gives the request up,
    /// in seconds: what it held (an upload's or a download's slot) is free
    /// again. The credential proxy, which a sandbox reaches over a local
    /// socket, gives a request's whole body twice this long.
    #[arg(long, env = "PADDOCK_CLIENT_STALL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub client_stall_secs: u64,

    /// How long a permission request waits before it is denied, in seconds.
    #[arg(long, env = "PADDOCK_PERMISSION_TIMEOUT_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub permission_timeout_secs: u64,

    /// The Claude Code CLI (a native Linux binary) that claude-code sessions
    /// run, mounted read-only into their sandboxes [default: where
    /// scripts/setup installs the pinned version].
    #[arg(long, env = "PADDOCK_CLAUDE_CODE_BIN")]
    pub claude_code_bin: Option<PathBuf>,

    /// The sandbox agent (a static binary, built by
    /// scripts/build-sandbox-agent) mounted read-only into Docker sandboxes,
    /// through which their commands run [default: where scripts/setup
    /// installs it]. Where it is missing, commands go through `docker exec`;
    /// one named here must be a file.
    #[arg(long, env = "PADDOCK_SANDBOX_AGENT_BIN", value_parser = existing_file)]
    pub sandbox_agent_bin: Option<PathBuf>,

    /// Folder holding each claude-code session's home (the CLI's transcripts,
    /// for --resume) and the socket of its LLM proxy.
    #[arg(
        long,
        env = "PADDOCK_CLAUDE_CODE_ROOT",
        default_value = "data/claude-code"
    )]
    pub claude_code_root: PathBuf,

    /// Longest one claude-code prompt may run, in seconds; its proxy token
    /// expires then too.
    #[arg(long, env = "PADDOCK_CLAUDE_CODE_RUN_SECS", default_value_t = 4 * 3600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub claude_code_run_secs: u64,

    /// The binary that makes a delivery's prompt in a process of its own
    /// ([`crate::template_renderers`]): this one, unless another
    /// is named (tests whose server runs in their own process name the
    /// built `paddock`).
    #[arg(long, env = "PADDOCK_TEMPLATE_RENDERER", hide = true)]
    pub template_renderer: Option<PathBuf>,

    /// Folder of the server's own repository of each session with a git
    /// source (never mounted into a sandbox).
    #[arg(long, env = "PADDOCK_GIT_ROOT", default_value = "data/git")]
    pub git_root: PathBuf,

    /// Largest repository (or folder) a workspace is made from, in MiB.
    #[arg(long, env = "PADDOCK_SOURCE_MAX_MB", default_value_t = 2048,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub source_max_mb: u64,

    /// Longest a clone, a copy or a push may take, in seconds.
    #[arg(long, env = "PADDOCK_GIT_TIMEOUT_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub git_timeout_secs: u64,

    /// Let notifications go to loopback and private addresses (a service
    /// on this machine or its network) while sign-in is on; with sign-in
    /// off they may anyway [default: only public addresses].
    #[arg(long, env = "PADDOCK_NOTIFY_PRIVATE_NETWORKS")]
    pub notify_private_networks: bool,

    /// Deliveries a trigger accepts per minute; past it, 429 with
    /// `Retry-After`.
    #[arg(long, env = "PADDOCK_TRIGGER_DELIVERIES_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub trigger_deliveries_per_minute: u32,

    /// How long a terminal may stay open with nothing typed into it and
    /// nothing shown, in seconds; then it is closed.
    #[arg(long, env = "PADDOCK_TERMINAL_IDLE_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(2..=604_800))]
    pub terminal_idle_secs: u64,

    /// How long a sandbox may go unused (no run, no open terminal, nothing
    /// new in its session) before it is stopped, in seconds; its
    /// workspace stays, and the next prompt or terminal starts it again.
    /// 0: never.
    #[arg(long, env = "PADDOCK_SANDBOX_IDLE_SECS", default_value_t = 3600, value_parser = sandbox_idle_secs)]
    pub sandbox_idle_secs: u64,

    /// Sandboxes one person's sessions may have running at once (with
    /// sign-in on); a start past it stops their unused ones first, the
    /// longest unused first, and is refused when every one is in use.
    #[arg(long, env = "PADDOCK_SANDBOXES_PER_PERSON", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sandboxes_per_person: u32,

    /// Live streams one person may hold open at once on this process: a
    /// transcript's (each one a dashboard connection follows counts) or
    /// the sessions list's. Past it, another is refused (429).
    #[arg(long, env = "PADDOCK_STREAMS_PER_PERSON", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub streams_per_person: u32,

    /// This process's name among the replicas sharing a PostgreSQL
    /// database, stable across its restarts (a restarted replica takes its
    /// sessions back at once) [default: the host name and the port].
    #[arg(long, env = "PADDOCK_REPLICA")]
    pub replica: Option<String>,

    /// How long a replica's hold on a session outlives its last heartbeat,
    /// in seconds: after a replica dies, another takes its sessions over
    /// within about this long.
    #[arg(long, env = "PADDOCK_LEASE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_secs: u64,
}

/// The folder a file is in, as named: a file named without one is in the
/// current folder.
fn folder_of(parent: &Path) -> PathBuf {
    if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent.to_path_buf()
    }
}

/// The Claude Code CLI version scripts/setup installs.
pub const CLAUDE_CODE_VERSION: &str = include_str!("../claude-code/VERSION").trim_ascii();

/// The project's agent image, at the version its recipe declares.
pub const DEFAULT_IMAGE: &str = concat!("paddock-agent:", include_str!("../images/agent/VERSION"));

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthSetting {
    On,
    Off,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxChoice {
    Docker,
    Local,
}

impl Config {
    /// The Claude Code CLI to run: the configured one, else the pinned
    /// version in scripts/setup's cache (`$XDG_CACHE_HOME` or `~/.cache`).
    pub fn claude_code_bin(&self) -> PathBuf {
        self.claude_code_bin.clone().unwrap_or_else(|| {
            cache_dir()
                .join("paddock/claude-code")
                .join(CLAUDE_CODE_VERSION)
                .join("node_modules/@anthropic-ai/claude-code/bin/claude.exe")
        })
    }

    /// The sandbox agent: the configured one, else where scripts/setup
    /// installs it ([`default_sandbox_agent_bin`]); it may not be there.
    pub fn sandbox_agent_bin(&self) -> PathBuf {
        self.sandbox_agent_bin
            .clone()
            .unwrap_or_else(default_sandbox_agent_bin)
    }

    /// Whether this server was told to use Docker: `PADDOCK_SANDBOX=docker`,
    /// or a Docker setting of any kind (`DOCKER_HOST`,
    /// `PADDOCK_DOCKER_RUNTIME`, `PADDOCK_DOCKER_REMOTE`), which a fall back
    /// to local sandboxes would quietly ignore.
    pub fn docker_required(&self) -> bool {
        self.sandbox == Some(SandboxChoice::Docker)
            || std::env::var_os("DOCKER_HOST").is_some()
            || self.docker_runtime.is_some()
            || self.docker_remote.is_some()
    }

    /// Refuses a sandbox larger than this server allows
    /// (`PADDOCK_SANDBOX_MAX_*`), which the defaults are within.
    pub fn within_ceilings(&self, own: &SandboxLimits) -> Result<(), AppError> {
        let over = |what: String, setting: &str| {
            Err(AppError::Invalid(format!(
                "A sandbox on this server has at most {what} ({setting})."
            )))
        };
        if own
            .memory_mb
            .is_some_and(|mb| mb > self.sandbox_max_memory_mb)
        {
            return over(
                format!("{} MiB of memory", self.sandbox_max_memory_mb),
                "PADDOCK_SANDBOX_MAX_MEMORY_MB",
            );
        }
        if own.cpus.is_some_and(|cpus| cpus > self.sandbox_max_cpus) {
            return over(
                format!("{} CPUs", self.sandbox_max_cpus),
                "PADDOCK_SANDBOX_MAX_CPUS",
            );
        }
        if own.pids.is_some_and(|pids| pids > self.sandbox_max_pids) {
            return over(
                format!("{} processes", self.sandbox_max_pids),
                "PADDOCK_SANDBOX_MAX_PIDS",
            );
        }
        if own
            .disk_mb
            .is_some_and(|mb| u64::try_from(mb).unwrap_or(u64::MAX) > self.sandbox_max_disk_mb)
        {
            return over(
                format!("{} MiB of disk", self.sandbox_max_disk_mb),
                "PADDOCK_SANDBOX_MAX_DISK_MB",
            );
        }
        Ok(())
    }

    /// Refuses defaults past the ceilings: every session would be.
    pub fn check_ceilings(&self) -> anyhow::Result<()> {
        let defaults = SandboxLimits {
            memory_mb: Some(self.sandbox_memory_mb),
            cpus: Some(self.sandbox_cpus),
            pids: Some(self.sandbox_pids),
            disk_mb: i64::try_from(self.sandbox_disk_mb)
                .ok()
                .filter(|&mb| mb > 0),
            ..SandboxLimits::default()
        };
        self.within_ceilings(&defaults)
            .map_err(|e| anyhow::anyhow!("the default sandbox limits: {e}"))
    }

    /// A session's sandbox limits: its own where it set them, else ours.
    pub fn limits_for(&self, own: SandboxLimits) -> Limits {
        Limits {
            memory_mb: own.memory_mb.unwrap_or(self.sandbox_memory_mb),
            cpus: own.cpus.unwrap_or(self.sandbox_cpus),
            pids: own.pids.unwrap_or(self.sandbox_pids),
            disk_mb: match own.disk_mb {
                Some(mb) => u64::try_from(mb).ok(),
                None => Some(self.sandbox_disk_mb).filter(|&mb| mb > 0),
            },
        }
    }

    /// Whether callers must sign in; refuses sign-in off on an address
    /// other machines can reach.
    pub fn sign_in_required(&self) -> anyhow::Result<bool> {
        let addr = self.listen_addr();
        // A proxy on this machine would make a loopback listener public: a
        // public URL or an allowed host says one is there.
        let public_name = self
            .allowed_hosts
            .iter()
            .map(String::as_str)
            .chain(self.public_url.as_ref().map(|o| o.host()))
            .find(|host| !is_loopback_name(host));
        match (self.auth, public_name) {
            (AuthSetting::On, _) => Ok(true),
            (AuthSetting::Off, Some(host)) => anyhow::bail!(
                "PADDOCK_AUTH=off is allowed only when Paddock is reached on loopback, and it \
                 is set up to be reached as {host:?} (PADDOCK_PUBLIC_URL or \
                 PADDOCK_ALLOWED_HOSTS): everyone who opens it would be its admin. Keep \
                 sign-in on."
            ),
            (AuthSetting::Off, None) if addr.ip().is_loopback() => Ok(false),
            (AuthSetting::Off, None) => anyhow::bail!(
                "PADDOCK_AUTH=off is allowed only on a loopback address, and Paddock would \
                 listen on {addr}: anyone who reaches it could run code in its sandboxes. Keep \
                 sign-in on, or listen on 127.0.0.1."
            ),
        }
    }

    /// The SQLite database's file, when the database is one.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        self.database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))
            .map(|rest| PathBuf::from(rest.split('?').next().unwrap_or(rest)))
    }

    /// Which host folders sessions may mount: the allowlist, less what
    /// overlaps Paddock's own data.
    pub fn mount_policy(&self) -> MountPolicy {
        MountPolicy::new(&self.mount_allow, &self.own_data())
    }

    /// The folders holding Paddock's own data: the database's, the master
    /// key's, the workspaces and the claude-code homes (never mountable).
    fn own_data(&self) -> Vec<PathBuf> {
        let key = self.master_key_file.parent().map(folder_of);
        let mut own = self.data_folders();
        own.splice(1..1, key);
        own
    }

    /// Paddock's own data, as local sandboxes hide it: its folders but the
    /// master key's (which may be a folder such as `/etc`), and that key's
    /// file.
    pub fn own_data_to_hide(&self) -> crate::sandbox::OwnData {
        crate::sandbox::OwnData {
            folders: self.data_folders(),
            files: vec![self.master_key_file.clone()],
        }
    }

    /// The database's folder, the workspaces', the claude-code homes' and
    /// the private clones'.
    fn data_folders(&self) -> Vec<PathBuf> {
        let database = self
            .sqlite_file()
            .and_then(|file| file.parent().map(folder_of));
        database
            .into_iter()
            .chain([
                self.workspace_root.clone(),
                self.claude_code_root.clone(),
                self.git_root.clone(),
            ])
            .collect()
    }

    /// Whether the public URL is https, so cookies must be `Secure`.
    pub fn https(&self) -> bool {
        self.public_url.as_ref().is_some_and(|o| o.is_https())
    }

    /// This process's name among replicas: the configured one; else, on
    /// SQLite, which one process serves alone, `local`; else the host name
    /// and the port it listens on (unique on one host, and the same after a
    /// restart; with port 0 or no host name, a name drawn at random).
    pub fn replica_name(&self) -> String {
        if let Some(name) = &self.replica {
            return name.clone();
        }
        if self.database_url.starts_with("sqlite:") {
            return "local".to_owned();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        match (host.trim(), self.listen_addr().port()) {
            ("", _) | (_, 0) => format!("{}:{}", host.trim(), uuid::Uuid::now_v7().simple()),
            (host, port) => format!("{host}:{port}"),
        }
    }

    /// How long a client may leave a request's body or an archive untouched.
    pub fn client_stall(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.client_stall_secs)
    }

    /// How long a sandbox may go unused before it is stopped; `None`:
    /// never.
    pub fn sandbox_idle(&self) -> Option<std::time::Duration> {
        (self.sandbox_idle_secs > 0).then(|| std::time::Duration::from_secs(self.sandbox_idle_secs))
    }

    /// How many live streams one person may hold open at once.
    pub fn streams_per_person(&self) -> usize {
        usize::try_from(self.streams_per_person).unwrap_or(usize::MAX)
    }

    /// How many sandboxes one person's sessions may have running.
    pub fn sandboxes_per_person(&self) -> usize {
        usize::try_from(self.sandboxes_per_person).unwrap_or(usize::MAX)
    }

    /// The binary that renders trigger templates: named, else this one.
    pub fn template_renderer(&self) -> PathBuf {
        self.template_renderer
            .clone()
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| PathBuf::from("paddock"))
    }

    /// How long a session's lease lasts without a heartbeat.
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_secs)
    }

    /// The URL to print in links (the setup link): the public URL, else the
    /// address Paddock listens on (`bound`: port 0 is a real port by then).
    pub fn base_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(origin) => origin.to_string(),
            None => {
                let addr = bound;
                let host = if addr.ip().is_unspecified() {
                    std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    addr.ip()
                };
                format!("http://{}", SocketAddr::new(host, addr.port()))
            }
        }
    }

    /// Loopback unless told otherwise: an explicit address wins; a bare PORT
    /// means a platform routes traffic to us, so all interfaces.
    pub fn listen_addr(&self) -> SocketAddr {
        match (self.addr, self.port) {
            (Some(addr), _) => addr,
            (None, Some(port)) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            (None, None) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3000),
        }
    }
}

/// Whether a host name can only mean this machine.
fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Where scripts/setup keeps what it installs outside the project
/// (`$XDG_CACHE_HOME`, else `~/.cache`).
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

/// Where scripts/build-sandbox-agent installs the sandbox agent.
pub fn default_sandbox_agent_bin() -> PathBuf {
    cache_dir().join("paddock/sandbox-agent/paddock-sandbox-agent")
}

/// A trusted proxy as configured: a network (`10.0.0.0/8`) or one address.
/// Not every address (`0.0.0.0/0`, `::/0`): each client could then say in
/// `X-Forwarded-For` which address it counts as.
fn trusted_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    let network = text
        .parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a network (10.0.0.0/8)"))?;
    if network.prefix_len() == 0 {
        return Err(format!(
            "{text:?} trusts every address, so every client would choose its own address: name \
             the proxies' addresses or network"
        ));
    }
    Ok(network)
}

/// A limit within the range a session may ask for.
fn within<T>(value: &str, range: std::ops::RangeInclusive<T>, unit: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match value.trim().parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!("{} to {}{unit}", range.start(), range.end())),
    }
}

fn sandbox_idle_secs(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Ok(0),
        _ => within(value, 2..=2_592_000, " s, or 0 (never)"),
    }
}

/// `ANTHROPIC_BASE_URL`: an http:// or https:// URL with a host (an empty
/// or schemeless one would fail every call, after a start that said
/// nothing).
fn model_endpoint(value: &str) -> Result<String, String> {
    let given = value.trim();
    let url = reqwest::Url::parse(given).ok();
    match url {
        Some(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(given.to_owned())
        }
        _ => Err(format!(
            "{value:?} is not an http:// or https:// URL with a host, such as {}",
            crate::llm::DEFAULT_BASE_URL
        )),
    }
}

/// A file named in the settings, which must be there (else a typo would go
/// unnoticed, and the default taken).
fn existing_file(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{value:?} is not a file"))
    }
}

fn memory_mb(value: &str) -> Result<i64, String> {
    within(value, SandboxLimits::MEMORY_MB, " MiB")
}

fn cpus(value: &str) -> Result<f64, String> {
    within(value, SandboxLimits::CPUS, " CPUs")
}

fn pids(value: &str) -> Result<i64, String> {
    within(value, SandboxLimits::PIDS, " processes")
}

fn max_disk_mb(value: &str) -> Result<u64, String> {
    let range = SandboxLimits::DISK_MB;
    within(value, *range.start() as u64..=*range.end() as u64, " MiB")
}

/// `PADDOCK_SANDBOX_DISK_MB`: 0 (no limit), or a size a session could set.
fn disk_mb(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Ok(0),
        _ => max_disk_mb(value).map_err(|range| format!("0 (no limit) or {range}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(addr: Option<&str>, port: Option<u16>) -> Config {
        Config {
            addr: addr.map(|a| a.parse().unwrap()),
            port,
            ..Config::try_parse_from(["paddock"]).unwrap()
        }
    }

    #[test]
    fn the_model_endpoint_is_an_http_url_with_a_host() {
        for good in [
            crate::llm::DEFAULT_BASE_URL,
            "http://127.0.0.1:4000",
            " https://gw.example/v1 ",
        ] {
            assert_eq!(model_endpoint(good).as_deref(), Ok(good.trim()), "{good}");
        }
        for bad in [
            "",
            " ",
            "api.anthropic.com",
            "ftp://h",
            "http://",
            "unix:/run/x.sock",
        ] {
            assert!(model_endpoint(bad).is_err(), "{bad:?}");
        }
        assert!(existing_file("/nowhere/sandbox-agent").is_err());
        assert!(existing_file("/bin/sh").is_ok());
    }

    #[test]
    fn binds_loopback_by_default() {
        assert_eq!(
            config(None, None).listen_addr(),
            "127.0.0.1:3000".parse().unwrap()
        );
    }

    #[test]
    fn port_alone_binds_all_interfaces_and_addr_wins() {
        assert_eq!(
            config(None, Some(8080)).listen_addr(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            config(Some("127.0.0.1:9000"), Some(8080)).listen_addr(),
            "127.0.0.1:9000".parse().unwrap()
        );
    }

    #[test]
    fn sign_in_off_only_on_loopback() {
        let off = |args: &[&str]| {
            let mut argv = vec!["paddock", "--auth=off"];
            argv.extend_from_slice(args);
            Config::try_parse_from(argv).unwrap().sign_in_required()
        };
        assert!(!off(&[]).unwrap());
        assert!(!off(&["--addr=[::1]:3000"]).unwrap());
        assert!(off(&["--addr=0.0.0.0:3000"]).is_err());
        assert!(off(&["--port=8080"]).is_err());
        assert!(off(&["--addr=192.168.1.5:3000"]).is_err());
        assert!(config(None, Some(8080)).sign_in_required().unwrap());
        // Behind a proxy on this machine, loopback is not private.
        assert!(off(&["--public-url=https://paddock.example.com"]).is_err());
        assert!(off(&["--allowed-hosts=paddock.internal"]).is_err());
        assert!(!off(&["--public-url=http://localhost:3000"]).unwrap());
        assert!(!off(&["--allowed-hosts=127.0.0.1,[::1]"]).unwrap());
    }

    #[test]
    fn own_data_names_every_folder_paddock_keeps_data_in() {
        let c = Config::try_parse_from([
            "paddock",
            "--database-url=sqlite://db/paddock.db?mode=rwc",
            "--master-key-file=master.key",
            "--workspace-root=/srv/ws",
            "--claude-code-root=/srv/cc",
            "--git-root=/srv/git",
        ])
        .unwrap();
        assert_eq!(
            c.own_data(),
            [
                PathBuf::from("db"),
                PathBuf::from("."),
                PathBuf::from("/srv/ws"),
                PathBuf::from("/srv/cc"),
                PathBuf::from("/srv/git")
            ]
        );
    }

    #[test]
    fn default_image_is_the_agent_image() {
        assert_eq!(DEFAULT_IMAGE, "paddock-agent:1");
    }

    #[test]
    fn session_limits_override_server_defaults() {
        let c = config(None, None);
        let l = c.limits_for(SandboxLimits {
            memory_mb: Some(256),
            ..Default::default()
        });
        assert_eq!(
            l,
            Limits {
                memory_mb: 256,
                cpus: c.sandbox_cpus,
                pids: c.sandbox_pids,
                disk_mb: Some(10 * 1024),
            }
        );
        let own_disk = c.limits_for(SandboxLimits {
            disk_mb: Some(64),
            ..Default::default()
        });
        assert_eq!(own_disk.disk_mb, Some(64));
        let none = Config {
            sandbox_disk_mb: 0,
            ..config(None, None)
        };
        assert_eq!(none.limits_for(SandboxLimits::default()).disk_mb, None);
    }

    #[test]
    fn the_default_disk_limit_is_checked() {
        let parse = |v: &str| Config::try_parse_from(["paddock", "--sandbox-disk-mb", v]);
        assert_eq!(parse("0").unwrap().sandbox_disk_mb, 0);
        assert_eq!(parse("2048").unwrap().sandbox_disk_mb, 2048);
        for bad in ["8", "99999999999999999", "-1", "x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sessions_and_the_defaults_stay_within_the_ceilings() {
        let c = Config::try_parse_from(["paddock"]).unwrap();
        c.check_ceilings().unwrap();
        let asked = |limits: SandboxLimits| c.within_ceilings(&limits);
        assert!(asked(SandboxLimits::default()).is_ok());
        let most = SandboxLimits {
            memory_mb: Some(8192),
            cpus: Some(4.0),
            pids: Some(4096),
            disk_mb: Some(51_200),
            ..SandboxLimits::default()
        };
        assert!(asked(most).is_ok());
        for over in [
            SandboxLimits {
                memory_mb: Some(8193),
                ..most
            },
            SandboxLimits {
                cpus: Some(4.5),
                ..most
            },
            SandboxLimits {
                pids: Some(4097),
                ..most
            },
            SandboxLimits {
                disk_mb: Some(51_201),
                ..most
            },
        ] {
            assert!(asked(over).is_err(), "{over:?}");
        }
        let roomy = Config::try_parse_from(["paddock", "--sandbox-max-cpus=32"]).unwrap();
        assert!(roomy
            .within_ceilings(&SandboxLimits {
                cpus: Some(32.0),
                ..most
            })
            .is_ok());
        let tight = Config::try_parse_from(["paddock", "--sandbox-max-memory-mb=512"]).unwrap();
        assert!(
            tight.check_ceilings().is_err(),
            "the default 1024 MiB is past it"
        );
    }

    #[test]
    fn the_default_limits_are_within_what_a_session_may_ask() {
        let parse = |flag: &str, v: &str| Config::try_parse_from(["paddock", flag, v]);
        let c = parse("--sandbox-memory-mb", "2048").unwrap();
        assert_eq!(c.sandbox_memory_mb, 2048);
        assert_eq!(parse("--sandbox-cpus", "0.5").unwrap().sandbox_cpus, 0.5);
        assert_eq!(parse("--sandbox-pids", "512").unwrap().sandbox_pids, 512);
        for (flag, bad) in [
            ("--sandbox-memory-mb", "0"),
            ("--sandbox-memory-mb", "4"),
            ("--sandbox-memory-mb", "9000000000000"),
            ("--sandbox-cpus", "0"),
            ("--sandbox-cpus", "-1"),
            ("--sandbox-cpus", "nan"),
            ("--sandbox-pids", "0"),
            ("--sandbox-pids", "-1"),
        ] {
            assert!(parse(flag, bad).is_err(), "{flag} {bad}");
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let parse = |v: &str| Config::try_parse_from(["paddock", "--trusted-proxies", v]);
        let c = parse("127.0.0.1, 10.0.0.0/8,::1").unwrap();
        assert_eq!(c.trusted_proxies.len(), 3);
        assert!(c.trusted_proxies[0].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        for bad in ["proxy.example.com", "10.0.0.0/33", "", "0.0.0.0/0", "::/0"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_and_counts_that_would_break_every_run_are_refused() {
        let parse = |flag: &str, v: &str| Config::try_parse_from(["paddock", flag, v]);
        for flag in [
            "--max-turns",
            "--model-timeout-secs",
            "--tool-timeout-secs",
            "--permission-timeout-secs",
            "--claude-code-run-secs",
            "--source-max-mb",
            "--git-timeout-secs",
        ] {
            assert!(parse(flag, "5").is_ok(), "{flag} 5");
            for bad in ["0", "-1", "18446744073709551615"] {
                assert!(parse(flag, bad).is_err(), "{flag} {bad}");
            }
        }
    }

    #[test]
    fn flags_parse() {
        let c = Config::try_parse_from([
            "paddock",
            "--addr",
            "127.0.0.1:1",
            "--database-url",
            "sqlite://x.db",
        ])
        .unwrap();
        assert_eq!(c.listen_addr(), "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.database_url, "sqlite://x.db");
    }
}
