//! Types shared by server and browser: the one definition of a session and
//! of the events in its transcript.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

use crate::skills::{Skill, SkillError};
use crate::text::is_hidden_format;
use crate::workspace_source::WorkspaceSource;

pub type SessionId = Uuid;
pub type UserId = Uuid;
/// An agent template's id (see the `agents` module).
pub type TemplateId = Uuid;
/// A trigger's id (see the `triggers` module).
pub type TriggerId = Uuid;

/// Which trigger of its template started a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriggerRef {
    pub id: TriggerId,
    pub name: String,
}

/// Which agent template, and which version of it, a session was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub id: TemplateId,
    pub name: String,
    pub version: i64,
}

/// The most sessions a list holds: the newest by activity.
pub const SESSIONS_LISTED_MAX: usize = 1000;
/// Longest session name accepted, in characters.
pub const NAME_MAX_CHARS: usize = 200;
/// Longest model identifier accepted, in characters.
pub const MODEL_MAX_CHARS: usize = 100;
/// Longest system prompt accepted, in bytes.
pub const SYSTEM_PROMPT_MAX_BYTES: usize = 64 * 1024;
/// The model a new session gets when none is chosen.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// Models offered in the New-session form; any other identifier is accepted
/// too, since gateways and newer releases add names faster than we ship.
pub const SUGGESTED_MODELS: &[&str] = &["claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5"];

/// Declares a string-backed enum whose wire, database and display forms are
/// one and the same string.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident {
        $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = AppError;
            fn from_str(s: &str) -> Result<Self, AppError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(AppError::Invalid(format!(
                        concat!("unknown ", stringify!($name), " {:?}; expected one of: {}"),
                        other,
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Where a session is in its life.
    SessionStatus {
        Idle => "idle",
        Starting => "starting",
        Running => "running",
        AwaitingPermission => "awaiting_permission",
        Error => "error",
        Stopped => "stopped",
        Interrupted => "interrupted",
    }
}

impl SessionStatus {
    /// Whether a run is under way (from the `running` status that starts
    /// it to the status it ends with): a prompt sent now is queued, and is
    /// the next run's.
    pub fn is_busy(self) -> bool {
        matches!(
            self,
            SessionStatus::Starting | SessionStatus::Running | SessionStatus::AwaitingPermission
        )
    }
}

/// Follows a session's statuses, in order, to tell where its runs start: a
/// run lasts from a `running` status outside a run to the status it ends
/// with, and a `running` after a permission decision goes on with the run
/// it is in. The engines, the runner and the transcript all place a run's
/// prompts by it.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunFollower {
    in_run: bool,
}

impl RunFollower {
    /// Takes the next status; whether it starts a run.
    pub fn starts(&mut self, status: SessionStatus) -> bool {
        let starts = status == SessionStatus::Running && !self.in_run;
        self.in_run = status.is_busy();
        starts
    }

    /// Whether the statuses taken so far leave a run under way.
    pub fn in_run(self) -> bool {
        self.in_run
    }
}

string_enum! {
    /// Which agent runs the session: Paddock's own loop or the Claude Code CLI.
    Engine {
        Native => "native",
        ClaudeCode => "claude-code",
    }
}

string_enum! {
    /// What the agent may do without asking.
    PermissionMode {
        Ask => "ask",
        AcceptEdits => "accept-edits",
        Auto => "auto",
        ReadOnly => "read-only",
    }
}

impl PermissionMode {
    /// How much a session in this mode holds back, least first.
    fn restraint(self) -> u8 {
        match self {
            PermissionMode::Auto => 0,
            PermissionMode::AcceptEdits => 1,
            PermissionMode::Ask => 2,
            PermissionMode::ReadOnly => 3,
        }
    }

    /// Whether a session in this mode holds back at least as much as one
    /// in `required` (read-only keeps to ask, ask not to read-only).
    pub fn keeps_to(self, required: PermissionMode) -> bool {
        self.restraint() >= required.restraint()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub name: String,
    pub engine: Engine,
    pub model: String,
    pub system_prompt: String,
    pub permission_mode: PermissionMode,
    pub status: SessionStatus,
    pub cost_usd: f64,
    pub turns: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Sequence number of the newest event in the transcript (0: none yet).
    pub last_seq: i64,
    /// Sandbox limits chosen for this session; `None` means the server's.
    pub limits: SandboxLimits,
    /// Spending limit in USD; the engine stops calling the model once the
    /// session's cost reaches it. `None`: no limit.
    pub budget_usd: Option<f64>,
    /// Host folders its sandbox reads under `/mnt`.
    #[serde(default)]
    pub mounts: Vec<ReadOnlyMount>,
    /// Environment variables of the agent's commands.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Names of the owner's saved secrets, each set under its name in the
    /// environment of the agent's commands when a run starts, and masked
    /// in the transcript.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Model turns one prompt may take; `None`: the server's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<i64>,
    /// Tools that run without asking first (in a mode that asks).
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// The image of its Docker sandbox; `None`: the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// What its workspace starts from.
    #[serde(default, skip_serializing_if = "WorkspaceSource::is_empty")]
    pub source: WorkspaceSource,
    /// The names of the skills written into its workspace.
    #[serde(default)]
    pub skills: Vec<String>,
    /// MCP servers its agent's runs start in the sandbox.
    #[serde(default)]
    pub mcp_servers: Vec<McpServer>,
    /// The hosts its sandbox may reach ([`crate::egress`]); empty: none.
    #[serde(default)]
    pub egress: Vec<String>,
    /// Set once its workspace was prepared from the source, the
    /// instructions and the skills (before its first prompt runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PreparedWorkspace>,
    /// The agent template (and version) it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// The template's trigger whose delivery started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerRef>,
    /// Who created it; `None` when the local operator did, with sign-in
    /// off.
    #[serde(default)]
    pub owner: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What preparing a session's workspace left: when, and for a git
/// source, the commit it started from and the session's working branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedWorkspace {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// Resource limits a session may set for its sandbox; each `None` falls back
/// to the server's default. Unknown fields are refused (see [`NewSession`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// Seconds one command (a tool call) may run before its process tree
    /// is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout_secs: Option<i64>,
    /// MiB the workspace may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<i64>,
}

impl SandboxLimits {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub const MEMORY_MB: std::ops::RangeInclusive<i64> = 64..=65_536;
    pub const CPUS: std::ops::RangeInclusive<f64> = 0.1..=64.0;
    pub const PIDS: std::ops::RangeInclusive<i64> = 16..=65_536;
    pub const COMMAND_TIMEOUT_SECS: std::ops::RangeInclusive<i64> = 1..=86_400;
    pub const DISK_MB: std::ops::RangeInclusive<i64> = 16..=1_048_576;

    pub fn validate(self) -> Result<Self, AppError> {
        fn check<T: PartialOrd + fmt::Display>(
            what: &str,
            value: Option<T>,
            range: &std::ops::RangeInclusive<T>,
        ) -> Result<(), AppError> {
            match value {
                Some(v) if !range.contains(&v) => Err(AppError::Invalid(format!(
                    "The sandbox {what} must be between {} and {}.",
                    range.start(),
                    range.end()
                ))),
                _ => Ok(()),
            }
        }
        check("memory (MiB)", self.memory_mb, &Self::MEMORY_MB)?;
        check("CPU count", self.cpus, &Self::CPUS)?;
        check("process limit", self.pids, &Self::PIDS)?;
        check(
            "command time limit (seconds)",
            self.command_timeout_secs,
            &Self::COMMAND_TIMEOUT_SECS,
        )?;
        check("disk limit (MiB)", self.disk_mb, &Self::DISK_MB)?;
        Ok(self)
    }
}

/// A host folder a session's sandbox reads at `/mnt/<name>` and can never
/// change. Only folders under the server's allowlist (`PADDOCK_MOUNT_ALLOW`)
/// may be mounted, which the server checks (this crate knows no host
/// paths); it stores the folder's resolved path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadOnlyMount {
    /// An absolute path on the server's host.
    pub host: String,
    /// Its folder under `/mnt`; by default the host folder's own name.
    #[serde(default)]
    pub name: String,
}

/// An environment variable set for every command the agent runs. Plain
/// variables are stored and shown as given: they are not for credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// `NAME<<END`: the start of a value of several lines, its name and end
/// word.
fn heredoc_start(line: &str) -> Option<(&str, &str)> {
    let (name, end) = line.trim_end().split_once("<<")?;
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (word(name.trim()) && word(end)).then_some((name, end))
}

/// Variables a session may set, the bytes of one value, and names that
/// are the sandbox's or an engine's own.
pub const ENV_MAX: usize = 32;
pub const ENV_VALUE_MAX_BYTES: usize = 32 * 1024;
const ENV_NAME_MAX_CHARS: usize = 64;
/// Besides the sandbox's own: what changes how the shell, the loader or
/// the Claude Code CLI (Node.js) start, or where the CLI sends requests.
const ENV_RESERVED: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "TERM",
    "PWD",
    "SHELL",
    "USER",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "IFS",
    "PS4",
    "NODE_OPTIONS",
    "NODE_PATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "DEBUG",
];
const ENV_RESERVED_PREFIXES: &[&str] = &["ANTHROPIC_", "CLAUDE_", "PADDOCK_", "LD_", "BASH_FUNC"];

