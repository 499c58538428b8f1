//! The composer: the prompt box, Send (or Queue while the agent works) and
//! Stop.

use super::super::ErrorNote;
use crate::api::{send_prompt, StopSession};
use crate::domain::SessionStatus;
use leptos::prelude::*;

/// The prompt box: Enter sends, Shift+Enter is a new line; while the agent
/// works a prompt is queued; Stop (or Esc) interrupts.
#[component]
pub(super) fn Composer(id: String, status: Memo<SessionStatus>) -> impl IntoView {
    let text = RwSignal::new(String::new());
    // Why the last send failed, until the next.
    let failed = RwSignal::new(None::<String>);
    let stop = ServerAction::<StopSession>::new();
    let busy = move || status.get().is_busy();
    // Each send on its own: one that fails gives its text back, before
    // what was typed since, whatever became of the sends around it, so
    // nothing typed is lost.
    let submit = {
        let id = id.clone();
        move || {
            let prompt = text.get_untracked();
            if prompt.trim().is_empty() {
                return;
            }
            text.set(String::new());
            failed.set(None);
            let id = id.clone();
            leptos::task::spawn_local(async move {
                if let Err(e) = send_prompt(id, prompt.clone()).await {
                    text.update(|now| {
                        *now = match now.trim().is_empty() {
                            true => prompt,
                            false => format!("{prompt}\n\n{now}"),
                        }
                    });
                    failed.set(Some(e.to_string()));
                }
            });
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
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let handle = window_event_listener(leptos::ev::keydown, move |e| {
            // Esc in the composer (its prompt, its buttons), on the page or
            // in the transcript stops; in what has its own use for it (a
            // menu, a dialog, another form or field: a reason to deny, a
            // filter, a commit message) it is that one's.
            let its_own = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .is_some_and(|el| {
                    let within = |selector| el.closest(selector).ok().flatten().is_some();
                    let a_menu = within("details") && !within("[data-testid=transcript]");
                    !within("[data-testid=composer]")
                        && (a_menu
                            || within(
                                "dialog, [role=dialog], form, input, select, textarea, \
                                 [contenteditable=true]",
                            ))
                });
            // (An Esc that ends an input method's composing is the
            // composing's: Safari has ended it by then, and says 229.)
            if e.key() == "Escape"
                && !e.is_composing()
                && e.key_code() != 229
                && !e.default_prevented()
                && !its_own
                && status.get_untracked().is_busy()
            {
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
                    // (Not the Enter that picks an input method's word:
                    // Safari has ended the composing by then, and says 229.)
                    if e.key() == "Enter" && !e.shift_key() && !e.is_composing() && e.key_code() != 229 {
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
            {move || failed.get().map(|message| view! { <ErrorNote message /> })}
            {move || stop.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
        </form>
    }
    .into_any()
}
