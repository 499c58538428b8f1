//! How the CLI is started in a sandbox: what is mounted, its arguments, its
//! environment, and the shell line that relays the model's port first.

use super::{ClaudeCodeSettings, CliError, CliState};
use crate::proxy::{CredentialProxy, Lease, SOCKET_DIR, SOCKET_NAME};
use crate::sandbox::{
    ConfinedFolder, DiskFolder, Mount, SandboxError, SpawnRequest, MOUNT_POINT, SANDBOX_UID,
};

use app::domain::{McpServer, PermissionMode, Session, SessionId};

/// Where the CLI binary is mounted, read-only.
const CLI: &str = "/opt/paddock/claude";
/// The CLI's home in the sandbox: a host folder, so `--resume` survives the
/// container.
const HOME: &str = "/paddock/home";
/// Size of the CLI's home, where the host holds disk limits: its
/// transcripts and settings, bounded like the workspace.
const HOME_DISK_MB: u64 = 1024;
/// The loopback port socat listens on inside the sandbox.
const RELAY_PORT: u16 = 4180;
/// Days the CLI keeps a conversation's record: a session's life.
const KEEP_CONVERSATIONS_DAYS: u32 = 36_500;

/// The session's Claude Code home on the host, a filesystem of its own
/// where the host holds disk limits.
pub(super) fn home_disk(proxy: &CredentialProxy, session: SessionId) -> DiskFolder {
    DiskFolder::new(ConfinedFolder::new(
        proxy.session_dir(session).join("home"),
        Some(SANDBOX_UID),
    ))
}

/// The home's size: [`HOME_DISK_MB`] where the host holds disk limits.
pub(super) fn home_size(disk_limits: bool) -> Option<u64> {
    disk_limits.then_some(HOME_DISK_MB)
}

/// What a claude-code sandbox mounts: the CLI (read-only), the session's
/// Claude Code home (made by then: [`home_disk`]), and the proxy's socket
/// folder (read-only).
pub(super) fn mounts(
    settings: &ClaudeCodeSettings,
    proxy: &CredentialProxy,
    session: SessionId,
) -> Result<Vec<Mount>, SandboxError> {
    let bin = settings.bin.clone();
    if !bin.is_file() {
        return Err(SandboxError::Failed(format!(
            "the Claude Code CLI is not installed at {}: run scripts/setup, or set PADDOCK_CLAUDE_CODE_BIN",
            bin.display()
        )));
    }
    let home = proxy.session_dir(session).join("home");
    let socket_dir = proxy.socket_dir(session);
    std::fs::create_dir_all(&socket_dir).map_err(|e| {
        SandboxError::Failed(format!("cannot create {}: {e}", socket_dir.display()))
    })?;
    Ok(vec![
        Mount {
            host: bin,
            target: CLI.into(),
            read_only: true,
        },
        Mount {
            host: home,
            target: HOME.into(),
            read_only: false,
        },
        Mount {
            host: socket_dir,
            target: SOCKET_DIR.into(),
            read_only: true,
        },
    ])
}

/// The CLI's tools that change the workspace or run commands: refused
/// outright in a read-only session (deny rules outrank a repository's own
/// allow rules, and plan mode alone is only what the model is told).
const CHANGING_TOOLS: &str = "Bash,Edit,Write,MultiEdit,NotebookEdit,EnterWorktree";

/// The CLI's tools a read-only session may use; any other it asks about is
/// refused without asking anyone (`ExitPlanMode` among them, which would
/// leave plan mode).
pub(super) fn reads_only(tool: &str) -> bool {
    matches!(
        tool,
        "Read"
            | "Glob"
            | "Grep"
            | "LS"
            | "NotebookRead"
            | "Skill"
            | "Agent"
            | "Task"
            | "TodoWrite"
            | "TaskCreate"
            | "TaskGet"
            | "TaskList"
            | "TaskUpdate"
            | "TaskStop"
    )
}

