//! The session's Terminal view (`?view=terminal`): shells in its sandbox,
//! a tab each, for those who may operate it (and never in a read-only
//! session). Each is xterm.js over the terminal WebSocket
//! (`GET /api/sessions/{id}/terminal`), through `public/terminal.js` (in
//! every page's head), which loads xterm.js the first time one opens. Terminals open when asked and
//! stay open while the page does, whichever of its views is shown; the
//! transcript says who opened each and why it closed.

use super::super::form::SECONDARY;
use crate::domain::SessionId;
use leptos::prelude::*;

/// A terminal opened on this page.
#[derive(Clone)]
struct Opened {
    /// Its place among the page's tabs, from 1.
    tab: u32,
    /// Why it closed, once it has.
    closed: RwSignal<Option<String>>,
}

#[component]
pub(super) fn TerminalView(id: SessionId, shown: Memo<bool>) -> impl IntoView {
    let opened = RwSignal::new(Vec::<Opened>::new());
    let current = RwSignal::new(0u32);
    let next = StoredValue::new(1u32);
    let open = move |_| {
        let tab = next.get_value();
        next.set_value(tab + 1);
        opened.update(|list| {
            list.push(Opened {
                tab,
                closed: RwSignal::new(None),
            })
        });
        current.set(tab);
    };
    let remove = move |tab: u32| {
        opened.update(|list| list.retain(|o| o.tab != tab));
        if current.get_untracked() == tab {
            current.set(opened.with_untracked(|l| l.last().map_or(0, |o| o.tab)));
        }
    };
    view! {
        <section aria-labelledby="terminal-heading" class="space-y-2" class:hidden=move || !shown.get() data-testid="terminal-view">
            <h2 id="terminal-heading" class="sr-only">"Terminal"</h2>
            <div class="flex flex-wrap items-center gap-2">
                <div role="tablist" aria-label="Terminals" class="flex flex-wrap gap-1">
                    <For each=move || opened.get() key=|o: &Opened| o.tab let:o>
                        <span class="inline-flex items-center rounded-md border border-zinc-200 text-sm dark:border-zinc-800">
                            <button
                                role="tab"
                                data-testid="terminal-tab"
                                aria-selected=move || (current.get() == o.tab).to_string()
                                class=move || if current.get() == o.tab { "px-2 py-1 font-semibold" } else { "px-2 py-1 text-zinc-500 dark:text-zinc-400" }
                                on:click=move |_| current.set(o.tab)
                            >
                                {format!("Shell {}", o.tab)}
                                {move || o.closed.get().is_some().then_some(" (closed)")}
                            </button>
                            <button
                                data-testid="terminal-close"
                                aria-label=format!("Close shell {}", o.tab)
                                class="px-1.5 py-1 text-zinc-500 hover:text-zinc-900 dark:text-zinc-400 dark:hover:text-zinc-100"
                                on:click=move |_| remove(o.tab)
                            >
                                "×"
                            </button>
                        </span>
                    </For>
                </div>
                <button data-testid="new-terminal" class=SECONDARY on:click=open>"New terminal"</button>
            </div>
            {move || opened.with(Vec::is_empty).then(|| view! {
                <p data-testid="terminal-empty" class="rounded-lg border border-dashed border-zinc-300 p-6 text-center text-sm text-zinc-500 dark:border-zinc-700 dark:text-zinc-400">
                    "A terminal is a shell in this session's sandbox: its user, its workspace, no network beyond what the session allows. What happens in it is the session's too."
                </p>
            })}
            <For each=move || opened.get() key=|o: &Opened| o.tab let:o>
                <Pane id opened=o current />
            </For>
        </section>
    }
}

/// One terminal: xterm.js in a box, opened as the pane is first shown and
/// closed when it goes (its tab closed, or the page left).
#[component]
fn Pane(id: SessionId, opened: Opened, current: RwSignal<u32>) -> impl IntoView {
    let Opened { tab, closed } = opened;
    let screen = NodeRef::<leptos::html::Div>::new();
    // Opened in the browser only.
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let handle = StoredValue::new_local(None::<glue::Handle>);
        Effect::new(move |_| {
            let Some(element) = screen.get() else { return };
            if handle.with_value(Option::is_some) {
                return;
            }
            let on_closed = wasm_bindgen::closure::Closure::once_into_js(move |why: String| {
                let _ = closed.try_set(Some(why));
            });
            let element: &web_sys::HtmlElement = element.unchecked_ref();
            match glue::open(element, &id.to_string(), &on_closed) {
                Ok(opened) => handle.set_value(Some(opened)),
                Err(_) => closed.set(Some("the terminal's script did not load".into())),
            }
        });
        Effect::new(move |_| {
            if current.get() == tab {
                handle.with_value(|h| h.as_ref().map(glue::Handle::focus));
            }
        });
        on_cleanup(move || {
            handle.with_value(|h| h.as_ref().map(glue::Handle::close));
        });
    }
    view! {
        <div class="space-y-1" class:hidden=move || current.get() != tab data-testid="terminal-pane">
            {move || closed.get().map(|why| view! {
                <p role="status" data-testid="terminal-closed" class="text-xs text-zinc-600 dark:text-zinc-300">
                    {format!("This terminal closed: {why}.")}
                </p>
            })}
            <div node_ref=screen data-testid="terminal-screen" class="h-[60vh] min-h-64 overflow-hidden rounded-lg bg-black p-1"></div>
        </div>
    }
}

/// `public/terminal.js`, as the page calls it.
#[cfg(feature = "hydrate")]
mod glue {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        /// An open terminal.
        pub type Handle;

        /// Opens session `id`'s terminal in `element`; `on_closed(why)` is
        /// called once, when it ends. Fails while the script is not loaded.
        #[wasm_bindgen(js_namespace = paddockTerminal, catch)]
        pub fn open(
            element: &web_sys::HtmlElement,
            id: &str,
            on_closed: &JsValue,
        ) -> Result<Handle, JsValue>;

        #[wasm_bindgen(method)]
        pub fn close(this: &Handle);

        #[wasm_bindgen(method)]
        pub fn focus(this: &Handle);
    }
}
