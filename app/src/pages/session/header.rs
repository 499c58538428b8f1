//! The session's header: name, status, connection, counters, settings.

use super::super::notifications::Notifications;
use super::super::{format_cost, format_time, DeleteButton, StatusBadge, When};
use super::settings_edit::SettingsEdit;
use super::share::People;
use crate::accounts::{Access, SessionPeople};
use crate::domain::Session;
use crate::live::Link;
use leptos::prelude::*;

#[component]
pub(super) fn Header(
    session: RwSignal<Session>,
    id: String,
    link: ReadSignal<Link>,
    people: RwSignal<SessionPeople>,
) -> impl IntoView {
    // Owning does not change with a share; operating does (the page's
    // access, which changes only when it does).
    let owns = people.with_untracked(|p| p.access == Access::Own);
    let access = expect_context::<Memo<Access>>();
    let operates = move || access.get() >= Access::Operate;
    let id_notes = id.clone();
    let s = session.get_untracked();
    // What the owner may change is shown as it is now; the rest as made.
    let changeable = [
        ("Model", "setting-model"),
        ("Permissions", "setting-permissions"),
        ("Budget", "setting-budget"),
    ]
    .map(|(label, testid)| {
        let value = move || {
            session.with(|s| match label {
                "Model" => s.model.clone(),
                "Permissions" => s.permission_mode.to_string(),
                _ => s
                    .budget_usd
                    .map_or_else(|| "none".to_owned(), |b| format!("${b:.2}")),
            })
        };
        view! {
            <div class="min-w-0">
                <dt class="text-xs text-zinc-500 dark:text-zinc-400">{label}</dt>
                <dd class="truncate" data-testid=testid>{value}</dd>
            </div>
        }
    });
    let mut settings = vec![
        ("Engine", s.engine.to_string()),
        ("Created", format_time(s.created_at)),
    ];
    if !s.mounts.is_empty() {
        let mounts: Vec<String> = s
            .mounts
            .iter()
            .map(|m| format!("{} → {} (read-only)", m.host, m.target()))
            .collect();
        settings.push(("Mounts", mounts.join(", ")));
    }
    if !s.env.is_empty() {
        let names: Vec<&str> = s.env.iter().map(|v| v.name.as_str()).collect();
        settings.push(("Environment", names.join(", ")));
    }
    if !s.secrets.is_empty() {
        settings.push(("Secrets", s.secrets.join(", ")));
    }
    if !s.allowed_tools.is_empty() {
        settings.push(("Allowed without asking", s.allowed_tools.join(", ")));
    }
    if let Some(n) = s.max_turns {
        settings.push(("Turns per prompt", n.to_string()));
    }
    if let Some(secs) = s.limits.command_timeout_secs {
        settings.push(("Seconds per command", secs.to_string()));
    }
    if !s.mcp_servers.is_empty() {
        let names: Vec<&str> = s.mcp_servers.iter().map(|m| m.name.as_str()).collect();
        settings.push(("MCP servers", names.join(", ")));
    }
    if let Some(image) = &s.image {
        settings.push(("Image", image.clone()));
    }
    if !s.egress.is_empty() {
        settings.push(("Network access", s.egress.join(", ")));
    }
    let counter = |label: &'static str, testid: &'static str, value: Signal<String>| {
        view! {
            <div class="min-w-0">
                <dt class="text-xs text-zinc-500 dark:text-zinc-400">{label}</dt>
                <dd class="truncate font-medium tabular-nums" data-testid=testid>{value}</dd>
            </div>
        }
    };
    view! {
        <header class="space-y-3">
            <div class="flex flex-wrap items-center gap-x-3 gap-y-2">
                <h1 class="min-w-0 break-words text-xl font-semibold" data-testid="session-title">{move || session.with(|s| s.name.clone())}</h1>
                {move || view! { <StatusBadge status=session.with(|s| s.status) /> }}
                <span
                    data-testid="connection"
                    data-state=move || format!("{:?}", link.get()).to_lowercase()
                    class="inline-flex items-center gap-1.5 text-xs text-zinc-500 dark:text-zinc-400"
                >
                    <span
                        aria-hidden="true"
                        class=move || format!(
                            "h-2 w-2 rounded-full {}",
                            match link.get() {
                                Link::Live => "bg-emerald-500",
                                Link::Gone => "bg-zinc-400",
                                _ => "animate-pulse bg-amber-500",
                            },
                        )
                    ></span>
                    {move || link.get().label()}
                </span>
                {owns.then(|| view! { <DeleteButton id=id.clone() name=Signal::derive(move || session.with(|s| s.name.clone())) then_go_to="/" /> })}
            </div>
            <dl class="grid grid-cols-2 gap-x-6 gap-y-3 rounded-lg border border-zinc-200 bg-white p-4 text-sm sm:grid-cols-4 dark:border-zinc-800 dark:bg-zinc-900">
                {counter("Cost", "cost", Signal::derive(move || format_cost(session.with(|s| s.cost_usd))))}
                {counter("Tokens in / out", "tokens", Signal::derive(move || session.with(|s| format!("{} / {}", s.input_tokens, s.output_tokens))))}
                {counter("Turns", "turns", Signal::derive(move || session.with(|s| s.turns.to_string())))}
                <div class="min-w-0">
                    <dt class="text-xs text-zinc-500 dark:text-zinc-400">"Last activity"</dt>
                    <dd class="truncate font-medium tabular-nums" data-testid="activity">
                        <When at=Signal::derive(move || session.with(|s| s.updated_at)) />
                    </dd>
                </div>
            </dl>
            <details class="rounded-lg border border-zinc-200 bg-white px-4 py-2 text-sm dark:border-zinc-800 dark:bg-zinc-900">
                <summary class="cursor-pointer font-medium">"Settings"</summary>
                <dl class="mt-2 grid grid-cols-2 gap-x-6 gap-y-2 sm:grid-cols-5">
                    {changeable.into_iter().collect_view()}
                    {settings.into_iter().map(|(label, value)| view! {
                        <div class="min-w-0">
                            <dt class="text-xs text-zinc-500 dark:text-zinc-400">{label}</dt>
                            <dd class="truncate">{value}</dd>
                        </div>
                    }).collect_view()}
                </dl>
                {(!s.system_prompt.is_empty()).then(|| view! {
                    <p class="mt-2 text-xs text-zinc-500 dark:text-zinc-400">"System prompt"</p>
                    <pre class="whitespace-pre-wrap break-words font-mono text-xs">{s.system_prompt.clone()}</pre>
                })}
                {owns.then(|| view! { <SettingsEdit session /> })}
            </details>
            {move || operates().then(|| {
                // Read once opened: most page loads never look.
                let (opened, made) = (RwSignal::new(false), RwSignal::new(None));
                let id = id_notes.clone();
                view! {
                    <details class="rounded-lg border border-zinc-200 bg-white px-4 py-2 text-sm dark:border-zinc-800 dark:bg-zinc-900" data-testid="session-notifications">
                        <summary class="cursor-pointer font-medium" on:click=move |_| opened.set(true)>"Notifications"</summary>
                        {move || opened.get().then(|| view! { <div class="mt-2"><Notifications of="session" id=id.clone() made /></div> })}
                    </details>
                }
            })}
            <People id people />
        </header>
    }
    .into_any()
}