/// Refuses what cannot be an environment variable of the agent's
/// commands: not shaped like one, or one the sandbox or an engine sets.
pub fn check_variable_name(name: &str) -> Result<(), AppError> {
    let shaped = name.chars().count() <= ENV_NAME_MAX_CHARS
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shaped {
        return Err(AppError::Invalid(format!(
            "{name:?} is not a variable name: letters, digits and _, not starting with a \
             digit, at most {ENV_NAME_MAX_CHARS}."
        )));
    }
    let upper = name.to_ascii_uppercase();
    if ENV_RESERVED.contains(&upper.as_str())
        || ENV_RESERVED_PREFIXES.iter().any(|p| upper.starts_with(p))
    {
        return Err(AppError::Invalid(format!(
            "{name} is the sandbox's own (so are PATH, HOME, BASH_ENV, NODE_OPTIONS, the proxy \
             variables and every LD_, ANTHROPIC_, CLAUDE_ and PADDOCK_ name): choose another."
        )));
    }
    Ok(())
}

impl EnvVar {
    /// The variables a form lists, one `NAME=value` a line, and a value of
    /// several lines between `NAME<<END` and a line `END` (the way GitHub
    /// Actions writes them; any word for `END`). A line without `=` is a
    /// name with an empty value, which validation then names.
    pub fn from_lines(text: &str) -> Vec<Self> {
        let mut vars = Vec::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            // One past the most is enough to refuse them: each start looks
            // through the rest for its end, so reading on would take time
            // of the square of the lines.
            if vars.len() > ENV_MAX {
                break;
            }
            if line.trim().is_empty() {
                continue;
            }
            // Its end: a line of only the end word, spaces after it aside.
            // Without one, the line is no start (its name then refused).
            let block = heredoc_start(line).and_then(|(name, end)| {
                let len = lines.clone().position(|l| l.trim_end() == end)?;
                Some((name, len))
            });
            let (name, value) = match block {
                Some((name, len)) => {
                    let value: Vec<&str> = lines.by_ref().take(len).collect();
                    lines.next();
                    (name, value.join("\n"))
                }
                None => {
                    let (name, value) = line.split_once('=').unwrap_or((line, ""));
                    (name, value.to_owned())
                }
            };
            vars.push(EnvVar {
                name: name.trim().to_owned(),
                value,
            });
        }
        vars
    }

    /// The variables as [`EnvVar::from_lines`] reads them back.
    pub fn to_lines(vars: &[Self]) -> String {
        vars.iter()
            .map(|v| {
                if !v.value.contains('\n') {
                    return format!("{}={}", v.name, v.value);
                }
                // An end word no line of the value is.
                let end = (0..)
                    .map(|n| {
                        if n == 0 {
                            "END".to_owned()
                        } else {
                            format!("END{n}")
                        }
                    })
                    .find(|end| !v.value.lines().any(|l| l == end))
                    .unwrap_or_default();
                format!("{}<<{end}\n{}\n{end}", v.name, v.value)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn validate(self) -> Result<Self, AppError> {
        let name = self.name;
        check_variable_name(&name)?;
        if self.value.len() > ENV_VALUE_MAX_BYTES || self.value.contains('\0') {
            return Err(AppError::Invalid(format!(
                "The value of {name} must be at most {} KiB, without NUL bytes.",
                ENV_VALUE_MAX_BYTES / 1024
            )));
        }
        Ok(EnvVar {
            name,
            value: self.value,
        })
    }
}

/// An MCP server (stdio) that runs inside the session's sandbox, started
/// for each run: its tools reach the model as `mcp__<name>__<tool>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// Letters, digits, `-` and `_`; part of its tools' names.
    pub name: String,
    /// The program, as the sandbox's PATH finds it (`mcp-server-time`).
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// MCP servers a session may run.
pub const MCP_SERVERS_MAX: usize = 8;
const MCP_NAME_MAX_CHARS: usize = 32;
const MCP_ARG_MAX_BYTES: usize = 4096;
const MCP_ARGS_MAX: usize = 64;
/// Bytes of one server's command, arguments and variables together: they
/// travel on a command line.
const MCP_SERVER_MAX_BYTES: usize = 64 * 1024;
/// Bytes of all a session's servers written as JSON: the claude-code engine
/// gives them to the CLI as one argument of a command line, which Linux
/// takes up to 128 KiB.
const MCP_SERVERS_MAX_BYTES: usize = 96 * 1024;

impl McpServer {
    /// How the settings form writes it: its name, command and arguments
    /// on one line, apart by spaces (an argument holding one reads back as
    /// two: the form keeps such a server as stored while its line stays).
    pub fn line(&self) -> String {
        std::iter::once(self.name.as_str())
            .chain(std::iter::once(self.command.as_str()))
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn validate(self) -> Result<Self, AppError> {
        let name = self.name.trim().to_owned();
        if name.is_empty()
            || name.chars().count() > MCP_NAME_MAX_CHARS
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || name.contains("__")
        {
            return Err(AppError::Invalid(format!(
                "{name:?} is not an MCP server's name: letters, digits, - and _ (no __), at \
                 most {MCP_NAME_MAX_CHARS}."
            )));
        }
        let command = self.command.trim().to_owned();
        let bad = |s: &str| s.is_empty() || s.len() > MCP_ARG_MAX_BYTES || s.contains('\0');
        if bad(&command)
            || self.args.len() > MCP_ARGS_MAX
            || self
                .args
                .iter()
                .any(|a| a.len() > MCP_ARG_MAX_BYTES || a.contains('\0'))
        {
            return Err(AppError::Invalid(format!(
                "The MCP server {name} needs a command, and at most {MCP_ARGS_MAX} arguments \
                 of text."
            )));
        }
        let env = self
            .env
            .into_iter()
            .map(EnvVar::validate)
            .collect::<Result<Vec<_>, _>>()?;
        let size = command.len()
            + self.args.iter().map(String::len).sum::<usize>()
            + env
                .iter()
                .map(|v| v.name.len() + v.value.len())
                .sum::<usize>();
        if size > MCP_SERVER_MAX_BYTES {
            return Err(AppError::Invalid(format!(
                "The MCP server {name}'s command, arguments and variables are at most {} KiB \
                 together.",
                MCP_SERVER_MAX_BYTES / 1024
            )));
        }
        Ok(Self {
            name,
            command,
            args: self.args,
            env,
        })
    }
}

/// The turn limits a session may set.
pub const MAX_TURNS: std::ops::RangeInclusive<i64> = 1..=1000;
/// Tools a session may allow without asking.
pub const ALLOWED_TOOLS_MAX: usize = 64;
const TOOL_RULE_MAX_CHARS: usize = 200;
const IMAGE_MAX_CHARS: usize = 255;

/// Checks a session's tools allowed without asking: tool names, or the
/// Claude Code CLI's rules (`Bash(npm test:*)`), one an entry; no commas,
/// which the CLI reads as separators.
fn check_allowed_tools(tools: Vec<String>) -> Result<Vec<String>, AppError> {
    if tools.len() > ALLOWED_TOOLS_MAX {
        return Err(AppError::Invalid(format!(
            "A session allows at most {ALLOWED_TOOLS_MAX} tools without asking."
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(tools.len());
    for tool in tools {
        let tool = tool.trim().to_owned();
        if tool.is_empty()
            || tool.chars().count() > TOOL_RULE_MAX_CHARS
            || tool.contains(',')
            || tool.chars().any(char::is_control)
        {
            return Err(AppError::Invalid(format!(
                "{tool:?} is not a tool to allow: a tool's name or a rule like Bash(npm test:*),                  at most {TOOL_RULE_MAX_CHARS} characters, without commas."
            )));
        }
        if !out.contains(&tool) {
            out.push(tool);
        }
    }
    Ok(out)
}

/// Checks a Docker image reference (`name[:tag][@digest]`) by its
/// characters; whether the image exists is the sandbox's to say.
fn check_image(image: String) -> Result<String, AppError> {
    let first_ok = image
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    // Each part of its path a name: not empty, and not `.` or `..`, which
    // the Docker API's client would take as a step in the request's path.
    let named_parts = image.split('/').all(|part| {
        let name = part.split([':', '@']).next().unwrap_or_default();
        !name.is_empty() && !name.starts_with('.')
    });
    if !first_ok
        || !named_parts
        || image.len() > IMAGE_MAX_CHARS
        || !image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'))
    {
        return Err(AppError::Invalid(format!(
            "{image:?} is not an image name: letters, digits and . _ - / : @, each part of its \
             path named (like registry.example.com/team/agent:1), at most {IMAGE_MAX_CHARS} \
             characters."
        )));
    }
    Ok(image)
}

/// Read-only mounts a session may have.
pub const MOUNTS_MAX: usize = 8;
const MOUNT_NAME_MAX_CHARS: usize = 64;
const MOUNT_HOST_MAX_BYTES: usize = 4096;

impl ReadOnlyMount {
    /// The mounts a form lists, one a line: `/host/folder`, or
    /// `name=/host/folder`.
    pub fn from_lines(text: &str) -> Vec<Self> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|line| match line.split_once('=') {
                Some((name, host)) if !name.contains('/') => ReadOnlyMount {
                    host: host.trim().to_owned(),
                    name: name.trim().to_owned(),
                },
                _ => ReadOnlyMount {
                    host: line.to_owned(),
                    name: String::new(),
                },
            })
            .collect()
    }

    /// Where the sandbox sees it.
    pub fn target(&self) -> String {
        format!("/mnt/{}", self.name)
    }

    /// Checks the shape (an absolute path, a plain name, the host folder's
    /// own name when none is given); whether it may be mounted is the
    /// server's to say.
    fn validate(self) -> Result<Self, AppError> {
        let host = self.host.trim().to_owned();
        let dotted = host.split('/').any(|part| part == "." || part == "..");
        if !host.starts_with('/')
            || host.len() > MOUNT_HOST_MAX_BYTES
            || host.contains('\0')
            || dotted
        {
            return Err(AppError::Invalid(format!(
                "{host:?} is not an absolute host path: a read-only mount names a folder on the \
                 server, such as /srv/data (without . or ..)."
            )));
        }
        let name = match self.name.trim() {
            "" => host
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default(),
            given => given,
        }
        .to_owned();
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.chars().count() > MOUNT_NAME_MAX_CHARS
            || !name.chars().all(plain)
        {
            return Err(AppError::Invalid(format!(
                "{name:?} cannot name a mount: use 1 to {MOUNT_NAME_MAX_CHARS} letters, digits \
                 and - _ . (it becomes /mnt/<name> in the sandbox)."
            )));
        }
        Ok(Self { host, name })
    }
}

/// What a client asks for when it creates a session. Optional fields take
/// their defaults; [`NewSession::validate`] is the only gate to the store.
/// Unknown fields are refused, so a misspelt option is an error rather than
/// silently ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The agent template it starts from: what this leaves unset comes from
    /// the template's current version ([`NewSession::over`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<PermissionMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    #[serde(default, skip_serializing_if = "SandboxLimits::is_default")]
    pub limits: SandboxLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<ReadOnlyMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Names of the creator's saved secrets the agent's commands get.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Project instructions (`CLAUDE.md`) written into the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<Skill>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<WorkspaceSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServer>,
    /// The hosts its sandbox may reach ([`crate::egress`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<String>,
}

/// A [`NewSession`] that passed validation, with every default filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSpec {
    pub name: String,
    pub model: String,
    pub system_prompt: String,
    pub permission_mode: PermissionMode,
    pub engine: Engine,
    pub limits: SandboxLimits,
    pub budget_usd: Option<f64>,
    pub mounts: Vec<ReadOnlyMount>,
    pub env: Vec<EnvVar>,
    pub secrets: Vec<String>,
    pub max_turns: Option<i64>,
    pub allowed_tools: Vec<String>,
    pub image: Option<String>,
    pub instructions: String,
    pub skills: Vec<Skill>,
    pub source: WorkspaceSource,
    pub mcp_servers: Vec<McpServer>,
    pub egress: Vec<String>,
    /// The template it was made from, filled in by the server once it
    /// resolved [`NewSession::template`].
    pub template: Option<TemplateRef>,
    /// The trigger that started it, filled in by the server.
    pub trigger: Option<TriggerRef>,
}

/// The largest budget a session may set, in USD.
pub const BUDGET_MAX_USD: f64 = 1_000_000.0;

/// Refuses a name (of a session or a template) that is empty, too long or
/// holds control characters or hidden ones ([`is_hidden_format`]); the
/// name without surrounding spaces.
pub fn check_name(what: &str, name: &str) -> Result<String, AppError> {
    check_name_within(what, name, NAME_MAX_CHARS)
}

/// [`check_name`] for a name of at most `max_chars` (a token's, a
/// trigger's, a person's).
pub fn check_name_within(what: &str, name: &str, max_chars: usize) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::Invalid(format!("Give the {what} a name.")));
    }
    if name.chars().count() > max_chars {
        return Err(AppError::Invalid(format!(
            "The name is too long: at most {max_chars} characters."
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::Invalid(
            "The name cannot contain control characters.".into(),
        ));
    }
    if name.chars().any(is_hidden_format) {
        return Err(AppError::Invalid(
            "The name cannot contain characters that are not shown (zero-width ones, line \
             separators) or that turn the text around it."
                .into(),
        ));
    }
    Ok(name.to_owned())
}

impl NewSession {
    /// This request with what it leaves unset taken from `base` (a
    /// template's settings): a value it gives wins, a list it gives
    /// replaces the template's.
    pub fn over(self, base: NewSession) -> NewSession {
        let NewSession {
            name,
            template,
            model,
            system_prompt,
            permission_mode,
            engine,
            limits,
            budget_usd,
            mounts,
            env,
            secrets,
            max_turns,
            allowed_tools,
            image,
            instructions,
            skills,
            source,
            mcp_servers,
            egress,
        } = self;
        fn list<T>(mine: Vec<T>, theirs: Vec<T>) -> Vec<T> {
            if mine.is_empty() {
                theirs
            } else {
                mine
            }
        }
        NewSession {
            name: if name.trim().is_empty() {
                base.name
            } else {
                name
            },
            template,
            model: model.or(base.model),
            system_prompt: system_prompt.or(base.system_prompt),
            permission_mode: permission_mode.or(base.permission_mode),
            engine: engine.or(base.engine),
            limits: SandboxLimits {
                memory_mb: limits.memory_mb.or(base.limits.memory_mb),
                cpus: limits.cpus.or(base.limits.cpus),
                pids: limits.pids.or(base.limits.pids),
                command_timeout_secs: limits
                    .command_timeout_secs
                    .or(base.limits.command_timeout_secs),
                disk_mb: limits.disk_mb.or(base.limits.disk_mb),
            },
            budget_usd: budget_usd.or(base.budget_usd),
            mounts: list(mounts, base.mounts),
            env: list(env, base.env),
            secrets: list(secrets, base.secrets),
            max_turns: max_turns.or(base.max_turns),
            allowed_tools: list(allowed_tools, base.allowed_tools),
            image: image.or(base.image),
            instructions: instructions.or(base.instructions),
            skills: list(skills, base.skills),
            source: source.or(base.source),
            mcp_servers: list(mcp_servers, base.mcp_servers),
            egress: list(egress, base.egress),
        }
    }

    pub fn validate(self) -> Result<SessionSpec, AppError> {
        let name = check_name("session", &self.name)?;
        let name = name.as_str();
        let model = check_model(self.model.as_deref())?;
        let model = model.as_str();
        let system_prompt = self.system_prompt.unwrap_or_default();
        if system_prompt.len() > SYSTEM_PROMPT_MAX_BYTES {
            return Err(AppError::Invalid(format!(
                "The system prompt is too long: at most {} KiB.",
                SYSTEM_PROMPT_MAX_BYTES / 1024
            )));
        }
        if system_prompt.contains('\0') {
            return Err(AppError::Invalid(
                "The system prompt cannot contain NUL characters.".into(),
            ));
        }
        if self.mounts.len() > MOUNTS_MAX {
            return Err(AppError::Invalid(format!(
                "A session has at most {MOUNTS_MAX} read-only mounts."
            )));
        }
        let mounts = self
            .mounts
            .into_iter()
            .map(ReadOnlyMount::validate)
            .collect::<Result<Vec<_>, _>>()?;
        for (i, m) in mounts.iter().enumerate() {
            if mounts[..i].iter().any(|other| other.name == m.name) {
                return Err(AppError::Invalid(format!(
                    "Two mounts are named {:?}: give one another name.",
                    m.name
                )));
            }
        }
        if self.env.len() + self.secrets.len() > ENV_MAX {
            return Err(AppError::Invalid(format!(
                "A session sets at most {ENV_MAX} environment variables, its secrets included."
            )));
        }
        let env = self
            .env
            .into_iter()
            .map(EnvVar::validate)
            .collect::<Result<Vec<_>, _>>()?;
        for (i, v) in env.iter().enumerate() {
            if env[..i].iter().any(|other| other.name == v.name) {
                return Err(AppError::Invalid(format!("{} is set twice.", v.name)));
            }
        }
        let secrets: Vec<String> = self.secrets.iter().map(|n| n.trim().to_owned()).collect();
        for (i, name) in secrets.iter().enumerate() {
            check_variable_name(name)?;
            if secrets[..i].contains(name) || env.iter().any(|v| &v.name == name) {
                return Err(AppError::Invalid(format!("{name} is set twice.")));
            }
        }
        if let Some(n) = self.max_turns {
            if !MAX_TURNS.contains(&n) {
                return Err(AppError::Invalid(format!(
                    "The turn limit must be between {} and {}.",
                    MAX_TURNS.start(),
                    MAX_TURNS.end()
                )));
            }
        }
        let allowed_tools = check_allowed_tools(self.allowed_tools)?;
        let image = self
            .image
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
            .map(check_image)
            .transpose()?;
        let instructions = self.instructions.unwrap_or_default();
        if instructions.len() > SYSTEM_PROMPT_MAX_BYTES || instructions.contains('\0') {
            return Err(AppError::Invalid(format!(
                "The instructions are at most {} KiB of text.",
                SYSTEM_PROMPT_MAX_BYTES / 1024
            )));
        }
        crate::skills::validate(&self.skills)?;
        let source = self
            .source
            .unwrap_or_default()
            .validate()
            .map_err(AppError::Invalid)?;
        if let WorkspaceSource::Git {
            credential: Some(name),
            ..
        } = &source
        {
            check_variable_name(name)?;
        }
        if self.mcp_servers.len() > MCP_SERVERS_MAX {
            return Err(AppError::Invalid(format!(
                "A session runs at most {MCP_SERVERS_MAX} MCP servers."
            )));
        }
        let mcp_servers = self
            .mcp_servers
            .into_iter()
            .map(McpServer::validate)
            .collect::<Result<Vec<_>, _>>()?;
        for (i, m) in mcp_servers.iter().enumerate() {
            if mcp_servers[..i].iter().any(|o| o.name == m.name) {
                return Err(AppError::Invalid(format!(
                    "Two MCP servers are named {}.",
                    m.name
                )));
            }
        }
        let written = serde_json::to_string(&mcp_servers).map_or(usize::MAX, |j| j.len());
        if written > MCP_SERVERS_MAX_BYTES {
            return Err(AppError::Invalid(format!(
                "A session's MCP servers (commands, arguments and variables, written as JSON) \
                 are at most {} KiB together.",
                MCP_SERVERS_MAX_BYTES / 1024
            )));
        }
        let egress = crate::egress::normal_allowlist(&self.egress).map_err(AppError::Invalid)?;
        Ok(SessionSpec {
            env,
            secrets,
            mounts,
            mcp_servers,
            egress,
            max_turns: self.max_turns,
            allowed_tools,
            image,
            instructions,
            skills: self.skills,
            source,
            template: None,
            trigger: None,
            name: name.to_owned(),
            model: model.to_owned(),
            system_prompt,
            permission_mode: self.permission_mode.unwrap_or(PermissionMode::Ask),
            engine: self.engine.unwrap_or(Engine::Native),
            limits: self.limits.validate()?,
            budget_usd: check_budget(self.budget_usd)?,
        })
    }
}

/// A model identifier's shape (the default when none is given); whether
/// the model exists is the API's to say.
fn check_model(model: Option<&str>) -> Result<String, AppError> {
    let model = model
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_MODEL);
    if model.chars().count() > MODEL_MAX_CHARS
        || !model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '/'))
    {
        return Err(AppError::Invalid(format!(
            "{model:?} is not a model identifier: use letters, digits and - _ . : @ / (at most {MODEL_MAX_CHARS})."
        )));
    }
    Ok(model.to_owned())
}

