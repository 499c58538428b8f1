//! The owner's edit of a session's settings that may change after it was
//! made: name, model, permissions and budget. They hold from the next
//! prompt (the budget from the next model call).

use super::super::form::{submitted, INPUT, PRIMARY, SECONDARY};
use super::super::settings_form::mode_label;
use super::super::ErrorNote;
use crate::api::ChangeSettings;
use crate::domain::{
    AppError, PermissionMode, Session, SessionSettings, MODEL_MAX_CHARS, NAME_MAX_CHARS,
};
use leptos::prelude::*;

#[component]
pub(super) fn SettingsEdit(session: RwSignal<Session>) -> impl IntoView {
    let (open, set_open) = signal(false);
    let (refused, set_refused) = signal(None::<String>);
    let change = ServerAction::<ChangeSettings>::new();
    // The form opens with its first field focused.
    let name_input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(input) = name_input.get() {
            let _ = input.focus();
        }
    });
    Effect::new(move |_| match change.value().get() {
        Some(Ok(changed)) => {
            // The settings only: the page's own count of events (last_seq)
            // stays the stream's to move.
            session.update(|s| SessionSettings::of(&changed).apply(s));
            set_open.set(false);
        }
        Some(Err(e)) => set_refused.set(Some(e.to_string())),
        None => {}
    });
    let save = move |ev: leptos::ev::SubmitEvent| {
        let Some(field) = submitted(&ev) else { return };
        set_refused.set(None);
        let budget = field("budget_usd").unwrap_or_default();
        let budget_usd = match budget.trim() {
            "" => None,
            b => match b.parse::<f64>() {
                Ok(b) => Some(b),
                Err(_) => {
                    set_refused.set(Some(
                        AppError::Invalid(format!("{b:?} is not an amount in USD.")).to_string(),
                    ));
                    return;
                }
            },
        };
        let Some(permission_mode) = field("permission_mode").and_then(|m| m.parse().ok()) else {
            return;
        };
        change.dispatch(ChangeSettings {
            id: session.with_untracked(|s| s.id.to_string()),
            settings: SessionSettings {
                name: field("name").unwrap_or_default(),
                model: field("model").unwrap_or_default(),
                permission_mode,
                budget_usd,
            },
        });
    };
    view! {
        <Show
            when=move || open.get()
            fallback=move || view! {
                <button type="button" data-testid="edit-settings" data-needs-js aria-label="Edit these settings" class=format!("mt-3 {SECONDARY}") on:click=move |_| set_open.set(true)>
                    "Edit"
                </button>
            }
        >
            {move || {
                let s = SessionSettings::of(&session.get_untracked());
                view! {
                    <form
                        data-testid="settings-form"
                        on:submit=save
                        on:keydown=move |e| {
                            // Esc cancels the edit (and stops no agent).
                            if e.key() == "Escape" {
                                e.prevent_default();
                                set_open.set(false);
                            }
                        }
                        class="mt-3 grid gap-3 sm:grid-cols-2"
                    >
                        <div>
                            <label for="edit-name" class="text-sm font-medium">"Name"</label>
                            <input id="edit-name" name="name" maxlength=NAME_MAX_CHARS value=s.name node_ref=name_input class=INPUT />
                        </div>
                        <div>
                            <label for="edit-model" class="text-sm font-medium">"Model"</label>
                            <input id="edit-model" name="model" maxlength=MODEL_MAX_CHARS list="model-suggestions" value=s.model class=INPUT />
                        </div>
                        <div>
                            <label for="edit-mode" class="text-sm font-medium">"Permissions"</label>
                            <select id="edit-mode" name="permission_mode" class=INPUT>
                                {PermissionMode::ALL.iter().map(|m| view! {
                                    <option value=m.as_str() selected=*m == s.permission_mode>{mode_label(*m)}</option>
                                }).collect_view()}
                            </select>
                        </div>
                        <div>
                            <label for="edit-budget" class="text-sm font-medium">"Budget (USD, empty for none)"</label>
                            <input id="edit-budget" name="budget_usd" inputmode="decimal" value=s.budget_usd.map(|b| b.to_string()).unwrap_or_default() class=INPUT />
                        </div>
                        <div class="flex items-center gap-2 sm:col-span-2">
                            <button type="submit" class=PRIMARY disabled=move || change.pending().get()>"Save"</button>
                            <button type="button" class=SECONDARY on:click=move |_| set_open.set(false)>"Cancel"</button>
                            <span class="text-xs text-zinc-500 dark:text-zinc-400">"Holds from the next prompt."</span>
                        </div>
                    </form>
                }
            }}
        </Show>
        {move || refused.get().map(|message| view! { <ErrorNote message /> })}
    }
}