/// The CLI's `--permission-mode` for a Paddock permission mode.
fn permission_mode(mode: PermissionMode) -> &'static str {
    match mode {
        // The CLI asks (through us) before edits and commands.
        PermissionMode::Ask => "default",
        PermissionMode::AcceptEdits => "acceptEdits",
        // The sandbox is the boundary; nothing to ask.
        PermissionMode::Auto => "bypassPermissions",
        // Plan mode reads and reasons but changes nothing.
        PermissionMode::ReadOnly => "plan",
    }
}

/// The CLI process for one prompt of `s`, reaching the model only through
/// the lease's token.
pub(super) fn spawn_request(
    settings: &ClaudeCodeSettings,
    s: &Session,
    state: &CliState,
    allowed_tools: &[String],
    lease: &Lease,
) -> Result<SpawnRequest, CliError> {
    Ok(SpawnRequest {
        argv: argv(args(settings, s, state, allowed_tools)?),
        env: vec![
            (
                "ANTHROPIC_BASE_URL".into(),
                format!("http://127.0.0.1:{RELAY_PORT}"),
            ),
            ("ANTHROPIC_API_KEY".into(), lease.token.clone()),
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            ),
            ("HOME".into(), HOME.into()),
        ]
        .into_iter()
        // A read-only session's project memory, from the folder it adds
        // (it loads no project settings: [`args`]).
        .chain((s.permission_mode == PermissionMode::ReadOnly).then(|| {
            (
                "CLAUDE_CODE_ADDITIONAL_DIRECTORIES_CLAUDE_MD".to_owned(),
                "1".to_owned(),
            )
        }))
        .chain(s.limits.command_timeout_secs.into_iter().flat_map(|secs| {
            // The CLI's Bash tool: its default and its longest time limit.
            let ms = (secs * 1000).to_string();
            [
                ("BASH_DEFAULT_TIMEOUT_MS".to_owned(), ms.clone()),
                ("BASH_MAX_TIMEOUT_MS".to_owned(), ms),
            ]
        }))
        .chain(s.env.iter().map(|v| (v.name.clone(), v.value.clone())))
        .collect(),
        timeout: settings.run_timeout,
    })
}

fn args(
    settings: &ClaudeCodeSettings,
    s: &Session,
    state: &CliState,
    allowed_tools: &[String],
) -> Result<Vec<String>, CliError> {
    let mut args: Vec<String> = [
        "-p",
        "--output-format",
        "stream-json",
        "--input-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--permission-prompt-tool",
        "stdio",
        "--permission-mode",
        permission_mode(s.permission_mode),
        "--model",
        &s.model,
        "--max-turns",
    ]
    .map(str::to_owned)
    .into();
    args.push(
        s.max_turns
            .map_or(settings.max_turns.to_string(), |n| n.to_string()),
    );
    if !s.system_prompt.is_empty() {
        if s.system_prompt.contains('\0') {
            return Err(CliError::NulInSystemPrompt);
        }
        args.extend(["--append-system-prompt".to_owned(), s.system_prompt.clone()]);
    }
    // Settings over the repository's: the conversation's record kept for
    // as long as the session (the CLI deletes those of 30 days by
    // default, and `--resume` would find none).
    let mut flags = serde_json::json!({ "cleanupPeriodDays": KEEP_CONVERSATIONS_DAYS });
    if s.permission_mode == PermissionMode::ReadOnly {
        // None of the repository's settings: they name commands the CLI
        // runs without a tool call (`apiKeyHelper`, `awsAuthRefresh`, …,
        // with the variables of its `env`), and allow tools. Its project
        // memory (CLAUDE.md) comes from the workspace added as a folder;
        // its skills are not listed.
        args.extend(["--setting-sources", "", "--add-dir", MOUNT_POINT].map(str::to_owned));
        // Nothing that changes anything, and no hooks.
        flags["disableAllHooks"] = true.into();
        args.extend(["--disallowedTools".to_owned(), CHANGING_TOOLS.to_owned()]);
    } else {
        // The workspace's project instructions (CLAUDE.md) and skills
        // (.claude/skills/), and no settings of the user's home.
        args.extend(["--setting-sources", "project,local"].map(str::to_owned));
        // What the session allows from the start, and what people allowed
        // for the rest of it since.
        let mut allowed: Vec<&str> = Vec::new();
        for tool in s.allowed_tools.iter().chain(allowed_tools) {
            if !allowed.contains(&tool.as_str()) {
                allowed.push(tool);
            }
        }
        if !allowed.is_empty() {
            args.extend(["--allowedTools".to_owned(), allowed.join(",")]);
        }
    }
    args.extend(["--settings".to_owned(), flags.to_string()]);
    // The session's MCP servers and no others (a repository's .mcp.json is
    // not the session's choice); none in a read-only session, as in
    // Paddock's loop.
    args.push("--strict-mcp-config".to_owned());
    if !s.mcp_servers.is_empty() && s.permission_mode != PermissionMode::ReadOnly {
        args.extend([
            "--mcp-config".to_owned(),
            mcp_config(&s.mcp_servers).to_string(),
        ]);
    }
    if let Some(id) = &state.claude_session_id {
        args.extend(["--resume".to_owned(), id.clone()]);
    }
    Ok(args)
}

