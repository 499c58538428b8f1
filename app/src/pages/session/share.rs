//! Who a session is shared with, the Share form (its owner's and an
//! admin's), and who has it open right now.

use super::super::form::{submitted, INPUT, SECONDARY};
use super::super::ErrorNote;
use crate::accounts::{Access, SessionPeople, Share, ShareLevel, LOGIN_MAX_CHARS};
use crate::api::accounts::ShareSession;
use leptos::prelude::*;

/// How often the list of those watching is refreshed.
#[cfg(feature = "hydrate")]
const WATCHERS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// `people` is the page's: read again here, it also says what the viewer
/// may do now.
#[component]
pub(super) fn People(id: String, people: RwSignal<SessionPeople>) -> impl IntoView {
    let share = ServerAction::<ShareSession>::new();
    let owns = people.with_untracked(|p| p.access == Access::Own);
    // The form is emptied once what it sent is done (a mistyped login
    // stays, to be mended), not by a row's own change.
    let form = NodeRef::<leptos::html::Form>::new();
    let from_form = StoredValue::new(false);
    // A share changes the list; so does the passing of time for watchers.
    Effect::new(move |_| {
        if let Some(Ok(shares)) = share.value().get() {
            people.update(|p| p.shares = shares);
            if from_form.get_value() {
                if let Some(form) = form.get_untracked() {
                    form.reset();
                }
            }
        }
    });
    // Read again at once when what the viewer may see changed (the page
    // reads its sessions list again then: a share changed, or the live
    // connection came back), and every so often for the watchers, though
    // not while the tab is hidden (twenty tabs asked twice a second); never
    // once the session is gone for this reader.
    #[cfg(feature = "hydrate")]
    {
        let id = id.clone();
        let gone = StoredValue::new(false);
        // Reads begun, and the newest whose answer was taken: an older
        // answer come later says less.
        let reads = StoredValue::new((0u64, 0u64));
        let refresh = move || {
            if gone.get_value() {
                return;
            }
            let read = reads.with_value(|(begun, _)| begun + 1);
            reads.update_value(|(begun, _)| *begun = read);
            let id = id.clone();
            leptos::task::spawn_local(async move {
                let answer = crate::api::accounts::get_session_people(id).await;
                // (Nothing to do where the page moved on meanwhile.)
                let older = reads.try_with_value(|(_, taken)| *taken > read);
                if older.unwrap_or(true) {
                    return;
                }
                reads.update_value(|(_, taken)| *taken = read);
                match answer {
                    Ok(fresh) => people.set(fresh),
                    // Unshared (or deleted): nothing here is theirs to do
                    // any more, and the page shows what it holds, read-only.
                    Err(crate::domain::AppError::NotFound(_)) => {
                        gone.set_value(true);
                        people.update(|p| p.access = Access::Watch);
                    }
                    Err(_) => {}
                }
            });
        };
        let reloads = crate::sessions_feed::use_feed().reloads;
        let again = refresh.clone();
        Effect::new(move |before: Option<()>| {
            reloads.track();
            if before.is_some() {
                again();
            }
        });
        if let Ok(handle) = set_interval_with_handle(
            move || {
                if !document().hidden() {
                    refresh();
                }
            },
            WATCHERS_EVERY,
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    let id = StoredValue::new(id);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(field) = submitted(&ev) else { return };
        from_form.set_value(true);
        share.dispatch(ShareSession {
            id: id.get_value(),
            login: field("login").unwrap_or_default(),
            level: field("level").unwrap_or_default(),
        });
    };
    let set_level = move |login: String, level: &str| {
        from_form.set_value(false);
        share.dispatch(ShareSession {
            id: id.get_value(),
            login,
            level: level.to_owned(),
        });
    };
    let row = move |s: Share| {
        let (login, remove_login) = (s.login.clone(), s.login.clone());
        view! {
            <li class="flex flex-wrap items-center gap-2" data-testid="share-row" data-login=s.login.clone()>
                <span class="min-w-0 flex-1 truncate">{s.display_name.clone()} <span class="text-zinc-500">{format!(" ({})", s.login)}</span></span>
                {if owns {
                    view! {
                        <select
                            aria-label=format!("What {} may do", s.login)
                            data-testid="share-level"
                            on:change=move |ev| set_level(login.clone(), &event_target_value(&ev))
                            class="rounded-md border border-zinc-300 bg-white px-2 py-1 text-xs dark:border-zinc-700 dark:bg-zinc-900"
                        >
                            {ShareLevel::ALL.iter().map(|l| view! { <option value=l.as_str() selected=*l == s.level>{l.as_str()}</option> }).collect_view()}
                        </select>
                        <button type="button" data-testid="unshare" class=SECONDARY on:click=move |_| set_level(remove_login.clone(), "none")>"Remove"</button>
                    }.into_any()
                } else {
                    view! { <span class="text-xs text-zinc-500">{s.level.as_str()}</span> }.into_any()
                }}
            </li>
        }
    };
    view! {
        <details class="rounded-lg border border-zinc-200 bg-white px-4 py-2 text-sm dark:border-zinc-800 dark:bg-zinc-900" data-testid="people">
            <summary class="cursor-pointer font-medium">
                {if owns { "Share" } else { "People" }}
                <span class="ml-2 text-xs font-normal text-zinc-500 dark:text-zinc-400" data-testid="watching">
                    {move || people.with(|p| match p.watching.len() {
                        0 => String::new(),
                        _ => format!("Watching now: {}", p.watching.join(", ")),
                    })}
                </span>
            </summary>
            <div class="mt-2 space-y-3">
                <p class="text-xs text-zinc-500 dark:text-zinc-400">
                    {move || people.with(|p| p.owner.clone().map_or_else(|| "No owner (created with sign-in off): admins manage it.".to_owned(), |o| format!("Owner: {o}")))}
                </p>
                <ul class="space-y-2" data-testid="share-list">
                    {move || people.with(|p| p.shares.clone()).into_iter().map(row).collect_view()}
                </ul>
                {owns.then(|| view! {
                    <form node_ref=form on:submit=submit class="flex flex-wrap items-end gap-2" data-testid="share-form">
                        <div class="min-w-40 flex-1">
                            <label for="share-login" class="text-xs font-medium">"Share with (login)"</label>
                            <input id="share-login" name="login" required maxlength=LOGIN_MAX_CHARS autocomplete="off" autocapitalize="none" class=INPUT />
                        </div>
                        <div>
                            <label for="share-level" class="text-xs font-medium">"They may"</label>
                            <select id="share-level" name="level" class=INPUT>
                                <option value="watch">"watch"</option>
                                <option value="operate">"operate (prompt, stop, decide)"</option>
                            </select>
                        </div>
                        <button type="submit" class=SECONDARY disabled=move || share.pending().get()>"Share"</button>
                    </form>
                })}
                {move || share.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            </div>
        </details>
    }
    .into_any()
}