fn check_budget(budget_usd: Option<f64>) -> Result<Option<f64>, AppError> {
    match budget_usd {
        Some(b) if !(b > 0.0 && b <= BUDGET_MAX_USD) => Err(AppError::Invalid(format!(
            "The budget must be more than $0 and at most ${BUDGET_MAX_USD}."
        ))),
        b => Ok(b),
    }
}

/// What a session's owner may change after it was made: the engines read
/// these at each run (the budget at each model call), so a change holds
/// from the next prompt. Every field is the new value; no budget is none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    pub name: String,
    pub model: String,
    pub permission_mode: PermissionMode,
    #[serde(default)]
    pub budget_usd: Option<f64>,
}

impl SessionSettings {
    /// The session's settings now.
    pub fn of(s: &Session) -> Self {
        Self {
            name: s.name.clone(),
            model: s.model.clone(),
            permission_mode: s.permission_mode,
            budget_usd: s.budget_usd,
        }
    }

    /// Gives `s` these settings (and nothing else: its counters are the
    /// transcript's).
    pub fn apply(self, s: &mut Session) {
        s.name = self.name;
        s.model = self.model;
        s.permission_mode = self.permission_mode;
        s.budget_usd = self.budget_usd;
    }

    pub fn validate(self) -> Result<Self, AppError> {
        self.validate_keeping(None)
    }

