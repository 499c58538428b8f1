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
    AppError, Engine, NewSession, PermissionMode, DEFAULT_MODEL, SUGGESTED_MODELS,
};
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
    }
}

fn mode_label(m: PermissionMode) -> &'static str {
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
    let env: Vec<String> = initial
        .env
        .iter()
        .map(|v| format!("{}={}", v.name, v.value))
        .collect();
    let mounts: Vec<String> = initial
        .mounts
        .iter()
        .map(|m| match m.name.as_str() {
            "" => m.host.clone(),
            name => format!("{name}={}", m.host),
        })
        .collect();
    let chosen = initial.secrets.clone();
    view! {
        <div>
            <label for=id("model") class="text-sm font-medium">"Model"</label>
            <input id=id("model") name="model" list="model-suggestions" value=initial.model.clone().unwrap_or_else(|| DEFAULT_MODEL.to_owned()) class=INPUT />
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
                    <input id=id("budget") name="budget_usd" type="number" min="0.01" step="0.01" placeholder="No limit" value=initial.budget_usd.map(|b| b.to_string()) class=INPUT />
                </div>
                <div>
                    <label for=id("env") class="text-sm font-medium">"Environment variables"</label>
                    <textarea id=id("env") name="env" rows="2" placeholder="NAME=value, one a line" class=INPUT>{env.join("\n")}</textarea>
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
                        Suspend::new(async move {
                            let mountable = info.await.map(|i| i.mountable).unwrap_or_default();
                            (!mountable.is_empty()).then(|| view! {
                                <div>
                                    <label for=id("mounts") class="text-sm font-medium">"Read-only folders"</label>
                                    <textarea id=id("mounts") name="mounts" rows="2" placeholder="/srv/data   or   name=/srv/data" class=INPUT>{mounts.join("\n")}</textarea>
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
