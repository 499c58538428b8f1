//! The home page: every session, newest activity first, kept current by the
//! page's [`SessionsFeed`](crate::sessions_feed::SessionsFeed), and the form
//! that starts a new one.

use super::form::INPUT;
use super::settings_form::{settings_of, SettingsFields};
use super::{format_cost, DeleteButton, ErrorNote, StatusBadge, When};
use crate::accounts::{Access, Caller, Role};
use crate::api::accounts::whoami;
use crate::api::agents::list_templates;
use crate::api::{get_server_info, list_sessions, CreateSession, SettingsForm};
use crate::domain::{NewSession, Session, NAME_MAX_CHARS};
use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;
use leptos_router::components::A;

#[component]
pub fn SessionsPage() -> impl IntoView {
    let create = ServerAction::<CreateSession>::new();
    let sessions = Resource::new(|| (), |_| list_sessions());
    let me = Resource::new(|| (), |_| whoami());
    // A created session opens at once, ready for its first prompt.
    let navigate = leptos_router::hooks::use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(s)) = create.value().get() {
            navigate(&format!("/sessions/{}", s.id), Default::default());
        }
    });

    view! {
        <div class="grid gap-6 md:grid-cols-[20rem_1fr]">
            // Viewers watch what is shared with them; they create nothing.
            <Suspense>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(Some(c)) if c.role == Role::Viewer => view! {
                            <p data-testid="viewer-note" class="self-start rounded-lg border border-zinc-200 bg-white p-4 text-sm text-zinc-600 dark:border-zinc-800 dark:bg-zinc-900 dark:text-zinc-300">
                                "You are a viewer: you watch the sessions shared with you, and cannot create sessions."
                            </p>
                        }.into_any(),
                        _ => view! { <NewSessionForm create /> }.into_any(),
                    }
                })}
            </Suspense>
            <section aria-labelledby="sessions-heading" class="min-w-0">
                <h2 id="sessions-heading" class="mb-3 text-sm font-semibold uppercase tracking-wide text-zinc-500 dark:text-zinc-400">
                    "Sessions"
                </h2>
                <Suspense fallback=|| view! { <p class="text-sm text-zinc-500">"Loading sessions…"</p> }>
                    {move || Suspend::new(async move {
                        match (sessions.await, me.await) {
                            (Ok(list), me) => {
                                let me = me.ok().flatten();
                                view! { <LiveSessionList initial=list me /> }.into_any()
                            }
                            (Err(e), _) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
        </div>
    }
}

/// The list as rendered, then the page's live copy once it has it; `me`
/// may delete the sessions it owns (an admin, any).
#[component]
fn LiveSessionList(initial: Vec<Session>, me: Option<Caller>) -> impl IntoView {
    let feed = crate::sessions_feed::use_feed();
    let me = StoredValue::new(me);
    let list = move || {
        if feed.loaded.get() {
            feed.sessions.get()
        } else {
            initial.clone()
        }
    };
    let empty = {
        let list = list.clone();
        move || list().is_empty()
    };
    view! {
        <Show when=move || !empty() fallback=|| view! { <EmptyState /> }>
            <ul data-testid="session-list" class="divide-y divide-zinc-200 overflow-hidden rounded-lg border border-zinc-200 bg-white dark:divide-zinc-800 dark:border-zinc-800 dark:bg-zinc-900">
                // What a row shows: its activity, and what its owner may
                // rename or change without activity.
                <For each=list.clone() key=|s| (s.id, s.updated_at, s.status, s.name.clone(), s.model.clone()) let:s>
                    <SessionRow deletable=me.with_value(|me| me.as_ref().and_then(|c| c.access(s.owner, None)) == Some(Access::Own)) s />
                </For>
            </ul>
        </Show>
    }
    .into_any()
}

#[component]
fn SessionRow(s: Session, deletable: bool) -> impl IntoView {
    let name = s.name.clone();
    view! {
        <li class="flex items-center gap-2 pr-3 hover:bg-zinc-50 dark:hover:bg-zinc-800/60" data-testid="session-row" data-id=s.id.to_string()>
            <A href=format!("/sessions/{}", s.id) attr:class="flex min-w-0 flex-1 flex-wrap items-center gap-x-4 gap-y-1 px-4 py-3 focus:bg-zinc-50 focus:outline-none dark:focus:bg-zinc-800/60">
                <span class="min-w-0 flex-1 truncate font-medium" data-testid="session-name">{s.name.clone()}</span>
                <StatusBadge status=s.status />
                {s.trigger.as_ref().map(|t| view! {
                    <span class="rounded bg-sky-100 px-1.5 text-xs text-sky-900 dark:bg-sky-950 dark:text-sky-200" data-testid="session-trigger" title="Started by a delivery to this trigger">
                        {format!("trigger: {}", t.name)}
                    </span>
                })}
                <span class="w-full text-xs text-zinc-500 sm:w-auto dark:text-zinc-400" data-testid="session-meta">
                    {format!("{} · {} · ", s.engine, s.model)}
                    <span data-testid="session-cost">{format_cost(s.cost_usd)}</span>
                    {format!(" · {} turns · ", s.turns)}
                    <When at=s.updated_at />
                </span>
            </A>
            {deletable.then(|| view! { <DeleteButton id=s.id.to_string() name /> })}
        </li>
    }
    .into_any()
}

#[component]
fn NewSessionForm(create: ServerAction<CreateSession>) -> impl IntoView {
    let result = create.value();
    let info = Resource::new(|| (), |_| get_server_info());
    let templates = Resource::new(|| (), |_| list_templates());
    // `/?agent=<id>` (an agent's "Start a session") comes with it chosen.
    let query = leptos_router::hooks::use_query_map();
    let agent = RwSignal::new(query.with_untracked(|q| q.get("agent").unwrap_or_default()));
    // One not among those offered (another person's, deleted, or the list
    // unread) is not chosen: the settings below are, as the form sends.
    Effect::new(move |_| {
        if let Some(listed) = templates.get() {
            let chosen = agent.get_untracked();
            let offered = listed.is_ok_and(|l| l.iter().any(|t| t.id.to_string() == chosen));
            if !chosen.is_empty() && !offered {
                agent.set(String::new());
            }
        }
    });
    // Without JavaScript the browser posts the form to the server function
    // itself. With it, the same fields go through the action, so the page can
    // open the new session; read straight from `FormData`, because Leptos'
    // `ActionForm` would put a query-string decoder into the bundle for it.
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(data) = leptos::web_sys::FormData::new_with_form(&event_target(&ev)) else {
            return;
        };
        let template = data.get("template").as_string().filter(|t| !t.is_empty());
        create.dispatch(CreateSession {
            name: data.get("name").as_string().unwrap_or_default(),
            settings: if template.is_some() {
                SettingsForm::default()
            } else {
                settings_of(&data)
            },
            template,
        });
    };
    view! {
        <section aria-labelledby="new-session-heading" class="h-fit rounded-lg border border-zinc-200 bg-white p-4 shadow-sm dark:border-zinc-800 dark:bg-zinc-900">
            <h2 id="new-session-heading" class="mb-3 font-semibold">"New session"</h2>
            <Suspense>
                {move || Suspend::new(async move {
                    let info = info.await.ok();
                    let runtime = info.as_ref().and_then(|i| i.sandbox_runtime.clone()).map(|r| view! {
                        <p data-testid="sandbox-runtime" class="mb-3 text-xs text-zinc-500 dark:text-zinc-400">
                            {if r == "runsc" { "Sandboxes run under gVisor (runsc): a kernel of its own between the agent and the host.".to_owned() } else { format!("Sandboxes run in Docker containers under the {r} runtime.") }}
                        </p>
                    });
                    let warning = info.and_then(|i| i.model_warning).map(|w| view! {
                        <p role="status" data-testid="model-warning" class="mb-3 rounded-md border border-amber-300 bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-200">{w}</p>
                    });
                    (runtime, warning)
                })}
            </Suspense>
            <form action=CreateSession::PATH method="post" on:submit=submit class="space-y-3">
                <div>
                    <label for="session-name" class="text-sm font-medium">"Name"</label>
                    <input
                        id="session-name"
                        name="name"
                        maxlength=NAME_MAX_CHARS
                        autocomplete="off"
                        placeholder=move || if agent.get().is_empty() { "Untitled session" } else { "Named after the agent" }
                        class=INPUT
                    />
                </div>
                <Suspense>
                    {move || Suspend::new(async move {
                        let templates = templates.await.unwrap_or_default();
                        (!templates.is_empty()).then(|| view! {
                            <div>
                                <label for="session-template" class="text-sm font-medium">"Agent"</label>
                                <select id="session-template" name="template" class=INPUT on:change=move |ev| agent.set(event_target_value(&ev))>
                                    <option value="">"None: the settings below"</option>
                                    {templates.into_iter().map(|t| {
                                        let id = t.id.to_string();
                                        let selected = agent.get_untracked() == id;
                                        view! { <option value=id.clone() selected=selected>{format!("{} (v{})", t.name, t.version)}</option> }
                                    }).collect_view()}
                                </select>
                            </div>
                        })
                    })}
                </Suspense>
                <div class="space-y-3" class:hidden=move || !agent.get().is_empty() data-testid="session-settings">
                    <SettingsFields initial=NewSession::default() prefix="session" />
                </div>
                <p class="text-xs text-zinc-500 dark:text-zinc-400" class:hidden=move || agent.get().is_empty()>
                    "The session gets the agent's settings, as its current version has them."
                </p>
                <button
                    type="submit"
                    disabled=move || create.pending().get()
                    class="w-full rounded-md bg-amber-500 px-3 py-2 text-sm font-semibold text-zinc-950 shadow-sm hover:bg-amber-400 focus:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 focus-visible:ring-offset-2 disabled:opacity-60 dark:focus-visible:ring-offset-zinc-900"
                >
                    {move || if create.pending().get() { "Creating…" } else { "Create session" }}
                </button>
                {move || result.get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            </form>
        </section>
    }
}

#[component]
fn EmptyState() -> impl IntoView {
    view! {
        <div data-testid="sessions-empty" class="rounded-lg border border-dashed border-zinc-300 p-8 text-center dark:border-zinc-700">
            <p class="font-medium">"No sessions yet"</p>
            <p class="mt-1 text-sm text-zinc-500 dark:text-zinc-400">
                "Create one with the form, then describe a task: a Claude agent works on it in its own closed sandbox, and you watch it live."
            </p>
        </div>
    }
}