    /// [`Self::validate`], but a name kept as it was (`name_was`) is not
    /// checked again: one saved before a rule it breaks does not stop its
    /// session's budget or mode from being changed.
    pub fn validate_keeping(self, name_was: Option<&str>) -> Result<Self, AppError> {
        let name = match name_was {
            Some(was) if was == self.name => self.name,
            _ => check_name("session", &self.name)?,
        };
        Ok(Self {
            name,
            model: check_model(Some(&self.model))?,
            permission_mode: self.permission_mode,
            budget_usd: check_budget(self.budget_usd)?,
        })
    }
}

/// Facts about the server the dashboard shows everywhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `docker` or `local`.
    pub sandbox: String,
    /// The Docker runtime sandboxes run under (`runc`, or `runsc`:
    /// gVisor); none for the local backend.
    #[serde(default)]
    pub sandbox_runtime: Option<String>,
    /// Set when sandboxes are weaker than closed containers, in plain words.
    pub sandbox_warning: Option<String>,
    /// Set when no model credentials are configured: what to do about it.
    pub model_warning: Option<String>,
    /// The host folders sessions may mount read-only (at or under these);
    /// empty when none may be.
    #[serde(default)]
    pub mountable: Vec<String>,
    /// Whether sessions' sandboxes have terminals (Docker sandboxes with
    /// the sandbox agent).
    #[serde(default)]
    pub terminals: bool,
    /// Where the server is reached from outside (`PADDOCK_PUBLIC_URL`),
    /// when the operator said: triggers' URLs are there.
    #[serde(default)]
    pub public_url: Option<String>,
}

