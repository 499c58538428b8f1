//! The settings fields the New-session form and the agent form share:
//! model and permissions, and under "More options" the engine, system
//! prompt, budget, environment, secrets and read-only folders; shown with
//! a template's values when it has them, and read back from a submitted
//! form.

use super::form::INPUT;
use crate::accounts::{CredentialKind, CredentialScope};
use crate::api::accounts::{list_credentials, whoami};
use crate::api::{get_server_info, SettingsForm};
use crate::domain::{
    AppError, Engine, EnvVar, McpServer, NewSession, PermissionMode, DEFAULT_MODEL,
    SUGGESTED_MODELS,
};
use crate::workspace_source::WorkspaceSource;
use leptos::prelude::*;
use leptos_router::components::A;

/// The settings fields of a submitted form (secrets: every checked box).
pub(super) fn settings_of(data: &leptos::web_sys::FormData) -> SettingsForm {
    let field = |k: &str| data.get(k).as_string();
    let secrets: Vec<String> = data
        .get_all("secrets")
        .iter()
        .filter_map(|v| v.as_string())
        .collect();
    SettingsForm {
        model: field("model"),
        system_prompt: field("system_prompt"),
        permission_mode: field("permission_mode"),
        engine: field("engine"),
        budget_usd: field("budget_usd"),
        mounts: field("mounts"),
        env: field("env"),
        secrets: (!secrets.is_empty()).then(|| secrets.join(",")),
        memory_mb: field("memory_mb"),
        cpus: field("cpus"),
        pids: field("pids"),
        command_timeout_secs: field("command_timeout_secs"),
        disk_mb: field("disk_mb"),
        max_turns: field("max_turns"),
        allowed_tools: field("allowed_tools"),
        egress: field("egress"),
        image: field("image"),
        instructions: field("instructions"),
        repo_url: field("repo_url"),
        repo_rev: field("repo_rev"),
        repo_token: field("repo_token"),
        source_folder: field("source_folder"),
        mcp_servers: field("mcp_servers"),
    }
}

pub(super) fn mode_label(m: PermissionMode) -> &'static str {
    match m {
        PermissionMode::Ask => "Ask before commands and edits",
        PermissionMode::AcceptEdits => "Accept edits, ask before commands",
        PermissionMode::Auto => "Run everything (no questions)",
        PermissionMode::ReadOnly => "Read-only",
    }
}

/// The names of the secrets a session made by the caller can use: their
/// own, or the server's with sign-in off.
async fn secret_names() -> Result<Vec<String>, AppError> {
    let Some(me) = whoami().await? else {
        return Ok(Vec::new());
    };
    let scope = me
        .user
        .map_or(CredentialScope::Server, CredentialScope::User);
    Ok(list_credentials()
        .await?
        .into_iter()
        .filter(|c| c.id.kind == CredentialKind::Secret && c.id.scope == scope)
        .map(|c| c.id.name)
        .collect())
}

