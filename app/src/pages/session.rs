use super::{format_cost, format_time, ErrorNote, Missing, StatusBadge};
use crate::api::{get_session, session_events, DeleteSession};
use crate::model::{AppError, Event, EventKind, Session};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// One session: its settings and counters, and its transcript.
#[component]
pub fn SessionPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let session = Resource::new(id, get_session);
    let events = Resource::new(id, |id| session_events(id, 0));

    view! {
        <Suspense fallback=|| view! { <p class="text-sm text-zinc-500">"Loading session…"</p> }>
            {move || Suspend::new(async move {
                match session.await {
                    Ok(s) => view! { <SessionDetail session=s events=events /> }.into_any(),
                    Err(AppError::NotFound(_)) => view! { <Missing what="Session" /> }.into_any(),
                    Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SessionDetail(
    session: Session,
    events: Resource<Result<Vec<Event>, AppError>>,
) -> impl IntoView {
    let s = session;
    let fields = [
        ("Engine", s.engine.to_string()),
        ("Model", s.model.clone()),
        ("Permission mode", s.permission_mode.to_string()),
        ("Cost", format_cost(s.cost_usd)),
        ("Turns", s.turns.to_string()),
        (
            "Tokens in / out",
            format!("{} / {}", s.input_tokens, s.output_tokens),
        ),
        ("Created", format_time(s.created_at)),
        ("Last activity", format_time(s.updated_at)),
    ];
    view! {
        <leptos_meta::Title text=format!("{} · Paddock", s.name) />
        <article class="space-y-6">
            <header class="flex flex-wrap items-center gap-3">
                <h1 class="min-w-0 break-words text-xl font-semibold" data-testid="session-title">{s.name.clone()}</h1>
                <StatusBadge status=s.status />
                <DeleteButton id=s.id.to_string() name=s.name.clone() />
            </header>
            <dl class="grid grid-cols-2 gap-x-6 gap-y-3 rounded-lg border border-zinc-200 bg-white p-4 text-sm sm:grid-cols-4 dark:border-zinc-800 dark:bg-zinc-900">
                {fields
                    .into_iter()
                    .map(|(label, value)| {
                        view! {
                            <div class="min-w-0">
                                <dt class="text-xs text-zinc-500 dark:text-zinc-400">{label}</dt>
                                <dd class="truncate font-medium">{value}</dd>
                            </div>
                        }
                    })
                    .collect_view()}
            </dl>
            {(!s.system_prompt.is_empty()).then(|| view! {
                <details class="rounded-lg border border-zinc-200 bg-white p-4 text-sm dark:border-zinc-800 dark:bg-zinc-900">
                    <summary class="cursor-pointer font-medium">"System prompt"</summary>
                    <pre class="mt-2 whitespace-pre-wrap break-words font-mono text-xs">{s.system_prompt.clone()}</pre>
                </details>
            })}
            <section aria-labelledby="transcript-heading">
                <h2 id="transcript-heading" class="mb-3 text-sm font-semibold uppercase tracking-wide text-zinc-500 dark:text-zinc-400">
                    "Transcript"
                </h2>
                <Suspense>
                    {move || Suspend::new(async move {
                        match events.await {
                            Ok(list) if list.is_empty() => view! {
                                <p class="text-sm text-zinc-500 dark:text-zinc-400">"Nothing has happened in this session yet."</p>
                            }.into_any(),
                            Ok(list) => view! {
                                <ol class="space-y-2" data-testid="transcript">
                                    {list.into_iter().map(|e| view! { <EventRow event=e /> }).collect_view()}
                                </ol>
                            }.into_any(),
                            Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
        </article>
    }
}

/// Deletes the session (its sandbox and workspace too) after the user
/// confirms, then goes back to the list.
#[component]
fn DeleteButton(id: String, name: String) -> impl IntoView {
    let delete = ServerAction::<DeleteSession>::new();
    let navigate = leptos_router::hooks::use_navigate();
    Effect::new(move |_| {
        if matches!(delete.value().get(), Some(Ok(()))) {
            navigate("/", Default::default());
        }
    });
    let on_click = move |_| {
        let question = format!(
            "Delete session {name:?}? Its sandbox and workspace files are removed for good."
        );
        if window().confirm_with_message(&question).unwrap_or(false) {
            delete.dispatch(DeleteSession { id: id.clone() });
        }
    };
    view! {
        <button
            type="button"
            on:click=on_click
            disabled=move || delete.pending().get()
            class="ml-auto rounded-md border border-red-300 px-3 py-1.5 text-sm font-medium text-red-700 hover:bg-red-50 focus:outline-none focus-visible:ring-2 focus-visible:ring-red-500 disabled:opacity-60 dark:border-red-800 dark:text-red-300 dark:hover:bg-red-950"
        >
            {move || if delete.pending().get() { "Deleting…" } else { "Delete session" }}
        </button>
        {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
    }
}

#[component]
fn EventRow(event: Event) -> impl IntoView {
    let text = match &event.kind {
        EventKind::UserMessage { text }
        | EventKind::AssistantText { text }
        | EventKind::Thinking { text } => text.clone(),
        EventKind::ToolCall { name, input, .. } => format!("{name} {input}"),
        EventKind::ToolResult { output, .. } => output.clone(),
        EventKind::Status { status, message } => match message {
            Some(m) => format!("{status}: {m}"),
            None => status.to_string(),
        },
        EventKind::Usage {
            input_tokens,
            output_tokens,
            cost_usd,
        } => format!(
            "{input_tokens} in / {output_tokens} out · {}",
            format_cost(*cost_usd)
        ),
        EventKind::PermissionRequest { tool, input, .. } => format!("{tool} {input}"),
        EventKind::PermissionDecision {
            decision, reason, ..
        } => match reason {
            Some(r) => format!("{decision}: {r}"),
            None => decision.to_string(),
        },
        EventKind::Error { message } => message.clone(),
    };
    view! {
        <li data-seq=event.seq data-kind=event.kind.name() class="rounded-md border border-zinc-200 bg-white px-3 py-2 text-sm dark:border-zinc-800 dark:bg-zinc-900">
            <span class="mr-2 text-xs text-zinc-500">{event.kind.name().replace('_', " ")}</span>
            <span class="whitespace-pre-wrap break-words">{text}</span>
        </li>
    }
}
