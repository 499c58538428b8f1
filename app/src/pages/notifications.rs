//! Notification endpoints, on an agent's page (its owner's sessions of it)
//! and a session's (that session): each with its URL, what it hears of,
//! and its newest messages (state, tries, the endpoint's last answer), each
//! of which can be sent again; a form for a new one; delete. A new
//! endpoint's secret is shown once.

use super::form::{submitted, INPUT, PANEL, PRIMARY, SECONDARY};
use super::{ErrorNote, When};
use crate::api::notifications::{
    list_notifications, CreateNotification, DeleteNotification, RedeliverNotification,
};
use crate::domain::AppError;
use crate::notifications::{
    EndpointRow, EndpointSecret, Message, MessageState, NotifiedEvent, URL_MAX_CHARS,
};
use leptos::prelude::*;

/// What each event is called on the page.
fn label(event: NotifiedEvent) -> &'static str {
    match event {
        NotifiedEvent::Finished => "a run finished",
        NotifiedEvent::Error => "a run failed",
        NotifiedEvent::PermissionRequested => "permission asked",
    }
}

/// The newest endpoint made on a page, its secret shown until the page
/// goes: the page keeps it, so that drawing the endpoints again does not
/// take it away uncopied.
pub(super) type ShownEndpoint = RwSignal<Option<EndpointSecret>>;

