//! The transcript's cards: prompts, the model's text and thinking, tool
//! calls with their diffs and output, statuses and errors, and the blocks
//! still streaming.

use super::fold::LiveBlock;
use super::permission::PermissionCard;
use super::Html;
use crate::domain::{DeltaKind, EventKind};
use crate::files::format_size;
use crate::transcript::{self, Item, Transcript};
use leptos::prelude::*;

#[component]
pub(super) fn EventView(
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
        EventKind::Refused { explanation } => view! {
            <p role="alert" data-testid="refused" class="rounded-md border border-amber-200 bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:border-amber-900 dark:bg-amber-950 dark:text-amber-200">
                <strong>"The model declined to go on. "</strong>
                {explanation.map(|e| format!("{e} "))}
                "This turn is left out of the conversation from now on: rephrase the request and send it again."
            </p>
        }
        .into_any(),
        EventKind::Workspace { message } => view! {
            <p data-testid="workspace-event" class="rounded-md border border-zinc-200 bg-zinc-100 px-3 py-2 text-xs text-zinc-700 dark:border-zinc-800 dark:bg-zinc-900 dark:text-zinc-300">
                {message}
            </p>
        }
        .into_any(),
        EventKind::Egress { host, port, allowed, sent, received, reason } => {
            let what = if host.is_empty() { "Network".to_owned() } else { format!("Network: {host}:{port}") };
            let outcome = match (allowed, reason) {
                (true, _) => format!("{} sent, {} received", format_size(sent), format_size(received)),
                (false, Some(why)) => format!("refused: {why}"),
                (false, None) => "refused".to_owned(),
            };
            view! {
                <p data-testid="egress-event" data-allowed=allowed.to_string() class=format!(
                    "font-mono text-xs {}",
                    if allowed { "text-zinc-500 dark:text-zinc-400" } else { "text-red-700 dark:text-red-400" },
                )>
                    {what}" · "{outcome}
                </p>
            }
            .into_any()
        }
        EventKind::Terminal {
            number, by, closed, ..
        } => view! {
            <p data-testid="terminal-event" class="font-mono text-xs text-zinc-500 dark:text-zinc-400">
                {match closed {
                    None => format!("Terminal {number} opened by {by}"),
                    Some(why) => format!("Terminal {number} of {by} closed: {why}"),
                }}
            </p>
        }
        .into_any(),
        EventKind::Delivery { trigger, id, verified } => view! {
            <p data-testid="delivery-event" class="rounded-md border border-zinc-200 bg-zinc-100 px-3 py-2 text-xs text-zinc-700 dark:border-zinc-800 dark:bg-zinc-900 dark:text-zinc-300" title=verified>
                {format!("Delivery {id} to the trigger {trigger:?}")}
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
                    <div class="code-block" data-copy-scope>
                        <button type="button" data-copy>"Copy"</button>
                        <pre class="mt-1 max-h-96 overflow-auto whitespace-pre-wrap break-words font-mono text-xs">{o.output}</pre>
                    </div>
                </details>
            })}
        </div>
    }
    .into_any()
}

#[component]
pub(super) fn LiveBlockView(block: LiveBlock) -> impl IntoView {
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