/// One stored step of a session's transcript. `seq` numbers a session's
/// events 1, 2, 3, … with no holes; it is the SSE `id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub session_id: SessionId,
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    UserMessage {
        text: String,
    },
    AssistantText {
        text: String,
    },
    Thinking {
        text: String,
    },
    ToolCall {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    ToolResult {
        id: String,
        output: String,
        is_error: bool,
        truncated: bool,
    },
    Status {
        status: SessionStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The agent wants to use a tool its permission mode does not allow
    /// outright; it waits for a [`EventKind::PermissionDecision`].
    PermissionRequest {
        request_id: String,
        tool_use_id: String,
        tool: String,
        input: serde_json::Value,
    },
    PermissionDecision {
        request_id: String,
        decision: Decision,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Who decided (absent when nobody did in time, and in transcripts
        /// from before accounts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Usage {
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
    },
    Error {
        message: String,
    },
    /// The model declined to go on (its answer stopped as a refusal, with
    /// the API's explanation when it gives one). Paddock's own loop leaves
    /// the turn it declined (its prompts and what it made) out of the
    /// conversation from then on, as the API asks: a conversation that
    /// holds it is declined again.
    Refused {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explanation: Option<String>,
    },
    /// Something the server did to the session's workspace: prepared it
    /// (cloned, copied, wrote instructions and skills), committed or
    /// pushed its changes.
    Workspace {
        message: String,
    },
    /// A connection the sandbox asked the egress proxy for: made (with the
    /// bytes each way, once it closed) or refused, and why.
    Egress {
        host: String,
        port: u16,
        allowed: bool,
        #[serde(default)]
        sent: u64,
        #[serde(default)]
        received: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A terminal someone (`by`) opened in the sandbox, numbered in the
    /// session by the server (`replica`) it was opened on; or, with
    /// `closed` saying why, its end.
    Terminal {
        number: u32,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closed: Option<String>,
        /// Absent in transcripts from before replicas numbered their own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replica: Option<String>,
    },
    /// A delivery to one of the template's triggers that started or
    /// continued this session: the sender's id for it, and how it was
    /// verified.
    Delivery {
        trigger: String,
        id: String,
        verified: String,
    },
}

impl EventKind {
    /// The `type` tag, also stored in the `events.kind` column for filtering.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::UserMessage { .. } => "user_message",
            EventKind::AssistantText { .. } => "assistant_text",
            EventKind::Thinking { .. } => "thinking",
            EventKind::ToolCall { .. } => "tool_call",
            EventKind::ToolResult { .. } => "tool_result",
            EventKind::Status { .. } => "status",
            EventKind::PermissionRequest { .. } => "permission_request",
            EventKind::PermissionDecision { .. } => "permission_decision",
            EventKind::Usage { .. } => "usage",
            EventKind::Error { .. } => "error",
            EventKind::Refused { .. } => "refused",
            EventKind::Workspace { .. } => "workspace",
            EventKind::Egress { .. } => "egress",
            EventKind::Terminal { .. } => "terminal",
            EventKind::Delivery { .. } => "delivery",
        }
    }
}

string_enum! {
    /// How a permission request was decided (`expired`: nobody decided in
    /// time, which counts as a denial).
    Decision {
        Allow => "allow",
        AllowSession => "allow_session",
        Deny => "deny",
        Expired => "expired",
    }
}

string_enum! {
    /// Which kind of content block a [`Delta`] extends.
    DeltaKind {
        Text => "text",
        Thinking => "thinking",
        ToolInput => "tool_input",
    }
}

/// The HTML the dashboard shows for a stored event's Markdown (the model's
/// text), rendered and made safe on the server: the browser bundle carries
/// no Markdown parser (pulldown-cmark alone was a sixth of it). It travels
/// with the event: in the same page of a server function's answer, and on
/// the event stream (`?html=true`) as an `html` frame just before the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventHtml {
    pub seq: i64,
    pub html: String,
}

