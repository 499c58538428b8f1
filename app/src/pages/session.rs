//! One session: its header and counters, the transcript, and the composer.
//!
//! The page is rendered on the server from the store (the newest page of the
//! transcript), so a reload shows the whole recent history at once; once
//! hydrated it subscribes to the session's event stream from the last `seq`
//! it holds. Stored events extend the transcript; deltas feed the blocks
//! still being generated (as plain text), which the stored block replaces
//! when it arrives. The model's Markdown comes rendered by the server, with
//! the event (see [`EventHtml`]).
//! Older events are loaded a page at a time on request, so a transcript of
//! any length renders quickly.

use super::{format_cost, format_time, DeleteButton, ErrorNote, Missing, StatusBadge};
use crate::api::{
    open_session, session_events, DecidePermission, EventPage, SendPrompt, SessionView,
    StopSession, EVENTS_PAGE,
};
use crate::domain::{
    AppError, Decision, Delta, DeltaKind, Event, EventHtml, EventKind, Session, SessionStatus,
};
use crate::live::{self, Link};
use crate::transcript::{self, Item, Transcript};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use std::collections::HashMap;

#[component]
pub fn SessionPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let data = Resource::new(id, open_session);
    view! {
        <Suspense fallback=|| view! { <p class="text-sm text-zinc-500">"Loading session…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => view! { <SessionScreen data=v /> }.into_any(),
                    Err(AppError::NotFound(_)) => view! { <Missing what="Session" /> }.into_any(),
                    Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The rendered Markdown of the events shown, by `seq`.
#[derive(Default)]
struct Html(HashMap<i64, String>);

impl Html {
    fn add(&mut self, html: impl IntoIterator<Item = EventHtml>) {
        self.0.extend(html.into_iter().map(|h| (h.seq, h.html)));
    }
}

/// A block the model is still generating.
#[derive(Clone, Debug, PartialEq)]
struct LiveBlock {
    block: usize,
    kind: DeltaKind,
    text: String,
}

fn is_busy(status: SessionStatus) -> bool {
    matches!(
        status,
        SessionStatus::Starting | SessionStatus::Running | SessionStatus::AwaitingPermission
    )
}

#[component]
fn SessionScreen(data: SessionView) -> impl IntoView {
    let SessionView {
        session: initial,
        page,
    } = data;
    let id = initial.id.to_string();
    let title = initial.name.clone();
    let session = RwSignal::new(initial);
    let events = RwSignal::new(page.events);
    let html = RwSignal::new(Html::default());
    html.update(|h| h.add(page.html));
    let live = RwSignal::new(Vec::<LiveBlock>::new());
    let (link, set_link) = signal(Link::Connecting);
    // The newest stored event the page holds (its events end there).
    let newest = move || session.with_untracked(|s| s.last_seq);

    let apply = move |e: Event| {
        if e.seq <= newest() {
            return; // already shown
        }
        session.update(|s| {
            s.last_seq = e.seq;
            s.updated_at = e.at;
            match &e.kind {
                EventKind::Status { status, .. } => s.status = *status,
                EventKind::Usage {
                    input_tokens,
                    output_tokens,
                    cost_usd,
                } => {
                    s.input_tokens += input_tokens;
                    s.output_tokens += output_tokens;
                    s.cost_usd += cost_usd;
                    s.turns += 1;
                }
                _ => {}
            }
        });
        match &e.kind {
            // The stored block replaces the oldest one still streaming.
            EventKind::AssistantText { .. }
            | EventKind::Thinking { .. }
            | EventKind::ToolCall { .. } => live.update(|l| {
                if !l.is_empty() {
                    l.remove(0);
                }
            }),
            EventKind::Status { status, .. } if !is_busy(*status) => live.set(Vec::new()),
            _ => {}
        }
        events.update(|list| list.push(e));
    };
    let on_delta = move |d: Delta| {
        live.update(
            |blocks| match blocks.iter_mut().find(|b| b.block == d.block) {
                Some(b) => b.text.push_str(&d.text),
                None => {
                    let at = blocks.partition_point(|b| b.block < d.block);
                    blocks.insert(
                        at,
                        LiveBlock {
                            block: d.block,
                            kind: d.kind,
                            text: d.text,
                        },
                    );
                }
            },
        )
    };
    let stream_url = {
        let id = id.clone();
        move || format!("/api/sessions/{id}/events?html=true&after={}", newest())
    };
    live::subscribe(
        stream_url,
        &["event", "html", "delta"],
        move |name, data| match name {
            "event" => {
                if let Ok(e) = serde_json::from_str::<Event>(&data) {
                    apply(e);
                }
            }
            "html" => {
                if let Ok(h) = serde_json::from_str::<EventHtml>(&data) {
                    html.update(|m| m.add([h]));
                }
            }
            _ => {
                if let Ok(d) = serde_json::from_str::<Delta>(&data) {
                    on_delta(d);
                }
            }
        },
        set_link,
    );

    let transcript = Memo::new(move |_| events.with(|e| Transcript::build(e)));
    let status = Memo::new(move |_| session.with(|s| s.status));
    follow_bottom(transcript, live);

    let (id_header, id_earlier, id_items) = (id.clone(), id.clone(), id.clone());
    view! {
        <leptos_meta::Title text=format!("{title} · Paddock") />
        <article class="space-y-4 pb-4">
            <Header session id=id_header link />
            <section aria-labelledby="transcript-heading" class="space-y-3">
                <h2 id="transcript-heading" class="sr-only">"Transcript"</h2>
                <EarlierEvents id=id_earlier events html />
                {move || (events.with(Vec::is_empty) && live.with(Vec::is_empty)).then(|| view! {
                    <p data-testid="transcript-empty" class="rounded-lg border border-dashed border-zinc-300 p-6 text-center text-sm text-zinc-500 dark:border-zinc-700 dark:text-zinc-400">
                        "Nothing here yet. Describe a task below; the agent works on it in this session's sandbox."
                    </p>
                })}
                <ol class="space-y-3" data-testid="transcript">
                    <For
                        each=move || transcript.with(|t| t.items.clone())
                        key=|item: &Item| (item.event.seq, item.queued)
                        let:item
                    >
                        <EventView item transcript html id=id_items.clone() />
                    </For>
                </ol>
                <div aria-live="polite" aria-busy=move || (!live.with(Vec::is_empty)).to_string() data-testid="live">
                    <For each=move || live.get() key=|b: &LiveBlock| (b.block, b.text.len()) let:block>
                        <LiveBlockView block />
                    </For>
                </div>
            </section>
            <Composer id status />
        </article>
    }
}

/// Keeps the newest content in view while the user is at the bottom of the
/// page; scrolling up stops that until they scroll back down.
fn follow_bottom(transcript: Memo<Transcript>, live: RwSignal<Vec<LiveBlock>>) {
    let following = RwSignal::new(true);
    #[cfg(feature = "hydrate")]
    {
        let at_bottom = || {
            let w = window();
            let height = w
                .inner_height()
                .ok()
                .and_then(|h| h.as_f64())
                .unwrap_or(0.0);
            let y = w.scroll_y().unwrap_or(0.0);
            let total = document()
                .document_element()
                .map_or(0.0, |e| f64::from(e.scroll_height()));
            y + height >= total - 120.0
        };
        let handle = window_event_listener(leptos::ev::scroll, move |_| following.set(at_bottom()));
        on_cleanup(move || handle.remove());
    }
    Effect::new(move |_| {
        transcript.track();
        live.track();
        if following.get_untracked() {
            request_animation_frame(|| {
                let total = document()
                    .document_element()
                    .map_or(0, |e| e.scroll_height());
                window().scroll_to_with_x_and_y(0.0, f64::from(total));
            });
        }
    });
}

#[component]
fn Header(session: RwSignal<Session>, id: String, link: ReadSignal<Link>) -> impl IntoView {
    let s = session.get_untracked();
    let settings = [
        ("Engine", s.engine.to_string()),
        ("Model", s.model.clone()),
        ("Permissions", s.permission_mode.to_string()),
        (
            "Budget",
            s.budget_usd
                .map_or_else(|| "none".to_owned(), |b| format!("${b:.2}")),
        ),
        ("Created", format_time(s.created_at)),
    ];
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
                <h1 class="min-w-0 break-words text-xl font-semibold" data-testid="session-title">{s.name.clone()}</h1>
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
                            if link.get() == Link::Live { "bg-emerald-500" } else { "animate-pulse bg-amber-500" },
                        )
                    ></span>
                    {move || link.get().label()}
                </span>
                <DeleteButton id=id name=s.name.clone() then_go_to="/" />
            </div>
            <dl class="grid grid-cols-2 gap-x-6 gap-y-3 rounded-lg border border-zinc-200 bg-white p-4 text-sm sm:grid-cols-4 dark:border-zinc-800 dark:bg-zinc-900">
                {counter("Cost", "cost", Signal::derive(move || format_cost(session.with(|s| s.cost_usd))))}
                {counter("Tokens in / out", "tokens", Signal::derive(move || session.with(|s| format!("{} / {}", s.input_tokens, s.output_tokens))))}
                {counter("Turns", "turns", Signal::derive(move || session.with(|s| s.turns.to_string())))}
                {counter("Last activity", "activity", Signal::derive(move || session.with(|s| format_time(s.updated_at))))}
            </dl>
            <details class="rounded-lg border border-zinc-200 bg-white px-4 py-2 text-sm dark:border-zinc-800 dark:bg-zinc-900">
                <summary class="cursor-pointer font-medium">"Settings"</summary>
                <dl class="mt-2 grid grid-cols-2 gap-x-6 gap-y-2 sm:grid-cols-5">
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
            </details>
        </header>
    }
    .into_any()
}

