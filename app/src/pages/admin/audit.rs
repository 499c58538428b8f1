//! The audit log: security events, newest first, a page at a time.

use super::super::form::{PageTitle, SECONDARY};
use super::super::{format_time, ErrorNote};
use crate::accounts::AuditEntry;
use crate::api::accounts::audit_log;
use leptos::prelude::*;

#[component]
pub fn AuditPage() -> impl IntoView {
    let before = RwSignal::new(None::<i64>);
    let page = Resource::new(move || before.get(), audit_log);
    view! {
        <div class="space-y-4">
            <PageTitle title="Audit log" about="Sign-ins, user and role changes, tokens, credentials, shares and permission decisions." />
            <Suspense fallback=|| view! { <p class="text-sm text-zinc-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(entries) => {
                            let oldest = entries.last().map(|e| e.id);
                            view! {
                                <table class="w-full table-fixed border-collapse overflow-hidden rounded-lg border border-zinc-200 bg-white text-left text-sm dark:border-zinc-800 dark:bg-zinc-900" data-testid="audit-log">
                                    <thead class="bg-zinc-100 text-xs uppercase tracking-wide text-zinc-500 dark:bg-zinc-800">
                                        <tr><th class="w-40 px-3 py-2">"When"</th><th class="w-40 px-3 py-2">"Who"</th><th class="w-44 px-3 py-2">"What"</th><th class="px-3 py-2">"Target and detail"</th><th class="w-32 px-3 py-2">"From"</th></tr>
                                    </thead>
                                    <tbody class="divide-y divide-zinc-200 dark:divide-zinc-800">
                                        {entries.into_iter().map(|e| view! { <Entry e /> }).collect_view()}
                                    </tbody>
                                </table>
                                {oldest.map(|id| view! {
                                    <button type="button" class=SECONDARY on:click=move |_| before.set(Some(id))>"Older entries"</button>
                                })}
                            }.into_any()
                        }
                        Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

#[component]
fn Entry(e: AuditEntry) -> impl IntoView {
    view! {
        <tr data-testid="audit-entry" data-action=e.action.as_str()>
            <td class="px-3 py-2 text-xs tabular-nums">{format_time(e.at)}</td>
            <td class="truncate px-3 py-2">{e.actor}</td>
            <td class="px-3 py-2 font-mono text-xs">{e.action.as_str()}</td>
            <td class="break-words px-3 py-2">{e.target}{(!e.detail.is_empty()).then(|| format!(" · {}", e.detail))}</td>
            <td class="truncate px-3 py-2 text-xs text-zinc-500">{e.address.unwrap_or_default()}</td>
        </tr>
    }
}
