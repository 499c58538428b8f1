//! A permission request's card: what the agent asks to run, and Allow once,
//! Allow for this session or Deny (with a reason), decided once for every
//! viewer.

use super::super::ErrorNote;
use crate::accounts::Access;
use crate::api::DecidePermission;
use crate::domain::Decision;
use crate::transcript::Transcript;
use leptos::prelude::*;

#[component]
pub(super) fn PermissionCard(
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
    let access = expect_context::<Memo<Access>>();
    let may_decide = move || access.get() >= Access::Operate;
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
    // Opened at the request (a notification's link): it comes into view.
    let card = NodeRef::<leptos::html::Div>::new();
    let hash = leptos_router::hooks::use_location().hash;
    Effect::new(move |_| {
        if decision.with(Option::is_none) && hash.get() == crate::attention::PENDING_ANCHOR {
            if let Some(el) = card.get() {
                el.scroll_into_view();
            }
        }
    });
    view! {
        <div
            node_ref=card
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
                None if !may_decide() => view! {
                    <p data-testid="permission-waiting" class="mt-2 text-sm text-zinc-600 dark:text-zinc-300">
                        "Waiting for someone who works in this session to decide."
                    </p>
                }.into_any(),
                Some((d, why, by)) => view! {
                    <p data-testid="permission-decision" data-decision=d.as_str() class="mt-2 text-sm">
                        <strong>{match d {
                            Decision::Allow => "Allowed once",
                            Decision::AllowSession => "Allowed for this session",
                            Decision::Deny => "Denied",
                            Decision::Expired => "Expired, so it was not run",
                        }}</strong>
                        {by.map(|who| view! { <span data-testid="decided-by">{format!(" by {who}")}</span> })}
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