/// "Show earlier events": loads the page before the oldest one shown.
#[component]
fn EarlierEvents(id: String, events: RwSignal<Vec<Event>>, html: RwSignal<Html>) -> impl IntoView {
    let first = move || events.with(|e| e.first().map_or(1, |e| e.seq));
    let load = Action::new(move |before: &i64| {
        let (id, before) = (id.clone(), *before);
        async move {
            let older: EventPage = session_events(id, (before - 1 - EVENTS_PAGE).max(0)).await?;
            html.update(|h| h.add(older.html));
            events.update(|list| {
                let mut merged: Vec<Event> = older
                    .events
                    .into_iter()
                    .filter(|e| e.seq < before)
                    .collect();
                merged.append(list);
                *list = merged;
            });
            Ok::<(), AppError>(())
        }
    });
    view! {
        {move || (first() > 1).then(|| view! {
            <button
                type="button"
                data-testid="load-earlier"
                on:click=move |_| { load.dispatch(first()); }
                disabled=move || load.pending().get()
                class="w-full rounded-md border border-zinc-200 py-2 text-sm text-zinc-600 hover:bg-zinc-100 focus:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 dark:border-zinc-800 dark:text-zinc-300 dark:hover:bg-zinc-900"
            >
                {move || format!("Show earlier events ({} not shown)", first() - 1)}
            </button>
        })}
        {move || load.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
    }
    .into_any()
}

#[component]
fn EventView(
    item: Item,
    transcript: Memo<Transcript>,
    html: RwSignal<Html>,
    id: String,
) -> impl IntoView {
    let Item { event, queued } = item;
    let seq = event.seq;
    let kind = event.kind.name();
    let body = match event.kind {
        EventKind::UserMessage { text } => view! {
            <div class="ml-auto max-w-[85%] rounded-2xl rounded-br-sm bg-amber-100 px-4 py-2 text-zinc-900 dark:bg-amber-900/40 dark:text-zinc-100">
                {queued.then(|| view! {
                    <span data-testid="queued" class="mb-1 block text-xs font-medium text-amber-800 dark:text-amber-300">"Queued: runs when the current task ends"</span>
                })}
                <p class="whitespace-pre-wrap break-words">{text}</p>
            </div>
        }
        .into_any(),
        // The rendered Markdown arrives before its event; the text is the
        // fallback should it ever be missing.
        EventKind::AssistantText { text } => match html.with_untracked(|h| h.0.get(&seq).cloned()) {
            Some(rendered) => view! {
                <div class="markdown max-w-none break-words" inner_html=rendered></div>
            }
            .into_any(),
            None => view! { <p class="whitespace-pre-wrap break-words">{text}</p> }.into_any(),
        },
        EventKind::Thinking { text } => view! {
            <details class="text-sm text-zinc-500 dark:text-zinc-400">
                <summary class="cursor-pointer select-none">"Thinking"</summary>
                <p class="mt-1 whitespace-pre-wrap break-words border-l-2 border-zinc-200 pl-3 italic dark:border-zinc-700">{text}</p>
            </details>
        }
        .into_any(),
        EventKind::ToolCall { id: call, name, input } => {
            view! { <ToolCard call name input transcript /> }.into_any()
        }
        EventKind::PermissionRequest { request_id, tool, input, .. } => {
            view! { <PermissionCard session=id request_id tool input transcript /> }.into_any()
        }
        EventKind::Status { status, message } => view! {
            <p data-status=status.as_str() class="text-center text-xs text-zinc-500 dark:text-zinc-400">
                {message.unwrap_or_else(|| status.to_string())}
            </p>
        }
        .into_any(),
        EventKind::Error { message } => view! {
            <p role="alert" class="rounded-md border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-300">
                <strong>"Error: "</strong>{message}
            </p>
        }
        .into_any(),
        EventKind::ToolResult { .. } | EventKind::PermissionDecision { .. } | EventKind::Usage { .. } => ().into_any(),
    };
    view! { <li data-seq=seq data-kind=kind class="flex flex-col">{body}</li> }
}

/// Longest diff shown in a card; the full input is one click away.
const DIFF_LINES: usize = 200;

#[component]
fn ToolCard(
    call: String,
    name: String,
    input: serde_json::Value,
    transcript: Memo<Transcript>,
) -> impl IntoView {
    let summary = transcript::summary(&input);
    let diff = transcript::file_diff(&name, &input);
    let pretty = serde_json::to_string_pretty(&input).unwrap_or_default();
    let outcome = {
        let call = call.clone();
        Memo::new(move |_| transcript.with(|t| t.outcomes.get(&call).cloned()))
    };
    let cut_off = Memo::new(move |_| transcript.with(|t| t.cut_off.contains(&call)));
    let (tool, title) = (name.clone(), summary.clone());
    view! {
        <div
            data-testid="tool-card"
            data-tool=tool
            data-state=move || match outcome.get() {
                None if cut_off.get() => "cut-off",
                None => "running",
                Some(o) if o.is_error => "error",
                Some(_) => "done",
            }
            class=move || format!(
                "overflow-hidden rounded-lg border bg-white text-sm dark:bg-zinc-900 {}",
                if outcome.get().is_some_and(|o| o.is_error) { "border-red-300 dark:border-red-900" } else { "border-zinc-200 dark:border-zinc-800" },
            )
        >
            <div class="flex min-w-0 items-center gap-2 border-b border-zinc-100 px-3 py-2 dark:border-zinc-800">
                <span class="shrink-0 rounded bg-zinc-100 px-1.5 py-0.5 font-mono text-xs font-semibold dark:bg-zinc-800">{name}</span>
                <span class="min-w-0 flex-1 truncate font-mono text-xs text-zinc-600 dark:text-zinc-300" title=title>{summary}</span>
                {move || match outcome.get() {
                    None if cut_off.get() => view! { <span class="shrink-0 text-xs text-zinc-500">"interrupted"</span> }.into_any(),
                    None => view! { <span class="shrink-0 animate-pulse text-xs text-sky-600 dark:text-sky-400">"running…"</span> }.into_any(),
                    Some(o) if o.is_error => view! { <span class="shrink-0 text-xs font-medium text-red-700 dark:text-red-400">"failed"</span> }.into_any(),
                    Some(_) => view! { <span class="shrink-0 text-xs text-emerald-700 dark:text-emerald-400">"done"</span> }.into_any(),
                }}
            </div>
            {diff.map(|lines| {
                let hidden = lines.len().saturating_sub(DIFF_LINES);
                view! {
                    <pre data-testid="diff" class="max-h-96 overflow-auto py-1 font-mono text-xs leading-5">
                        {lines.into_iter().take(DIFF_LINES).map(|l| {
                            let tone = match l.sign {
                                '+' => "bg-emerald-50 text-emerald-900 dark:bg-emerald-950/60 dark:text-emerald-200",
                                '-' => "bg-red-50 text-red-900 dark:bg-red-950/60 dark:text-red-200",
                                _ => "text-zinc-600 dark:text-zinc-400",
                            };
                            view! { <div class=format!("whitespace-pre-wrap break-all px-3 {tone}")>{format!("{} {}", l.sign, l.text)}</div> }
                        }).collect_view()}
                        {(hidden > 0).then(|| view! { <div class="px-3 text-zinc-500">{format!("… {hidden} more lines (see the input)")}</div> })}
                    </pre>
                }
            })}
            <details class="border-t border-zinc-100 px-3 py-1.5 dark:border-zinc-800">
                <summary class="cursor-pointer select-none text-xs text-zinc-500 dark:text-zinc-400">"Input"</summary>
                <pre class="mt-1 max-h-96 overflow-auto whitespace-pre-wrap break-words font-mono text-xs">{pretty}</pre>
            </details>
            {move || outcome.get().map(|o| view! {
                <details open=o.is_error class="border-t border-zinc-100 px-3 py-1.5 dark:border-zinc-800" data-testid="tool-output">
                    <summary class=format!("cursor-pointer select-none text-xs {}", if o.is_error { "font-medium text-red-700 dark:text-red-400" } else { "text-zinc-500 dark:text-zinc-400" })>
                        {if o.is_error { "Error output" } else { "Output" }}
                        {o.truncated.then(|| view! { <span class="ml-2 rounded bg-amber-100 px-1 text-amber-800 dark:bg-amber-900/50 dark:text-amber-300">"truncated"</span> })}
                    </summary>
                    <pre class="mt-1 max-h-96 overflow-auto whitespace-pre-wrap break-words font-mono text-xs">{o.output}</pre>
                </details>
            })}
        </div>
    }
    .into_any()
}

#[component]
fn PermissionCard(
    session: String,
    request_id: String,
    tool: String,
    input: serde_json::Value,
    transcript: Memo<Transcript>,
) -> impl IntoView {
    let decision = {
        let request_id = request_id.clone();
        Memo::new(move |_| transcript.with(|t| t.decisions.get(&request_id).cloned()))
    };
    let decide = ServerAction::<DecidePermission>::new();
    let reason = RwSignal::new(String::new());
    let heading = format!("permission-{request_id}");
    let reason_id = format!("reason-{request_id}");
    let labelled_by = heading.clone();
    let send = move |d: Decision| {
        let reason = reason.get_untracked();
        decide.dispatch(DecidePermission {
            id: session.clone(),
            request_id: request_id.clone(),
            decision: d,
            reason: (!reason.trim().is_empty()).then_some(reason),
        });
    };
    let send = StoredValue::new(send);
    let button = move |label: &'static str,
                       testid: &'static str,
                       d: Decision,
                       tone: &'static str| {
        view! {
            <button
                type="button"
                data-testid=testid
                disabled=move || decide.pending().get()
                on:click=move |_| send.with_value(|f| f(d))
                class=format!("rounded-md px-3 py-1.5 text-sm font-medium focus:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 focus-visible:ring-offset-1 disabled:opacity-60 {tone}")
            >
                {label}
            </button>
        }
    };
    let pretty = serde_json::to_string_pretty(&input).unwrap_or_default();
    view! {
        <div
            role="group"
            aria-labelledby=labelled_by
            data-testid="permission-card"
            data-decided=move || decision.get().is_some().to_string()
            class="rounded-lg border border-amber-300 bg-amber-50 p-3 text-sm dark:border-amber-800 dark:bg-amber-950/40"
        >
            <p id=heading class="font-medium">
                "The agent asks to run "<code class="rounded bg-amber-100 px-1 font-mono dark:bg-amber-900/60">{tool}</code>
            </p>
            <pre class="mt-2 max-h-64 overflow-auto whitespace-pre-wrap break-words rounded bg-white/70 p-2 font-mono text-xs dark:bg-zinc-900/70">{pretty}</pre>
            {move || match decision.get() {
                Some((d, why)) => view! {
                    <p data-testid="permission-decision" data-decision=d.as_str() class="mt-2 text-sm">
                        <strong>{match d {
                            Decision::Allow => "Allowed once",
                            Decision::AllowSession => "Allowed for this session",
                            Decision::Deny => "Denied",
                            Decision::Expired => "Expired: nobody decided in time, so it was denied",
                        }}</strong>
                        {why.map(|r| format!(" — {r}"))}
                    </p>
                }.into_any(),
                None => view! {
                    <div class="mt-3 flex flex-wrap items-center gap-2">
                        {button("Allow once", "allow", Decision::Allow, "bg-emerald-600 text-white hover:bg-emerald-500")}
                        {button("Allow for this session", "allow-session", Decision::AllowSession, "border border-emerald-600 text-emerald-800 hover:bg-emerald-50 dark:text-emerald-300 dark:hover:bg-emerald-950")}
                        <label class="sr-only" for=reason_id.clone()>"Reason for denying (optional)"</label>
                        <input
                            id=reason_id.clone()
                            data-testid="deny-reason"
                            placeholder="Reason (optional)"
                            bind:value=reason
                            class="min-w-0 flex-1 rounded-md border border-zinc-300 bg-white px-2 py-1.5 text-sm dark:border-zinc-700 dark:bg-zinc-900"
                        />
                        {button("Deny", "deny", Decision::Deny, "bg-red-600 text-white hover:bg-red-500")}
                    </div>
                }.into_any(),
            }}
            {move || decide.value().get().and_then(Result::err).map(|e| view! { <div class="mt-2"><ErrorNote message=e.to_string() /></div> })}
        </div>
    }
    .into_any()
}