/// A fragment of a content block still being generated, for live display
/// only. Deltas are never stored: when the block completes it is stored as an
/// [`Event`] (`AssistantText`, `Thinking`, `ToolCall`) with its own `seq`, and
/// a viewer replaces the fragments it showed with that event. So a delta has
/// no SSE `id`, and a client that reconnects simply gets the completed block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub session_id: SessionId,
    /// The newest stored `seq` when the fragment was produced (the completed
    /// block's own `seq` is not known yet): the block follows that event.
    pub seq_hint: i64,
    /// Index of the content block within the assistant message.
    pub block: usize,
    pub kind: DeltaKind,
    pub text: String,
}

/// The error every server function and API call returns: what went wrong,
/// in words a user can act on. Internal details are logged, never sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(String),
    /// The caller is not signed in (or their token or cookie is no longer
    /// valid).
    #[error("{0}")]
    Unauthenticated(String),
    /// What was asked conflicts with what exists (a login that is taken).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts (sign-in); try again later.
    #[error("{0}")]
    RateLimited(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    /// The caller may not do this (a write from another site's page).
    #[error("{0}")]
    Forbidden(String),
    /// Sent to a host name this server does not serve (DNS rebinding).
    #[error("{0}")]
    Misdirected(String),
    /// A body over its limit (an upload).
    #[error("{0}")]
    TooLarge(String),
    /// A change made from a version that is no longer the current one (an
    /// agent template saved again since it was read).
    #[error("{0}")]
    Stale(String),
    /// A body of a type the door does not take (a delivery that is not
    /// JSON).
    #[error("{0}")]
    UnsupportedMedia(String),
    /// What was to be written does not fit in the session's workspace
    /// (its disk limit is reached).
    #[error("{0}")]
    WorkspaceFull(String),
    #[error("Something went wrong on the server; the details are in its log.")]
    Internal,
    #[error("{0}")]
    Transport(String),
}