/// The endpoints `of` (`template` or `session`) the one `id` names. Only
/// whoever may set them up (an agent's owner, who may operate a session)
/// sees them; anyone else is told so, without the form.
#[component]
pub(super) fn Notifications(of: &'static str, id: String, made: ShownEndpoint) -> impl IntoView {
    let create = ServerAction::<CreateNotification>::new();
    let delete = ServerAction::<DeleteNotification>::new();
    let redeliver = ServerAction::<RedeliverNotification>::new();
    let rows = Resource::new(
        {
            let id = id.clone();
            move || {
                (
                    id.clone(),
                    create.version().get(),
                    delete.version().get(),
                    redeliver.version().get(),
                )
            }
        },
        move |(id, ..)| list_notifications(of.to_owned(), id),
    );
    // Not for whoever may not set them up.
    let forbidden = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(Err(AppError::Forbidden(_))) = rows.get() {
            forbidden.set(true);
        }
    });
    // The form works only hydrated: a secret is shown by the page, once.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    // The newest made here is shown (a later error apart, not in its
    // place); the form put away as new, so that a second click does not
    // make a second one.
    let form = NodeRef::<leptos::html::Form>::new();
    let adding = NodeRef::<leptos::html::Details>::new();
    Effect::new(move |_| {
        if let Some(Ok(new)) = create.value().get() {
            made.set(Some(new));
            if let Some(form) = form.get_untracked() {
                form.reset();
            }
            if let Some(adding) = adding.get_untracked() {
                let _ = adding.remove_attribute("open");
            }
        }
    });
    let submit = {
        let id = id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            let Some(field) = submitted(&ev) else { return };
            let events = NotifiedEvent::ALL
                .iter()
                .filter(|e| field(e.as_str()).is_some())
                .map(|e| e.as_str().to_owned())
                .collect();
            create.dispatch(CreateNotification {
                of: of.to_owned(),
                id: id.clone(),
                url: field("url").unwrap_or_default(),
                events,
            });
        }
    };
    view! {
        <section class=format!("space-y-3 {PANEL}") aria-labelledby="notifications-heading" data-testid="notifications">
            <div>
                <h2 id="notifications-heading" class="font-semibold">"Notifications"</h2>
                <p class="text-sm text-zinc-500 dark:text-zinc-400">
                    {match of {
                        "session" => "Tell your own systems when this session finishes, fails or asks for permission",
                        _ => "Tell your own systems when your sessions of this agent finish, fail or ask for permission",
                    }}
                    ": a JSON message to each URL, signed per Standard Webhooks with the endpoint's secret, with the session's link and its last text; tried again for a day while the endpoint fails."
                </p>
            </div>
            {move || made.get().map(|made| view! {
                <div role="status" data-testid="notification-secret" class="space-y-2 rounded-lg border border-emerald-300 bg-emerald-50 p-4 text-sm dark:border-emerald-800 dark:bg-emerald-950">
                    <p class="font-medium">"Notifications go to "{made.endpoint.draft.url.clone()}". Copy the secret to verify them now: it is not shown again."</p>
                    <code data-testid="notification-secret-value" class="block select-all break-all rounded bg-white px-2 py-1 font-mono text-xs dark:bg-zinc-900">{made.secret}</code>
                </div>
            })}
            {move || create.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            {move || redeliver.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            <Suspense>
                {move || Suspend::new(async move {
                    match rows.await {
                        Ok(list) if list.is_empty() => view! { <p class="text-sm text-zinc-500" data-testid="no-notifications">"No notifications yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul class="divide-y divide-zinc-200 dark:divide-zinc-800" data-testid="notification-list">
                                {list.into_iter().map(|row| view! { <EndpointItem row delete redeliver /> }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(AppError::Forbidden(_)) => view! { <p class="text-sm text-zinc-500" data-testid="notifications-not-yours">{match of {
                            "session" => "Whoever may operate this session sets up its notifications.",
                            _ => "The agent's owner sets up its notifications.",
                        }}</p> }.into_any(),
                        Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                    }
                })}
            </Suspense>
            <details node_ref=adding class="text-sm" data-testid="new-notification" class:hidden=move || forbidden.get()>
                <summary class="cursor-pointer font-medium">"Add a notification"</summary>
                <form node_ref=form on:submit=submit class="mt-2 space-y-2">
                    <label class="block text-sm font-medium">"URL"
                        <input name="url" type="url" required maxlength=URL_MAX_CHARS placeholder="https://hooks.example.com/paddock" class=INPUT />
                    </label>
                    <fieldset class="flex flex-wrap gap-3 text-sm">
                        <legend class="font-medium">"When"</legend>
                        {NotifiedEvent::ALL.iter().map(|e| view! {
                            <label class="flex items-center gap-1"><input type="checkbox" name=e.as_str() checked />{label(*e)}</label>
                        }).collect_view()}
                    </fieldset>
                    <button type="submit" class=PRIMARY data-testid="add-notification" disabled=move || !hydrated.get() || create.pending().get()>"Add notification"</button>
                </form>
            </details>
        </section>
    }
}

#[component]
fn EndpointItem(
    row: EndpointRow,
    delete: ServerAction<DeleteNotification>,
    redeliver: ServerAction<RedeliverNotification>,
) -> impl IntoView {
    let EndpointRow { endpoint, messages } = row;
    let id = endpoint.id.to_string();
    let heard: Vec<&str> = endpoint.draft.events.iter().map(|e| label(*e)).collect();
    let delete_id = id.clone();
    view! {
        <li class="space-y-1 py-3" data-testid="notification">
            <div class="flex flex-wrap items-center gap-2">
                <code class="break-all font-mono text-xs" data-testid="notification-url">{endpoint.draft.url.clone()}</code>
                <span class="text-xs text-zinc-500">{heard.join(", ")}</span>
                <button type="button" class=format!("ml-auto {SECONDARY}") data-testid="delete-notification"
                    on:click=move |_| {
                        let sure = window().confirm_with_message("Delete this notification? Nothing more is sent to its URL.").unwrap_or(false);
                        if sure { delete.dispatch(DeleteNotification { id: delete_id.clone() }); }
                    }>"Delete"</button>
            </div>
            <Messages id messages redeliver />
        </li>
    }
}

#[component]
fn Messages(
    id: String,
    messages: Vec<Message>,
    redeliver: ServerAction<RedeliverNotification>,
) -> impl IntoView {
    if messages.is_empty() {
        return view! { <p class="text-xs text-zinc-500" data-testid="no-messages">"Nothing sent yet."</p> }.into_any();
    }
    view! {
        <details class="text-xs" data-testid="messages">
            <summary class="cursor-pointer">{format!("Last messages ({})", messages.len())}</summary>
            <ul class="mt-1 space-y-0.5">
                {messages.into_iter().map(|m| {
                    let (id, message) = (id.clone(), m.id.clone());
                    let tone = match m.state {
                        MessageState::Delivered => "font-mono text-emerald-700 dark:text-emerald-400",
                        MessageState::Pending => "font-mono text-amber-700 dark:text-amber-400",
                        MessageState::Failed => "font-mono text-red-700 dark:text-red-400",
                    };
                    let answer = m.response_code.map_or_else(|| "no answer".to_owned(), |c| c.to_string());
                    view! {
                        <li data-testid="message" data-state=m.state.as_str() class="flex flex-wrap items-center gap-x-2">
                            <span class=tone>{m.state.as_str()}</span>
                            <span>{m.event.message_type()}</span>
                            <span data-testid="message-answer">{format!("{answer} · {} tries", m.attempts)}</span>
                            <When at=m.updated_at />
                            <a class="underline" href=format!("/sessions/{}", m.session)>"session"</a>
                            {m.error.clone().map(|e| view! { <span class="max-w-md truncate text-zinc-500" title=e.clone()>{e.clone()}</span> })}
                            <button type="button" class=SECONDARY data-testid="redeliver"
                                on:click=move |_| { redeliver.dispatch(RedeliverNotification { id: id.clone(), message: message.clone() }); }>
                                "Send again"
                            </button>
                        </li>
                    }
                }).collect_view()}
            </ul>
        </details>
    }
    .into_any()
}