#[component]
fn LiveBlockView(block: LiveBlock) -> impl IntoView {
    let cursor = view! { <span aria-hidden="true" class="cursor ml-0.5 inline-block h-4 w-2 translate-y-0.5 animate-pulse bg-zinc-400"></span> };
    match block.kind {
        DeltaKind::Text => view! {
            <p data-testid="streaming" class="whitespace-pre-wrap break-words">
                {block.text}{cursor}
            </p>
        }
        .into_any(),
        DeltaKind::Thinking => view! {
            <p data-testid="streaming" class="whitespace-pre-wrap break-words border-l-2 border-zinc-200 pl-3 text-sm italic text-zinc-500 dark:border-zinc-700">
                {block.text}{cursor}
            </p>
        }
        .into_any(),
        DeltaKind::ToolInput => view! {
            <p data-testid="streaming" class="truncate font-mono text-xs text-zinc-500">
                "Preparing a tool call… "{block.text}{cursor}
            </p>
        }
        .into_any(),
    }
}

/// The prompt box: Enter sends, Shift+Enter is a new line; while the agent
/// works a prompt is queued; Stop (or Esc) interrupts.
#[component]
fn Composer(id: String, status: Memo<SessionStatus>) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let send = ServerAction::<SendPrompt>::new();
    let stop = ServerAction::<StopSession>::new();
    let busy = move || is_busy(status.get());
    let last_sent = StoredValue::new(String::new());
    let submit = {
        let id = id.clone();
        move || {
            let prompt = text.get_untracked();
            if prompt.trim().is_empty() {
                return;
            }
            last_sent.set_value(prompt.clone());
            send.dispatch(SendPrompt {
                id: id.clone(),
                text: prompt,
            });
            text.set(String::new());
        }
    };
    let submit = StoredValue::new(submit);
    let stop_now = {
        let id = id.clone();
        move || {
            stop.dispatch(StopSession { id: id.clone() });
        }
    };
    let stop_now = StoredValue::new(stop_now);
    // A failed send gives the text back, so nothing typed is lost.
    Effect::new(move |_| {
        if let Some(Err(_)) = send.value().get() {
            if text.get_untracked().is_empty() {
                text.set(last_sent.get_value());
            }
        }
    });
    #[cfg(feature = "hydrate")]
    {
        let handle = window_event_listener(leptos::ev::keydown, move |e| {
            if e.key() == "Escape" && is_busy(status.get_untracked()) {
                stop_now.with_value(|f| f());
            }
        });
        on_cleanup(move || handle.remove());
    }
    view! {
        <form
            data-testid="composer"
            class="sticky bottom-0 -mx-4 space-y-2 border-t border-zinc-200 bg-zinc-50/95 px-4 pb-4 pt-3 backdrop-blur dark:border-zinc-800 dark:bg-zinc-950/95"
            on:submit=move |e| {
                e.prevent_default();
                submit.with_value(|f| f());
            }
        >
            <label for="prompt" class="sr-only">"Prompt"</label>
            <textarea
                id="prompt"
                name="text"
                rows="3"
                placeholder=move || if busy() { "The agent is working: a prompt sent now is queued" } else { "Describe a task… (Enter to send, Shift+Enter for a new line)" }
                prop:value=move || text.get()
                on:input=move |e| text.set(event_target_value(&e))
                on:keydown=move |e| {
                    if e.key() == "Enter" && !e.shift_key() && !e.is_composing() {
                        e.prevent_default();
                        submit.with_value(|f| f());
                    }
                }
                class="block w-full resize-y rounded-lg border border-zinc-300 bg-white px-3 py-2 text-sm shadow-sm focus:border-amber-500 focus:outline-none focus:ring-2 focus:ring-amber-500/40 dark:border-zinc-700 dark:bg-zinc-900"
            ></textarea>
            <div class="flex flex-wrap items-center gap-2">
                <button
                    type="submit"
                    data-testid="send"
                    class="rounded-md bg-amber-500 px-4 py-1.5 text-sm font-semibold text-zinc-950 shadow-sm hover:bg-amber-400 focus:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 focus-visible:ring-offset-2 dark:focus-visible:ring-offset-zinc-950"
                >
                    {move || if busy() { "Queue" } else { "Send" }}
                </button>
                {move || busy().then(|| view! {
                    <button
                        type="button"
                        data-testid="stop"
                        on:click=move |_| stop_now.with_value(|f| f())
                        class="rounded-md border border-zinc-300 px-4 py-1.5 text-sm font-medium hover:bg-zinc-100 focus:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 dark:border-zinc-700 dark:hover:bg-zinc-800"
                    >
                        "Stop"<span class="ml-1 text-xs text-zinc-500">"Esc"</span>
                    </button>
                })}
                <span class="ml-auto text-xs text-zinc-500 dark:text-zinc-400" aria-live="polite">
                    {move || if busy() { "Working…" } else { "" }}
                </span>
            </div>
            {move || send.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            {move || stop.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
        </form>
    }
    .into_any()
}