impl From<SkillError> for AppError {
    fn from(e: SkillError) -> Self {
        match e {
            SkillError::Invalid(m) => AppError::Invalid(m),
            SkillError::TooLarge(m) => AppError::TooLarge(m),
        }
    }
}

impl AppError {
    /// The HTTP status this error is answered with, by server functions and
    /// the REST API alike.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Invalid(_) => 400,
            AppError::Unauthenticated(_) => 401,
            AppError::Conflict(_) => 409,
            AppError::RateLimited(_) => 429,
            AppError::NotFound(_) => 404,
            AppError::Unavailable(_) => 503,
            AppError::Forbidden(_) => 403,
            AppError::Misdirected(_) => 421,
            AppError::TooLarge(_) | AppError::WorkspaceFull(_) => 413,
            AppError::UnsupportedMedia(_) => 415,
            AppError::Stale(_) => 412,
            AppError::Internal | AppError::Transport(_) => 500,
        }
    }

    /// The error's type in the REST API's `{"error": {"type": …}}`.
    pub fn kind(&self) -> &'static str {
        match self {
            AppError::Invalid(_) => "invalid_request",
            AppError::Unauthenticated(_) => "unauthenticated",
            AppError::Conflict(_) => "conflict",
            AppError::RateLimited(_) => "rate_limited",
            AppError::NotFound(_) => "not_found",
            AppError::Unavailable(_) => "unavailable",
            AppError::Forbidden(_) => "forbidden",
            AppError::Misdirected(_) => "misdirected_request",
            AppError::TooLarge(_) => "too_large",
            AppError::UnsupportedMedia(_) => "unsupported_media_type",
            AppError::WorkspaceFull(_) => "workspace_full",
            AppError::Stale(_) => "stale",
            AppError::Internal | AppError::Transport(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_kept_as_it_was_is_not_checked_again() {
        let settings = |name: &str| SessionSettings {
            name: name.into(),
            model: "claude-sonnet-4-5".into(),
            permission_mode: PermissionMode::Ask,
            budget_usd: Some(1.0),
        };
        let old = "saved before\u{202E}the rule";
        assert!(settings(old).validate().is_err());
        assert!(settings(old).validate_keeping(Some(old)).is_ok());
        assert!(settings(old).validate_keeping(Some("another")).is_err());
        assert!(settings(" fine ")
            .validate_keeping(Some("x"))
            .is_ok_and(|s| s.name == "fine"));
    }

    #[test]
    fn names_show_as_they_are() {
        for hidden in [
            "report\u{202E}cod.exe",
            "a\u{200B}b",
            "two\u{2028}lines",
            "\u{FEFF}bom",
        ] {
            assert!(check_name("session", hidden).is_err(), "{hidden:?}");
        }
        // Scripts and emoji written with zero-width (non-)joiners.
        for shown in [
            "\u{645}\u{6CC}\u{200C}\u{62E}\u{648}\u{627}\u{647}\u{645}",
            "\u{1F469}\u{200D}\u{1F4BB} work",
        ] {
            assert!(check_name("session", shown).is_ok(), "{shown:?}");
        }
    }

    fn new(name: &str) -> NewSession {
        NewSession {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn validate_fills_defaults_and_trims() {
        let spec = new("  fix the build ").validate().unwrap();
        assert_eq!(spec.name, "fix the build");
        assert_eq!(spec.model, DEFAULT_MODEL);
        assert_eq!(spec.permission_mode, PermissionMode::Ask);
        assert_eq!(spec.engine, Engine::Native);
    }

    #[test]
    fn validate_rejects_bad_names() {
        assert!(matches!(new("   ").validate(), Err(AppError::Invalid(_))));
        assert!(matches!(
            new(&"x".repeat(10_000)).validate(),
            Err(AppError::Invalid(_))
        ));
        assert!(matches!(
            new("a\u{0}b").validate(),
            Err(AppError::Invalid(_))
        ));
        assert!(new(&"é".repeat(NAME_MAX_CHARS)).validate().is_ok());
    }

    #[test]
    fn mounts_are_named_and_checked_for_shape() {
        let mount = |host: &str, name: &str| ReadOnlyMount {
            host: host.into(),
            name: name.into(),
        };
        assert_eq!(
            ReadOnlyMount::from_lines(" /srv/data/ \n\nmodels=/srv/x\n/srv/a=b\n"),
            [
                mount("/srv/data/", ""),
                mount("/srv/x", "models"),
                mount("/srv/a=b", "")
            ]
        );
        let mut n = new("ok");
        n.mounts = vec![mount("/srv/data/", ""), mount("/srv/x", "models")];
        let spec = n.validate().unwrap();
        assert_eq!(spec.mounts[0].name, "data");
        assert_eq!(spec.mounts[0].target(), "/mnt/data");
        assert_eq!(spec.mounts[1].target(), "/mnt/models");
        for bad in [
            vec![mount("relative/path", "")],
            vec![mount("/", "")],
            vec![mount("/srv/a", "../etc")],
            vec![mount("/srv/a", "a b")],
            vec![mount("/srv/a\0b", "")],
            vec![mount("/srv/data/../../etc", "x")],
            vec![mount("/srv/./data", "x")],
            vec![mount("/srv/a", "x"), mount("/srv/b", "x")],
            vec![mount("/srv/a", ""); MOUNTS_MAX + 1],
        ] {
            let mut n = new("ok");
            n.mounts = bad.clone();
            assert!(matches!(n.validate(), Err(AppError::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn environment_variables_are_checked() {
        let var = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: value.into(),
        };
        assert_eq!(
            EnvVar::from_lines("GREETING=hello = world\n\n  MODE=fast\nEMPTY"),
            [
                var("GREETING", "hello = world"),
                var("MODE", "fast"),
                var("EMPTY", "")
            ]
        );
        // Values of several lines, as a form writes and reads them back.
        let vars = [
            var("KEY", "-----BEGIN KEY-----\nabc\nEND\n-----END KEY-----"),
            var("ONE", "a=b"),
            var("TWO", "x\ny"),
        ];
        let text = EnvVar::to_lines(&vars);
        assert!(text.starts_with("KEY<<END1\n"), "{text}");
        assert_eq!(EnvVar::from_lines(&text), vars);
        assert_eq!(EnvVar::from_lines(&text.replace('\n', "\r\n")), vars);
        assert_eq!(
            EnvVar::from_lines("A<<EOF\n1\n\n2\nEOF \nB=3"),
            [var("A", "1\n\n2"), var("B", "3")]
        );
        // A block without its end line is no block: its name is refused.
        assert_eq!(
            EnvVar::from_lines("KEY<<END\nabc\nMODE=fast"),
            [var("KEY<<END", ""), var("abc", ""), var("MODE", "fast")]
        );
        let mut n = new("ok");
        n.env = vec![var("GREETING", "hi"), var("_x1", "")];
        assert_eq!(n.validate().unwrap().env.len(), 2);
        for bad in [
            vec![var("1ABC", "x")],
            vec![var("A-B", "x")],
            vec![var("", "x")],
            vec![var("PATH", "/evil")],
            vec![var("home", "/x")],
            vec![var("ANTHROPIC_API_KEY", "sk")],
            vec![var("PADDOCK_X", "1")],
            vec![var("LD_PRELOAD", "/workspace/evil.so")],
            vec![var("bash_env", "/x")],
            vec![var("NODE_OPTIONS", "--require x")],
            vec![var("https_proxy", "http://127.0.0.1:1")],
            vec![var("A", "a\0b")],
            vec![var("A", &"x".repeat(ENV_VALUE_MAX_BYTES + 1))],
            vec![var("A", "1"), var("A", "2")],
            vec![var("A", ""); ENV_MAX + 1],
        ] {
            let mut n = new("ok");
            n.env = bad.clone();
            assert!(matches!(n.validate(), Err(AppError::Invalid(_))), "{bad:?}");
        }
    }

    /// A form of very many lines that each start a value and never end it
    /// is read no further than one past the most variables: each start
    /// looks through the rest for its end.
    #[test]
    fn env_lines_past_the_most_are_not_read() {
        let text = "A<<B\n".repeat(200_000);
        let vars = EnvVar::from_lines(&text);
        assert_eq!(vars.len(), ENV_MAX + 1);
        assert!(vars.iter().all(|v| v.name == "A<<B"));
    }

    #[test]
    fn validate_rejects_bad_models() {
        let mut n = new("ok");
        n.model = Some("claude<script>".into());
        assert!(matches!(n.validate(), Err(AppError::Invalid(_))));
    }

    #[test]
    fn validate_checks_sandbox_limits() {
        let mut n = new("ok");
        n.limits.memory_mb = Some(8);
        assert!(matches!(n.clone().validate(), Err(AppError::Invalid(_))));
        n.limits = SandboxLimits {
            memory_mb: Some(512),
            cpus: Some(0.5),
            pids: Some(64),
            command_timeout_secs: Some(0),
            disk_mb: None,
        };
        assert!(matches!(n.clone().validate(), Err(AppError::Invalid(_))));
        n.limits.command_timeout_secs = Some(30);
        for bad in [0, 15, 2_000_000, -1] {
            n.limits.disk_mb = Some(bad);
            assert!(
                matches!(n.clone().validate(), Err(AppError::Invalid(_))),
                "{bad}"
            );
        }
        n.limits.disk_mb = Some(64);
        assert_eq!(n.validate().unwrap().limits.pids, Some(64));
    }

    #[test]
    fn validate_checks_turns_tools_and_image() {
        let mut n = new("ok");
        n.max_turns = Some(0);
        assert!(matches!(n.clone().validate(), Err(AppError::Invalid(_))));
        n.max_turns = Some(12);
        n.allowed_tools = vec!["Bash(git log, rm)".into()];
        assert!(matches!(n.clone().validate(), Err(AppError::Invalid(_))));
        n.allowed_tools = vec![" bash ".into(), "Bash(npm test:*)".into(), "bash".into()];
        for bad in [
            "-rm",
            "a b",
            "x\ny",
            &"i".repeat(300),
            "a/..",
            "a/../../containers/x",
            "a//b",
            "a/.hidden:1",
        ] {
            n.image = Some(bad.into());
            assert!(
                matches!(n.clone().validate(), Err(AppError::Invalid(_))),
                "{bad}"
            );
        }
        n.image = Some(" registry.local:5000/team/agent:2@sha256:ab ".into());
        let spec = n.validate().unwrap();
        assert_eq!(spec.max_turns, Some(12));
        assert_eq!(spec.allowed_tools, ["bash", "Bash(npm test:*)"]);
        assert_eq!(
            spec.image.as_deref(),
            Some("registry.local:5000/team/agent:2@sha256:ab")
        );
    }

    #[test]
    fn validate_checks_the_budget() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut n = new("ok");
            n.budget_usd = Some(bad);
            assert!(matches!(n.validate(), Err(AppError::Invalid(_))), "{bad}");
        }
        let mut n = new("ok");
        n.budget_usd = Some(2.5);
        assert_eq!(n.validate().unwrap().budget_usd, Some(2.5));
    }

    #[test]
    fn enums_round_trip_through_their_strings() {
        for s in SessionStatus::ALL {
            assert_eq!(s.as_str().parse::<SessionStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for m in PermissionMode::ALL {
            assert_eq!(m.as_str().parse::<PermissionMode>().unwrap(), *m);
        }
        assert!("root".parse::<Engine>().is_err());
    }

    #[test]
    fn event_kind_tag_matches_name() {
        let kind = EventKind::ToolResult {
            id: "t1".into(),
            output: "ok".into(),
            is_error: false,
            truncated: false,
        };
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json["type"], kind.name());
    }
}
