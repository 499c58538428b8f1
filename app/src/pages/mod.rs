//! The dashboard's pages.

mod account;
mod admin;
mod agent_triggers;
mod agents;
mod form;
mod notifications;
mod session;
mod sessions;
mod settings_form;
mod sidebar;
mod signin;
mod when;

pub use account::{AccountPage, CredentialsPage, TokensPage};
pub use admin::{AuditPage, UsersPage};
pub use agents::{AgentPage, AgentsPage};
pub use session::SessionPage;
pub use sessions::SessionsPage;
pub use signin::{SetupPage, SignInPage};
pub use when::provide_clock;
use when::When;

use crate::api::DeleteSession;
use crate::domain::SessionStatus;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(options) = use_context::<leptos_axum::ResponseOptions>() {
        options.set_status(http::StatusCode::NOT_FOUND);
    }
    view! { <Missing what="Page" /> }
}

/// The body of a "not found" page, shared by unknown routes and unknown ids.
#[component]
fn Missing(what: &'static str) -> impl IntoView {
    view! {
        <div class="rounded-lg border border-zinc-200 bg-white p-8 text-center dark:border-zinc-800 dark:bg-zinc-900">
            <h1 class="text-lg font-semibold">{what} " not found"</h1>
            <p class="mt-2 text-sm text-zinc-500 dark:text-zinc-400">
                "It may have been deleted, or the address is mistyped."
            </p>
            <A href="/" attr:class="mt-4 inline-block text-sm font-medium text-amber-600 hover:underline dark:text-amber-400">
                "Back to sessions"
            </A>
        </div>
    }
}

#[component]
fn StatusBadge(status: SessionStatus) -> impl IntoView {
    let tone = match status {
        SessionStatus::Idle | SessionStatus::Stopped => {
            "bg-zinc-100 text-zinc-700 dark:bg-zinc-800 dark:text-zinc-300"
        }
        SessionStatus::Starting | SessionStatus::Running => {
            "bg-sky-100 text-sky-800 dark:bg-sky-900/50 dark:text-sky-300"
        }
        SessionStatus::AwaitingPermission => {
            "bg-amber-100 text-amber-800 dark:bg-amber-900/50 dark:text-amber-300"
        }
        SessionStatus::Error | SessionStatus::Interrupted => {
            "bg-red-100 text-red-800 dark:bg-red-900/50 dark:text-red-300"
        }
    };
    let live = matches!(status, SessionStatus::Running | SessionStatus::Starting);
    view! {
        <span
            data-status=status.as_str()
            class=format!("inline-flex items-center gap-1.5 rounded-full px-2 py-0.5 text-xs font-medium {tone}")
        >
            {live.then(|| view! { <span aria-hidden="true" class="h-1.5 w-1.5 animate-pulse rounded-full bg-current"></span> })}
            {status.as_str().replace('_', " ")}
        </span>
    }
}

/// Absolute UTC time: identical on server and client, so hydration matches.
/// Written out rather than with `format("%Y-…")`, whose parser and
/// formatter are a sizeable part of chrono in the browser bundle.
fn format_time(at: DateTime<Utc>) -> String {
    use chrono::Timelike;
    format!(
        "{} {:02}:{:02} UTC",
        at.date_naive(),
        at.hour(),
        at.minute()
    )
}

fn format_cost(usd: f64) -> String {
    format!("${usd:.4}")
}

/// Deletes a session (its sandbox and workspace too) after the user
/// confirms; then goes to `then_go_to`, if given.
#[component]
fn DeleteButton(
    id: String,
    /// As it is now (a session renamed while its page is open).
    #[prop(into)]
    name: Signal<String>,
    #[prop(optional)] then_go_to: Option<&'static str>,
) -> impl IntoView {
    let delete = ServerAction::<DeleteSession>::new();
    let navigate = leptos_router::hooks::use_navigate();
    Effect::new(move |_| {
        if let (Some(Ok(())), Some(to)) = (delete.value().get(), then_go_to) {
            navigate(to, Default::default());
        }
    });
    let label = move || format!("Delete session {}", name.get());
    let on_click = move |e: leptos::ev::MouseEvent| {
        e.prevent_default();
        e.stop_propagation();
        let question = format!(
            "Delete session {:?}? Its sandbox and workspace files are removed for good.",
            name.get_untracked()
        );
        if window().confirm_with_message(&question).unwrap_or(false) {
            delete.dispatch(DeleteSession { id: id.clone() });
        }
    };
    view! {
        <button
            type="button"
            data-testid="delete"
            aria-label=label
            on:click=on_click
            disabled=move || delete.pending().get()
            class="ml-auto rounded-md border border-red-300 px-3 py-1.5 text-sm font-medium text-red-700 hover:bg-red-50 focus:outline-none focus-visible:ring-2 focus-visible:ring-red-500 disabled:opacity-60 dark:border-red-800 dark:text-red-300 dark:hover:bg-red-950"
        >
            {move || if delete.pending().get() { "Deleting…" } else { "Delete" }}
        </button>
        {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
    }
}

#[component]
fn ErrorNote(message: String) -> impl IntoView {
    view! {
        <p role="alert" class="rounded-md border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-300">
            {message}
        </p>
    }
}
