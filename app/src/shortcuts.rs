//! Keyboard shortcuts, on every page, listed in a help that `?` (or the
//! account menu's "Keyboard shortcuts") opens. Keys typed into a field are
//! the field's; a shortcut takes no modifier. The help turns the single-key
//! shortcuts off and on again (remembered by the browser), for those whose
//! speech input or habits trip them.

use leptos::prelude::*;

/// The shortcuts and what they do, as the help lists them.
const KEYS: &[(&str, &str)] = &[
    ("n", "New session"),
    ("a", "Open the session that needs you most (asking first)"),
    ("/", "Write a prompt (on a session's page)"),
    ("Esc", "Stop the agent (on a session's page)"),
    ("?", "Show or hide this help (Esc closes it)"),
];

/// How long a shortcut's note ("no session is waiting") stays.
#[cfg(feature = "hydrate")]
const NOTE_FOR: std::time::Duration = std::time::Duration::from_secs(4);

/// Where the browser remembers that single-key shortcuts are off.
#[cfg(feature = "hydrate")]
const OFF: &str = "paddock.shortcuts.off";

/// `help`: whether the help is open (the account menu opens it too).
#[component]
pub fn Shortcuts(help: RwSignal<bool>) -> impl IntoView {
    let (help, set_help) = help.split();
    // On until the page runs and reads what the browser remembers.
    let keys_on = RwSignal::new(true);
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    let (note, set_note) = signal(None::<&'static str>);
    #[cfg(feature = "hydrate")]
    {
        let navigate = leptos_router::hooks::use_navigate();
        let attention = crate::attention::use_attention();
        let storage = || window().local_storage().ok().flatten();
        Effect::new(move |_| {
            let off = storage().and_then(|s| s.get_item(OFF).ok().flatten());
            keys_on.set(off.is_none());
            browser::listen(
                attention,
                keys_on,
                help,
                set_help,
                set_note,
                navigate.clone(),
            )
        });
        Effect::new(move |was: Option<bool>| {
            let on = keys_on.get();
            if was.is_some_and(|was| was != on) {
                if let Some(s) = storage() {
                    let _ = if on {
                        s.remove_item(OFF)
                    } else {
                        s.set_item(OFF, "1")
                    };
                }
            }
            on
        });
    }
    let close = move |_| set_help.set(false);
    // The help opens with focus on its Close button.
    let close_button = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if let Some(button) = close_button.get() {
            let _ = button.focus();
        }
    });
    view! {
        <Show when=move || help.get()>
            <div
                class="fixed inset-0 z-50 flex items-center justify-center bg-black/40 p-4"
                on:click=close
            >
                <div
                    role="dialog"
                    aria-modal="true"
                    aria-labelledby="shortcuts-title"
                    data-testid="shortcuts-help"
                    class="w-full max-w-sm rounded-lg border border-zinc-200 bg-white p-5 shadow-xl dark:border-zinc-700 dark:bg-zinc-900"
                    on:click=|e| e.stop_propagation()
                >
                    <h2 id="shortcuts-title" class="text-base font-semibold">"Keyboard shortcuts"</h2>
                    <dl class="mt-3 space-y-2 text-sm">
                        {KEYS.iter().map(|(key, what)| view! {
                            <div class="flex items-center gap-3">
                                <dt class="w-10"><kbd class="rounded border border-zinc-300 bg-zinc-50 px-1.5 py-0.5 font-mono text-xs dark:border-zinc-600 dark:bg-zinc-800">{*key}</kbd></dt>
                                <dd>{*what}</dd>
                            </div>
                        }).collect_view()}
                    </dl>
                    <label class="mt-4 flex items-center gap-2 text-sm">
                        <input type="checkbox" data-testid="single-keys" bind:checked=keys_on />
                        "Single-key shortcuts (n, a, /, ?)"
                    </label>
                    <button
                        type="button"
                        node_ref=close_button
                        on:click=close
                        class="mt-4 rounded-md border border-zinc-300 px-3 py-1.5 text-sm font-medium hover:bg-zinc-50 dark:border-zinc-700 dark:hover:bg-zinc-800"
                    >
                        "Close"
                    </button>
                </div>
            </div>
        </Show>
        {move || note.get().map(|text| view! {
            <p
                role="status"
                data-testid="shortcut-note"
                class="fixed bottom-4 left-1/2 z-50 -translate-x-1/2 rounded-md bg-zinc-900 px-3 py-2 text-sm text-zinc-100 shadow-lg dark:bg-zinc-100 dark:text-zinc-900"
            >
                {text}
            </p>
        })}
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::NOTE_FOR;
    use crate::attention::{Attention, Why};
    use leptos::prelude::*;
    use leptos_router::NavigateOptions;
    use std::time::Duration;
    use wasm_bindgen::prelude::*;
    use web_sys::{HtmlElement, KeyboardEvent};

    /// Whether a key pressed there is for the field, not a shortcut.
    fn typing(e: &KeyboardEvent) -> bool {
        e.target()
            .and_then(|t| t.dyn_into::<HtmlElement>().ok())
            .is_some_and(|el| {
                matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT")
                    || el.is_content_editable()
            })
    }

    /// Focuses the element with `id` once the page shows it (after a
    /// navigation), trying for a few seconds.
    fn focus_when_shown(id: &'static str, tries: u32) {
        match document()
            .get_element_by_id(id)
            .and_then(|el| el.dyn_into::<HtmlElement>().ok())
        {
            Some(el) => {
                let _ = el.focus();
            }
            None if tries > 0 => {
                set_timeout(
                    move || focus_when_shown(id, tries - 1),
                    Duration::from_millis(50),
                );
            }
            None => {}
        }
    }

    pub fn listen(
        attention: Attention,
        keys_on: RwSignal<bool>,
        help: ReadSignal<bool>,
        set_help: WriteSignal<bool>,
        set_note: WriteSignal<Option<&'static str>>,
        navigate: impl Fn(&str, NavigateOptions) + Clone + 'static,
    ) {
        let say = move |text: &'static str| {
            set_note.set(Some(text));
            set_timeout(move || set_note.set(None), NOTE_FOR);
        };
        let on_key = Closure::<dyn FnMut(KeyboardEvent)>::new(move |e: KeyboardEvent| {
            if e.ctrl_key() || e.meta_key() || e.alt_key() || e.is_composing() || e.repeat() {
                return;
            }
            if e.key() == "Escape" {
                if help.get_untracked() {
                    // Closes the help, and only that (not a run too).
                    e.stop_propagation();
                    set_help.set(false);
                }
                return;
            }
            if typing(&e) || !keys_on.get_untracked() {
                return;
            }
            match e.key().as_str() {
                "?" => set_help.update(|open| *open = !*open),
                "n" => {
                    e.prevent_default();
                    set_help.set(false);
                    if document().get_element_by_id("session-name").is_none() {
                        navigate("/", NavigateOptions::default());
                    }
                    focus_when_shown("session-name", 60);
                }
                "/" => {
                    if document().get_element_by_id("prompt").is_some() {
                        e.prevent_default();
                        focus_when_shown("prompt", 0);
                    }
                }
                "a" => {
                    e.prevent_default();
                    set_help.set(false);
                    match attention.list.with_untracked(|l| l.first().copied()) {
                        Some((id, why)) => {
                            let at = if why == Why::Asks {
                                crate::attention::PENDING_ANCHOR
                            } else {
                                ""
                            };
                            navigate(&format!("/sessions/{id}{at}"), NavigateOptions::default());
                        }
                        None => say("No session is waiting for you."),
                    }
                }
                _ => {}
            }
        });
        let _ =
            document().add_event_listener_with_callback("keydown", on_key.as_ref().unchecked_ref());
        // The page's own listener, for as long as the page lives.
        on_key.forget();
    }
}
