use super::{format_cost, format_time, ErrorNote, StatusBadge};
use crate::api::{list_sessions, CreateSession};
use crate::model::{Session, DEFAULT_MODEL, NAME_MAX_CHARS, SUGGESTED_MODELS};
use leptos::{html, prelude::*};
use leptos_router::components::A;

/// The home page: every session, newest activity first, and a form to start
/// a new one.
#[component]
pub fn SessionsPage() -> impl IntoView {
    let create = ServerAction::<CreateSession>::new();
    let sessions = Resource::new(move || create.version().get(), |_| list_sessions());

    view! {
        <div class="grid gap-6 md:grid-cols-[20rem_1fr]">
            <NewSessionForm create />
            <section aria-labelledby="sessions-heading" class="min-w-0">
                <h2 id="sessions-heading" class="mb-3 text-sm font-semibold uppercase tracking-wide text-zinc-500 dark:text-zinc-400">
                    "Sessions"
                </h2>
                <Transition fallback=|| view! { <p class="text-sm text-zinc-500">"Loading sessions…"</p> }>
                    {move || Suspend::new(async move {
                        match sessions.await {
                            Ok(list) if list.is_empty() => view! { <EmptyState /> }.into_any(),
                            Ok(list) => view! { <SessionList list /> }.into_any(),
                            Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                        }
                    })}
                </Transition>
            </section>
        </div>
    }
}

#[component]
fn NewSessionForm(create: ServerAction<CreateSession>) -> impl IntoView {
    let form = NodeRef::<html::Form>::new();
    let result = create.value();
    // A created session appears in the list; clear the form for the next one.
    Effect::new(move |_| {
        if matches!(result.get(), Some(Ok(_))) {
            if let Some(form) = form.get() {
                form.reset();
            }
        }
    });

    let input =
        "mt-1 block w-full rounded-md border border-zinc-300 bg-white px-3 py-2 text-sm shadow-sm \
                 focus:border-amber-500 focus:outline-none focus:ring-2 focus:ring-amber-500/40 \
                 dark:border-zinc-700 dark:bg-zinc-900";
    view! {
        <section aria-labelledby="new-session-heading" class="h-fit rounded-lg border border-zinc-200 bg-white p-4 shadow-sm dark:border-zinc-800 dark:bg-zinc-900">
            <h2 id="new-session-heading" class="mb-3 font-semibold">"New session"</h2>
            <ActionForm action=create node_ref=form attr:class="space-y-3">
                <div>
                    <label for="session-name" class="text-sm font-medium">"Name"</label>
                    <input
                        id="session-name"
                        name="name"
                        required
                        maxlength=NAME_MAX_CHARS
                        autocomplete="off"
                        placeholder="e.g. Fix the flaky login test"
                        class=input
                    />
                </div>
                <div>
                    <label for="session-model" class="text-sm font-medium">"Model"</label>
                    <input id="session-model" name="model" list="model-suggestions" value=DEFAULT_MODEL class=input />
                    <datalist id="model-suggestions">
                        {SUGGESTED_MODELS.iter().map(|m| view! { <option value=*m></option> }).collect_view()}
                    </datalist>
                </div>
                <div>
                    <label for="session-engine" class="text-sm font-medium">"Engine"</label>
                    <select id="session-engine" name="engine" class=input>
                        <option value="native" selected>"Native (Paddock's own loop)"</option>
                        <option value="claude-code">"Claude Code (the CLI in the sandbox)"</option>
                    </select>
                </div>
                <button
                    type="submit"
                    disabled=move || create.pending().get()
                    class="w-full rounded-md bg-amber-500 px-3 py-2 text-sm font-semibold text-zinc-950 shadow-sm hover:bg-amber-400 focus:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 focus-visible:ring-offset-2 disabled:opacity-60 dark:focus-visible:ring-offset-zinc-900"
                >
                    {move || if create.pending().get() { "Creating…" } else { "Create session" }}
                </button>
                {move || result.get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            </ActionForm>
        </section>
    }
}

#[component]
fn EmptyState() -> impl IntoView {
    view! {
        <div data-testid="sessions-empty" class="rounded-lg border border-dashed border-zinc-300 p-8 text-center dark:border-zinc-700">
            <p class="font-medium">"No sessions yet"</p>
            <p class="mt-1 text-sm text-zinc-500 dark:text-zinc-400">
                "Create one with the form: give it a name, pick a model, and it gets its own closed sandbox."
            </p>
        </div>
    }
}

#[component]
fn SessionList(list: Vec<Session>) -> impl IntoView {
    view! {
        <ul data-testid="session-list" class="divide-y divide-zinc-200 overflow-hidden rounded-lg border border-zinc-200 bg-white dark:divide-zinc-800 dark:border-zinc-800 dark:bg-zinc-900">
            {list
                .into_iter()
                .map(|s| {
                    view! {
                        <li>
                            <A href=format!("/sessions/{}", s.id) attr:class="flex flex-wrap items-center gap-x-4 gap-y-1 px-4 py-3 hover:bg-zinc-50 focus:bg-zinc-50 focus:outline-none dark:hover:bg-zinc-800/60 dark:focus:bg-zinc-800/60">
                                <span class="min-w-0 flex-1 truncate font-medium" data-testid="session-name">{s.name}</span>
                                <StatusBadge status=s.status />
                                <span class="w-full text-xs text-zinc-500 sm:w-auto dark:text-zinc-400">
                                    {format!("{} · {} · {} · {} turns · {}", s.engine, s.model, format_cost(s.cost_usd), s.turns, format_time(s.updated_at))}
                                </span>
                            </A>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
}