/// The fields, showing `initial`'s values (a new session's: the defaults).
/// `prefix` keeps the ids of two forms on one page apart.
#[component]
pub(super) fn SettingsFields(initial: NewSession, prefix: &'static str) -> impl IntoView {
    let info = Resource::new(|| (), |_| get_server_info());
    let saved_secrets = Resource::new(|| (), |_| secret_names());
    let id = move |what: &str| format!("{prefix}-{what}");
    let mode = initial.permission_mode.unwrap_or(PermissionMode::Ask);
    let engine = initial.engine.unwrap_or(Engine::Native);
    let env = EnvVar::to_lines(&initial.env);
    let mounts: Vec<String> = initial
        .mounts
        .iter()
        .map(|m| match m.name.as_str() {
            "" => m.host.clone(),
            name => format!("{name}={}", m.host),
        })
        .collect();
    let chosen = initial.secrets.clone();
    let mcp_lines: Vec<String> = initial.mcp_servers.iter().map(McpServer::line).collect();
    let (repo_url, repo_rev, repo_token, source_folder) = match initial.source.clone() {
        Some(WorkspaceSource::Git {
            url,
            rev,
            credential,
        }) => (Some(url), rev, credential, None),
        Some(WorkspaceSource::Folder { path }) => (None, None, None, Some(path)),
        _ => (None, None, None, None),
    };
    view! {
        <fieldset class="space-y-2" data-testid="session-workspace">
            <legend class="text-sm font-medium">"Workspace"</legend>
            <div class="grid gap-2 sm:grid-cols-3">
                <label class="text-xs sm:col-span-3">"Git repository to start from (empty: an empty folder)"
                    <input id=id("repo-url") name="repo_url" type="url" placeholder="https://github.com/org/repo.git" value=repo_url class=format!("font-mono {INPUT}") />
                </label>
                <label class="text-xs">"Branch, tag or commit"
                    <input id=id("repo-rev") name="repo_rev" placeholder="the default branch" value=repo_rev class=format!("font-mono {INPUT}") />
                </label>
                <label class="text-xs sm:col-span-2">"Git token to use (from Credentials)"
                    <input id=id("repo-token") name="repo_token" placeholder="none: a public repository" value=repo_token class=format!("font-mono {INPUT}") />
                </label>
            </div>
            <p class="text-xs text-zinc-500 dark:text-zinc-400">"The server clones it onto a branch paddock/<session>; review, commit and push under Changes. The token never enters the sandbox."</p>
            <div>
                <label for=id("instructions") class="text-sm font-medium">"Instructions (CLAUDE.md)"</label>
                <textarea id=id("instructions") name="instructions" rows="3" placeholder="How to work in this project: conventions, commands, what to avoid" class=INPUT>{initial.instructions.clone().unwrap_or_default()}</textarea>
            </div>
        </fieldset>
        <div>
            <label for=id("model") class="text-sm font-medium">"Model"</label>
            <input id=id("model") name="model" list="model-suggestions" placeholder=format!("{DEFAULT_MODEL} (the default)") value=initial.model.clone() class=INPUT />
            <datalist id="model-suggestions">
                {SUGGESTED_MODELS.iter().map(|m| view! { <option value=*m></option> }).collect_view()}
            </datalist>
        </div>
        <div>
            <label for=id("mode") class="text-sm font-medium">"Permissions"</label>
            <select id=id("mode") name="permission_mode" class=INPUT>
                {PermissionMode::ALL.iter().map(|m| view! {
                    <option value=m.as_str() selected=*m == mode>{mode_label(*m)}</option>
                }).collect_view()}
            </select>
        </div>
        <details class="text-sm">
            <summary class="cursor-pointer font-medium">"More options"</summary>
            <div class="mt-2 space-y-3">
                <div>
                    <label for=id("engine") class="text-sm font-medium">"Engine"</label>
                    <select id=id("engine") name="engine" class=INPUT>
                        {Engine::ALL.iter().map(|e| view! {
                            <option value=e.as_str() selected=*e == engine>{match e {
                                Engine::Native => "Paddock's agent loop",
                                Engine::ClaudeCode => "Claude Code CLI",
                            }}</option>
                        }).collect_view()}
                    </select>
                </div>
                <div>
                    <label for=id("system") class="text-sm font-medium">"System prompt"</label>
                    <textarea id=id("system") name="system_prompt" rows="3" placeholder="Optional instructions for every turn" class=INPUT>{initial.system_prompt.clone().unwrap_or_default()}</textarea>
                </div>
                <div>
                    <label for=id("budget") class="text-sm font-medium">"Budget (USD)"</label>
                    <input id=id("budget") name="budget_usd" type="number" min="0" step="any" placeholder="No limit" value=initial.budget_usd.map(|b| b.to_string()) class=INPUT />
                </div>
                <div>
                    <label for=id("mcp") class="text-sm font-medium">"MCP servers"</label>
                    <textarea id=id("mcp") name="mcp_servers" rows="2" placeholder="time mcp-server-time --local-timezone UTC" class=format!("font-mono {INPUT}")>{mcp_lines.join("\n")}</textarea>
                    <p class="mt-1 text-xs text-zinc-500 dark:text-zinc-400">"One a line: a name, then the command and its arguments. They run inside the sandbox; their tools are mcp__<name>__<tool>."</p>
                </div>
                <div>
                    <label for=id("allowed-tools") class="text-sm font-medium">"Allowed without asking"</label>
                    <textarea id=id("allowed-tools") name="allowed_tools" rows="2" placeholder="bash   or   Bash(npm test:*)" class=format!("font-mono {INPUT}")>{initial.allowed_tools.join("\n")}</textarea>
                    <p class="mt-1 text-xs text-zinc-500 dark:text-zinc-400">"One tool a line: the agent uses it without asking, in a mode that asks."</p>
                </div>
                <div>
                    <label for=id("egress") class="text-sm font-medium">"Network access"</label>
                    <textarea id=id("egress") name="egress" rows="2" placeholder="mirror.example.com" class=format!("font-mono {INPUT}")>{initial.egress.join("\n")}</textarea>
                    <p class="mt-1 text-xs text-zinc-500 dark:text-zinc-400">"Hosts the sandbox may reach through Paddock's proxy, one a line: a name, *.name for the names under it, with :port (else 80 and 443). Empty: no network."</p>
                </div>
                <fieldset class="grid grid-cols-2 gap-3 sm:grid-cols-3" data-testid="session-limits">
                    <legend class="mb-1 text-sm font-medium">"Limits (empty: the server's)"</legend>
                    <label class="text-xs">"Turns per prompt"
                        <input name="max_turns" type="number" min="1" max="1000" value=initial.max_turns.map(|n| n.to_string()) class=INPUT />
                    </label>
                    <label class="text-xs">"Seconds per command"
                        <input name="command_timeout_secs" type="number" min="1" max="86400" value=initial.limits.command_timeout_secs.map(|n| n.to_string()) class=INPUT />
                    </label>
                    <label class="text-xs">"Memory (MiB)"
                        <input name="memory_mb" type="number" min="64" max="65536" value=initial.limits.memory_mb.map(|n| n.to_string()) class=INPUT />
                    </label>
                    <label class="text-xs">"CPUs"
                        <input name="cpus" type="number" min="0.1" max="64" step="any" value=initial.limits.cpus.map(|n| n.to_string()) class=INPUT />
                    </label>
                    <label class="text-xs">"Disk (MiB)"
                        <input name="disk_mb" type="number" min="16" max="1048576" value=initial.limits.disk_mb.map(|n| n.to_string()) class=INPUT />
                    </label>
                    <label class="text-xs">"Processes"
                        <input name="pids" type="number" min="16" max="65536" value=initial.limits.pids.map(|n| n.to_string()) class=INPUT />
                    </label>
                    <label class="text-xs">"Image"
                        <input name="image" placeholder="the server's" value=initial.image.clone() class=format!("font-mono {INPUT}") />
                    </label>
                </fieldset>
                <div>
                    <label for=id("env") class="text-sm font-medium">"Environment variables"</label>
                    <textarea id=id("env") name="env" rows="2" placeholder="NAME=value, one a line (several lines: NAME<<END, the lines, END)" class=INPUT>{env}</textarea>
                    <p class="mt-1 text-xs text-zinc-500 dark:text-zinc-400">"Set for every command the agent runs. They are shown in the session's settings: no credentials here."</p>
                </div>
                <fieldset data-testid="session-secrets">
                    <legend class="text-sm font-medium">"Secrets"</legend>
                    <Suspense>
                        {move || {
                            let chosen = chosen.clone();
                            Suspend::new(async move {
                                let mut names = saved_secrets.await.unwrap_or_default();
                                // A template may name one not saved (yet): it stays listed.
                                for c in &chosen {
                                    if !names.contains(c) {
                                        names.push(c.clone());
                                    }
                                }
                                if names.is_empty() {
                                    return view! {
                                        <p class="mt-1 text-xs text-zinc-500 dark:text-zinc-400">"None saved: add them under " <A href="/credentials" attr:class="underline">"Credentials"</A> "."</p>
                                    }.into_any();
                                }
                                view! {
                                    <div class="mt-1 flex flex-wrap gap-x-4 gap-y-1">
                                        {names.into_iter().map(|n| {
                                            let checked = chosen.contains(&n);
                                            view! {
                                                <label class="flex items-center gap-1.5 font-mono text-xs">
                                                    <input type="checkbox" name="secrets" value=n.clone() checked=checked />{n.clone()}
                                                </label>
                                            }
                                        }).collect_view()}
                                    </div>
                                    <p class="mt-1 text-xs text-zinc-500 dark:text-zinc-400">"Each is set under its name for the agent's commands; its value shows as •••• in the transcript."</p>
                                }.into_any()
                            })
                        }}
                    </Suspense>
                </fieldset>
                <Suspense>
                    {move || {
                        let mounts = mounts.clone();
                        let source_folder = source_folder.clone();
                        Suspend::new(async move {
                            let mountable = info.await.map(|i| i.mountable).unwrap_or_default();
                            (!mountable.is_empty()).then(|| view! {
                                <div>
                                    <label for=id("mounts") class="text-sm font-medium">"Read-only folders"</label>
                                    <textarea id=id("mounts") name="mounts" rows="2" placeholder="/srv/data   or   name=/srv/data" class=INPUT>{mounts.join("\n")}</textarea>
                                    <label class="mt-2 block text-xs">"Or copy an allowed folder into the workspace"
                                        <input name="source_folder" placeholder="/srv/project" value=source_folder.clone() class=format!("font-mono {INPUT}") />
                                    </label>
                                    <p class="mt-1 text-xs text-zinc-500 dark:text-zinc-400">
                                        "One a line; each appears at /mnt/<name> in the sandbox and cannot be changed there. Allowed: "
                                        {mountable.join(", ")}
                                    </p>
                                </div>
                            })
                        })
                    }}
                </Suspense>
            </div>
        </details>
    }
}