/// The CLI's `--mcp-config` for the session's MCP servers.
fn mcp_config(servers: &[McpServer]) -> serde_json::Value {
    let servers: serde_json::Map<String, serde_json::Value> = servers
        .iter()
        .map(|m| {
            let env: serde_json::Map<String, serde_json::Value> = m
                .env
                .iter()
                .map(|v| (v.name.clone(), v.value.clone().into()))
                .collect();
            (
                m.name.clone(),
                serde_json::json!({"type": "stdio", "command": m.command, "args": m.args, "env": env}),
            )
        })
        .collect();
    serde_json::json!({ "mcpServers": servers })
}

/// What runs in the sandbox: a shell in which socat relays a loopback port
/// to the proxy's socket, and once it listens the CLI replaces the shell,
/// with `args` as they are (the shell's positional parameters, which it
/// does not read as code).
fn argv(args: Vec<String>) -> Vec<String> {
    let socket = format!("{SOCKET_DIR}/{SOCKET_NAME}");
    let script = format!(
        "socat TCP-LISTEN:{RELAY_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{socket} 2>/dev/null &\n\
         for _ in $(seq 200); do (: </dev/tcp/127.0.0.1/{RELAY_PORT}) 2>/dev/null && break; sleep 0.025; done\n\
         exec {CLI} \"$@\""
    );
    ["bash", "-c", &script, "claude"]
        .map(str::to_owned)
        .into_iter()
        .chain(args)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_modes_map_to_the_cli() {
        assert_eq!(permission_mode(PermissionMode::Ask), "default");
        assert_eq!(permission_mode(PermissionMode::AcceptEdits), "acceptEdits");
        assert_eq!(permission_mode(PermissionMode::Auto), "bypassPermissions");
        assert_eq!(permission_mode(PermissionMode::ReadOnly), "plan");
    }

    #[test]
    fn arguments_are_passed_as_they_are() {
        let argv = argv(vec![
            "--append-system-prompt".into(),
            "it's $(rm -rf /)".into(),
        ]);
        assert_eq!(argv[..2], ["bash", "-c"]);
        assert!(argv[2].contains("UNIX-CONNECT:/run/paddock/llm.sock"));
        assert!(
            argv[2].ends_with(r#"exec /opt/paddock/claude "$@""#),
            "{}",
            argv[2]
        );
        assert_eq!(argv[4..], ["--append-system-prompt", "it's $(rm -rf /)"]);
    }
}
