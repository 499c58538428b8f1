//! What the dashboard's forms share: their look, and reading a submitted
//! form's fields without Leptos' query-string decoder (see the session form).

use crate::accounts::{LOGIN_MAX_CHARS, PASSWORD_MIN_CHARS};
use leptos::prelude::*;

pub(super) const INPUT: &str =
    "mt-1 block w-full rounded-md border border-zinc-300 bg-white px-3 py-2 text-sm shadow-sm \
     focus:border-amber-500 focus:outline-none focus:ring-2 focus:ring-amber-500/40 \
     dark:border-zinc-700 dark:bg-zinc-900";

pub(super) const PRIMARY: &str =
    "rounded-md bg-amber-500 px-3 py-2 text-sm font-semibold text-zinc-950 shadow-sm \
     hover:bg-amber-400 focus:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 \
     focus-visible:ring-offset-2 disabled:opacity-60 dark:focus-visible:ring-offset-zinc-900";

pub(super) const SECONDARY: &str =
    "rounded-md border border-zinc-300 px-3 py-1.5 text-sm font-medium hover:bg-zinc-100 \
     focus:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 disabled:opacity-60 \
     dark:border-zinc-700 dark:hover:bg-zinc-800";

pub(super) const PANEL: &str =
    "rounded-lg border border-zinc-200 bg-white p-4 shadow-sm dark:border-zinc-800 dark:bg-zinc-900";

/// The submitted form's fields, read by name (`None` for a missing one);
/// stops the browser's own submission, which is what works without
/// JavaScript.
pub(super) fn submitted(ev: &leptos::ev::SubmitEvent) -> Option<impl Fn(&str) -> Option<String>> {
    ev.prevent_default();
    let data = leptos::web_sys::FormData::new_with_form(&event_target(ev)).ok()?;
    Some(move |k: &str| data.get(k).as_string())
}

/// How many times an action's `value` has held a success: what a page
/// reads again after a change was made. Not after a refusal, which would
/// rebuild the form it was about and lose what was typed there.
pub(super) fn successes<T, E>(
    value: impl With<Value = Option<Result<T, E>>> + Send + Sync + 'static,
) -> ReadSignal<u32>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    let (count, set) = signal(0u32);
    Effect::new(move |_| {
        if value.with(|v| matches!(v, Some(Ok(_)))) {
            set.update(|n| *n += 1);
        }
    });
    count
}

/// A page's heading and what it is for.
#[component]
pub(super) fn PageTitle(title: &'static str, about: &'static str) -> impl IntoView {
    view! {
        <leptos_meta::Title text=format!("{title} · Paddock") />
        <div class="mb-4">
            <h1 class="text-xl font-semibold">{title}</h1>
            <p class="mt-1 text-sm text-zinc-500 dark:text-zinc-400">{about}</p>
        </div>
    }
}

/// A labelled login field; `autocomplete` is `username` where a person
/// types their own, `off` where an admin types someone else's.
#[component]
pub(super) fn LoginField(
    id: &'static str,
    #[prop(default = "username")] autocomplete: &'static str,
) -> impl IntoView {
    view! {
        <div>
            <label for=id class="text-sm font-medium">"Login"</label>
            <input id=id name="login" required autocomplete=autocomplete autocapitalize="none" maxlength=LOGIN_MAX_CHARS class=INPUT />
        </div>
    }
}

/// A labelled password field: a `new` one being chosen (at least
/// [`PASSWORD_MIN_CHARS`], and the browser may offer one), else the
/// current one.
#[component]
pub(super) fn PasswordField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    new: bool,
) -> impl IntoView {
    let (autocomplete, minlength) = if new {
        ("new-password", Some(PASSWORD_MIN_CHARS))
    } else {
        ("current-password", None)
    };
    view! {
        <div>
            <label for=id class="text-sm font-medium">{label}</label>
            <input id=id name=name type="password" required minlength=minlength autocomplete=autocomplete class=INPUT />
        </div>
    }
}
