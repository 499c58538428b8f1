//! The sessions beside the open one, on wide screens: a status dot, the
//! name and the cost of each, those needing you first (marked with why),
//! filtered by name and status. Its links keep the page (client-side
//! navigation), so the streams follow the session opened.

use super::format_cost;
use crate::attention::{use_attention, Why};
use crate::domain::{Session, SessionId, SessionStatus};
use crate::sessions_feed::use_feed;
use leptos::prelude::*;
use leptos_router::components::A;

/// What the status filter keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Show {
    All,
    NeedsYou,
    Working,
    Idle,
    Failed,
}

impl Show {
    const ALL: [(Show, &'static str, &'static str); 5] = [
        (Show::All, "all", "All"),
        (Show::NeedsYou, "needs-you", "Needs you"),
        (Show::Working, "working", "Working"),
        (Show::Idle, "idle", "Idle"),
        (Show::Failed, "failed", "Failed"),
    ];

    fn keeps(self, status: SessionStatus, why: Option<Why>) -> bool {
        use SessionStatus::*;
        match self {
            Show::All => true,
            Show::NeedsYou => why.is_some(),
            Show::Working => status.is_busy(),
            Show::Idle => matches!(status, Idle | Stopped),
            Show::Failed => matches!(status, Error | Interrupted),
        }
    }
}

/// Whether `name` matches what was typed (any case, anywhere in it).
fn matches_name(name: &str, typed: &str) -> bool {
    name.to_lowercase().contains(&typed.trim().to_lowercase())
}

/// The colour of a status dot.
fn dot(status: SessionStatus) -> &'static str {
    use SessionStatus::*;
    match status {
        Idle | Stopped => "bg-zinc-400",
        Starting | Running => "bg-sky-500 animate-pulse",
        AwaitingPermission => "bg-amber-500",
        Error | Interrupted => "bg-red-500",
    }
}

#[component]
pub fn Sidebar(#[prop(into)] current: Signal<SessionId>) -> impl IntoView {
    let feed = use_feed();
    let attention = use_attention();
    let typed = RwSignal::new(String::new());
    let show = RwSignal::new(Show::All);
    // Those needing you first, most urgent first; then newest activity.
    let rows = Memo::new(move |_| {
        let needing = attention.list.get();
        let typed = typed.get();
        let show = show.get();
        let mut rows: Vec<(Session, Option<Why>)> = feed.sessions.with(|all| {
            all.iter()
                .map(|s| {
                    (
                        s.clone(),
                        needing.iter().find(|(id, _)| *id == s.id).map(|(_, w)| *w),
                    )
                })
                .filter(|(s, why)| matches_name(&s.name, &typed) && show.keeps(s.status, *why))
                .collect()
        });
        rows.sort_by_key(|(s, _)| {
            needing
                .iter()
                .position(|(id, _)| *id == s.id)
                .unwrap_or(usize::MAX)
        });
        rows
    });
    let field = "w-full rounded-md border border-zinc-300 bg-white px-2 py-1 text-sm dark:border-zinc-700 dark:bg-zinc-900";
    view! {
        <nav aria-label="Sessions" data-testid="sidebar" class="space-y-2">
            <label class="sr-only" for="sidebar-filter">"Filter sessions by name"</label>
            <input
                id="sidebar-filter"
                data-testid="sidebar-filter"
                type="search"
                placeholder="Filter by name"
                autocomplete="off"
                bind:value=typed
                class=field
            />
            <label class="sr-only" for="sidebar-status">"Show sessions"</label>
            <select
                id="sidebar-status"
                data-testid="sidebar-status"
                class=field
                on:change=move |e| {
                    let value = event_target_value(&e);
                    if let Some((s, _, _)) = Show::ALL.iter().find(|(_, v, _)| *v == value) {
                        show.set(*s);
                    }
                }
            >
                {Show::ALL.map(|(_, value, label)| view! { <option value=value>{label}</option> })}
            </select>
            {move || (!feed.loaded.get()).then(|| view! {
                <p class="px-1 text-sm text-zinc-500 dark:text-zinc-400">"Loading sessions…"</p>
            })}
            {move || (feed.loaded.get() && rows.with(Vec::is_empty)).then(|| view! {
                <p data-testid="sidebar-none" class="px-1 text-sm text-zinc-500 dark:text-zinc-400">"No session matches."</p>
            })}
            <ul class="space-y-0.5">
                <For each=move || rows.get() key=|(s, why)| (s.id, s.status, s.name.clone(), s.cost_usd.to_bits(), *why) let:row>
                    <SidebarRow s=row.0 why=row.1 current />
                </For>
            </ul>
        </nav>
    }
}

#[component]
fn SidebarRow(s: Session, why: Option<Why>, current: Signal<SessionId>) -> impl IntoView {
    let id = s.id;
    let here = move || current.get() == id;
    view! {
        <li data-testid="sidebar-row" data-id=id.to_string() data-attention=why.map(Why::as_str)>
            <A
                href=format!("/sessions/{id}")
                attr:aria-current=move || here().then_some("page")
                attr:class=move || format!(
                    "flex items-center gap-2 rounded-md px-2 py-1.5 text-sm {}",
                    if here() { "bg-zinc-200/70 font-medium dark:bg-zinc-800" } else { "hover:bg-zinc-100 dark:hover:bg-zinc-800/60" },
                )
            >
                <span aria-hidden="true" class=format!("h-2 w-2 shrink-0 rounded-full {}", dot(s.status))></span>
                <span class="sr-only">{s.status.as_str().replace('_', " ")}</span>
                <span class="min-w-0 flex-1 truncate" data-testid="sidebar-name">{s.name.clone()}</span>
                {why.map(|w| view! {
                    <span data-testid="sidebar-mark" class="shrink-0 rounded-full bg-red-100 px-1.5 text-xs font-medium text-red-800 dark:bg-red-900/50 dark:text-red-200">
                        {match w { Why::Asks => "asks", Why::Finished => "done", Why::Failed => "failed" }}
                    </span>
                })}
                <span class="shrink-0 text-xs tabular-nums text-zinc-500 dark:text-zinc-400" data-testid="sidebar-cost">{format_cost(s.cost_usd)}</span>
            </A>
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionStatus::*;

    #[test]
    fn filters_by_name_and_status() {
        assert!(matches_name("Fix the Build", " build"));
        assert!(!matches_name("docs", "build"));
        assert!(Show::NeedsYou.keeps(Idle, Some(Why::Finished)));
        assert!(!Show::NeedsYou.keeps(Running, None));
        assert!(Show::Working.keeps(AwaitingPermission, Some(Why::Asks)));
        assert!(Show::Failed.keeps(Interrupted, None));
        assert!(!Show::Idle.keeps(Error, None));
    }
}
