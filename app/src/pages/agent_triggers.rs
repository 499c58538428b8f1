//! An agent's triggers, on its page: each with its URL, whether it is
//! paused, and its newest deliveries (status, when, the session it started
//! or continued); a form for a new one; pause, resume, rotate the secret,
//! delete. A new trigger's secret, or a rotated one, is shown once.

use super::form::{submitted, INPUT, PANEL, PRIMARY, SECONDARY};
use super::{ErrorNote, When};
use crate::api::get_server_info;
use crate::api::triggers::{
    list_triggers, CreateTrigger, DeleteTrigger, PauseTrigger, RotateTriggerSecret,
    DASHBOARD_OVERLAP_SECS,
};
use crate::domain::PermissionMode;
use crate::triggers::{
    trigger_path, Delivery, MissedRuns, Schedule, TriggerDraft, TriggerKind, TriggerRow,
    TriggerSecret, CONVERSATION_MAX_BYTES, CRON_MAX_CHARS, HANDLE_MAX_CHARS, NAME_MAX_CHARS,
    PROMPT_TEMPLATE_MAX_BYTES, SENDER_KEY_MAX_BYTES, TIMEZONE_MAX_CHARS,
};
use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;

/// The prompt a new trigger of `kind` starts from.
fn example_prompt(kind: TriggerKind) -> &'static str {
    match kind {
        TriggerKind::Webhook => "The build {{ payload.job }} failed on {{ payload.branch }}:\n\n{{ payload.log }}\n\nFind out why and fix it.",
        TriggerKind::Github => "{{ github.sender }} asks on {{ github.repository }}#{{ github.number }} ({{ github.url }}):\n\n{{ github.title }}\n\n{{ github.body }}\n\n{{ github.comment }}",
        TriggerKind::Mailgun | TriggerKind::Sendgrid => "An email from {{ email.from }}: {{ email.subject }}\n\n{{ email.text }}\n{% for a in email.attachments %}{% if a.path %}\nAttached: {{ a.path }}{% endif %}{% endfor %}",
        TriggerKind::Twilio => "A text message from {{ sms.from }}:\n\n{{ sms.body }}",
        TriggerKind::Schedule => "It is {{ schedule.local }} ({{ schedule.timezone }}): run the nightly checks and report what fails.",
    }
}

/// What the prompt of a trigger of `kind` sees, in a line.
fn fields_help(kind: TriggerKind) -> &'static str {
    match kind {
        TriggerKind::Webhook => "{{ payload.field }} for the delivery's JSON, {{ delivery }} for its id.",
        TriggerKind::Github => "{{ github.title }}, {{ github.body }}, {{ github.comment }}, {{ github.url }}, {{ github.sender }}, {{ github.repository }}, {{ github.number }}.",
        TriggerKind::Mailgun | TriggerKind::Sendgrid => "{{ email.from }}, {{ email.to }}, {{ email.subject }}, {{ email.text }}, {{ email.thread }}, {{ email.attachments }} (name, size, path in the workspace).",
        TriggerKind::Twilio => "{{ sms.from }}, {{ sms.to }}, {{ sms.body }}, {{ sms.media }} (how many pictures came).",
        TriggerKind::Schedule => "{{ schedule.local }} (when it was due, in its time zone), {{ schedule.due }} (UTC), {{ schedule.late }} (run once for missed times).",
    }
}

/// The browser's time zone (an IANA name), where a new schedule's times
/// are by default.
#[cfg(feature = "hydrate")]
fn browser_time_zone() -> Option<String> {
    use web_sys::js_sys::{Array, Intl, Object, Reflect};
    let options = Intl::DateTimeFormat::new(&Array::new(), &Object::new()).resolved_options();
    Reflect::get(&options, &"timeZone".into()).ok()?.as_string()
}

#[cfg(not(feature = "hydrate"))]
fn browser_time_zone() -> Option<String> {
    None
}

/// The newest trigger secret made or rotated on a page, shown until the
/// page goes: the page keeps it, so that a save that draws the agent
/// again (its settings, a skill) does not take it away uncopied.
pub(super) type ShownSecret = RwSignal<Option<(&'static str, TriggerSecret)>>;

#[component]
pub(super) fn Triggers(template: String, secret: ShownSecret) -> impl IntoView {
    let create = ServerAction::<CreateTrigger>::new();
    let pause = ServerAction::<PauseTrigger>::new();
    let rotate = ServerAction::<RotateTriggerSecret>::new();
    let delete = ServerAction::<DeleteTrigger>::new();
    let changed = move || {
        (
            create.version().get(),
            pause.version().get(),
            rotate.version().get(),
            delete.version().get(),
        )
    };
    let rows = Resource::new(
        {
            let template = template.clone();
            move || (template.clone(), changed())
        },
        |(template, _)| list_triggers(template),
    );
    // Where a trigger's URL is: the public URL the operator set, else this
    // server as the browser reached it.
    let origin = RwSignal::new(String::new());
    let info = Resource::new(|| (), |_| get_server_info());
    Effect::new(move |_| {
        let public = info.get().and_then(Result::ok).and_then(|i| i.public_url);
        origin.set(public.unwrap_or_else(|| window().location().origin().unwrap_or_default()));
    });
    let kind = RwSignal::new(TriggerKind::Webhook);
    let github = move || kind.get() == TriggerKind::Github;
    let keyed = move || kind.get().sender_keyed();
    let scheduled = move || kind.get() == TriggerKind::Schedule;
    let zone = RwSignal::new("UTC".to_owned());
    // The prompt as typed; the sender's example while it is untouched.
    let prompt = RwSignal::new(example_prompt(TriggerKind::Webhook).to_owned());
    Effect::new(move |_| {
        if let Some(browser) = browser_time_zone() {
            zone.set(browser);
        }
    });
    // The form only for whoever sets them up.
    let yours = move || rows.get().and_then(Result::ok).is_none_or(|p| p.yours);
    // The form works only hydrated: a secret is shown by the page, once.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let submit = {
        let template = template.clone();
        move |ev: leptos::ev::SubmitEvent| {
            let Some(field) = submitted(&ev) else { return };
            let kind = kind.get_untracked();
            create.dispatch(CreateTrigger {
                template: template.clone(),
                draft: TriggerDraft {
                    name: field("name").unwrap_or_default(),
                    kind,
                    // Only a GitHub trigger has one (the field stays, hidden).
                    handle: (kind == TriggerKind::Github)
                        .then(|| field("handle"))
                        .flatten(),
                    prompt: field("prompt").unwrap_or_default(),
                    conversation: field("conversation"),
                    permission_mode: field("permission_mode")
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(PermissionMode::Ask),
                    paused: false,
                    schedule: (kind == TriggerKind::Schedule).then(|| Schedule {
                        cron: field("cron").unwrap_or_default(),
                        timezone: field("timezone").unwrap_or_default(),
                        missed: field("missed")
                            .and_then(|m| m.parse().ok())
                            .unwrap_or(MissedRuns::Skip),
                    }),
                },
                // Only Mailgun's and Twilio's are given (the field stays).
                secret: kind.sender_keyed().then(|| field("secret")).flatten(),
            });
        }
    };
    // (A later error is shown apart from the secret, not in its place.)
    let form = NodeRef::<leptos::html::Form>::new();
    let adding = NodeRef::<leptos::html::Details>::new();
    Effect::new(move |_| {
        if let Some(Ok(made)) = create.value().get() {
            secret.set(Some(("made", made)));
            // Made: the form is put away as new, so that a second click
            // does not make a second trigger.
            if let Some(form) = form.get_untracked() {
                form.reset();
            }
            if let Some(adding) = adding.get_untracked() {
                let _ = adding.remove_attribute("open");
            }
            kind.set(TriggerKind::Webhook);
            prompt.set(example_prompt(TriggerKind::Webhook).to_owned());
            zone.set(zone.get_untracked());
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(rotated)) = rotate.value().get() {
            secret.set(Some(("rotated", rotated)));
        }
    });
    view! {
        <section class=format!("space-y-3 {PANEL}") aria-labelledby="triggers-heading" data-testid="triggers">
            <div>
                <h2 id="triggers-heading" class="font-semibold">"Triggers"</h2>
                <p class="text-sm text-zinc-500 dark:text-zinc-400">
                    "Start this agent from elsewhere: each trigger has a URL and a secret, and a delivery signed with it (Standard Webhooks; GitHub's webhook, for issues and comments that mention a handle; email through Mailgun or SendGrid; text messages through Twilio) starts a session from this agent, as you, with its prompt made from the delivery. Deliveries with the same conversation key continue one session."
                </p>
            </div>
            {move || secret.get().map(|(how, s)| view! { <NewSecret how secret=s origin /> })}
            {move || create.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            {move || rotate.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            {move || pause.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            <Suspense>
                {move || Suspend::new(async move {
                    match rows.await {
                        Ok(panel) => {
                            let yours = panel.yours;
                            view! {
                                {(!yours).then(|| view! { <p class="text-sm text-zinc-500" data-testid="triggers-not-yours">"The agent's owner sets up its triggers."</p> })}
                                {match panel.rows.is_empty() {
                                    true => view! { <p class="text-sm text-zinc-500" data-testid="no-triggers">"No triggers yet."</p> }.into_any(),
                                    false => view! {
                                        <ul class="divide-y divide-zinc-200 dark:divide-zinc-800" data-testid="trigger-list">
                                            {panel.rows.into_iter().map(|row| view! { <TriggerItem row yours origin pause rotate delete /> }).collect_view()}
                                        </ul>
                                    }.into_any(),
                                }}
                            }.into_any()
                        }
                        Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                    }
                })}
            </Suspense>
            <details node_ref=adding class="text-sm" data-testid="new-trigger" class:hidden=move || !yours()>
                <summary class="cursor-pointer font-medium">"Add a trigger"</summary>
                <form node_ref=form action=CreateTrigger::PATH method="post" on:submit=submit class="mt-2 space-y-2">
                    <input type="hidden" name="template" value=template.clone() />
                    <label class="block text-sm font-medium">"Name"
                        <input name="name" required maxlength=NAME_MAX_CHARS placeholder="failed builds" class=INPUT />
                    </label>
                    <label class="block text-sm font-medium">"Sender"
                        <select name="kind" class=INPUT on:change=move |ev| {
                            let new = event_target_value(&ev).parse().unwrap_or(TriggerKind::Webhook);
                            // The example follows the sender; what was typed stays.
                            if prompt.get_untracked() == example_prompt(kind.get_untracked()) {
                                prompt.set(example_prompt(new).to_owned());
                            }
                            kind.set(new);
                        } data-testid="trigger-kind">
                            <option value=TriggerKind::Webhook.as_str() selected>"Standard Webhooks (any service that signs so)"</option>
                            <option value=TriggerKind::Github.as_str()>"GitHub: issues and comments that mention a handle"</option>
                            <option value=TriggerKind::Mailgun.as_str()>"Email through Mailgun (a route that forwards)"</option>
                            <option value=TriggerKind::Sendgrid.as_str()>"Email through SendGrid Inbound Parse"</option>
                            <option value=TriggerKind::Twilio.as_str()>"Text messages through Twilio"</option>
                            <option value=TriggerKind::Schedule.as_str()>"On a schedule (cron)"</option>
                        </select>
                    </label>
                    <div class="space-y-2" class:hidden=move || !scheduled()>
                        <label class="block text-sm font-medium">"When (cron)"
                            <span class="block text-xs font-normal text-zinc-500">"Minute, hour, day of month, month, day of week: 0 2 * * * is 2 am each day, 30 9 * * MON-FRI 9:30 on weekdays; @hourly, @daily too."</span>
                            <input name="cron" maxlength=CRON_MAX_CHARS placeholder="0 2 * * *" required=scheduled class=format!("font-mono text-xs {INPUT}") data-testid="trigger-cron" />
                        </label>
                        <label class="block text-sm font-medium">"Time zone"
                            <input name="timezone" maxlength=TIMEZONE_MAX_CHARS prop:value=move || zone.get() required=scheduled class=INPUT data-testid="trigger-timezone" />
                        </label>
                        <label class="block text-sm font-medium">"Runs missed while Paddock was down"
                            <select name="missed" class=INPUT>
                                <option value=MissedRuns::Skip.as_str() selected>"skip them"</option>
                                <option value=MissedRuns::Once.as_str()>"run once when it is back"</option>
                            </select>
                        </label>
                    </div>
                    <label class="block text-sm font-medium" class:hidden=move || !github()>"Handle"
                        <span class="block text-xs font-normal text-zinc-500">"The GitHub login people mention (without @)."</span>
                        <input name="handle" maxlength=HANDLE_MAX_CHARS placeholder="paddock-bot" required=github class=INPUT />
                    </label>
                    <label class="block text-sm font-medium" class:hidden=move || !keyed()>{move || match kind.get() {
                            TriggerKind::Twilio => "Twilio Auth Token",
                            _ => "Mailgun HTTP webhook signing key",
                        }}
                        <span class="block text-xs font-normal text-zinc-500">{move || match kind.get() {
                            TriggerKind::Twilio => "From the Twilio console: Twilio signs each message with it, over this server's public URL (PADDOCK_PUBLIC_URL). Kept sealed; not shown again.",
                            _ => "From Mailgun's Webhooks page: Mailgun signs each message it forwards with it, and Paddock adds a password of its own to the URL. Kept sealed; not shown again.",
                        }}</span>
                        <input name="secret" type="password" autocomplete="off" maxlength=SENDER_KEY_MAX_BYTES required=keyed class=INPUT data-testid="trigger-key" />
                    </label>
                    <label class="block text-sm font-medium">"Prompt"
                        <span class="block text-xs font-normal text-zinc-500">{move || format!("A template over the delivery, with conditions and loops: {}", fields_help(kind.get()))}</span>
                        <textarea name="prompt" required rows="5" maxlength=PROMPT_TEMPLATE_MAX_BYTES class=format!("font-mono text-xs {INPUT}")
                            prop:value=move || prompt.get() on:input=move |ev| prompt.set(event_target_value(&ev))>{example_prompt(TriggerKind::Webhook)}</textarea>
                    </label>
                    <label class="block text-sm font-medium">"Conversation key (optional)"
                        <span class="block text-xs font-normal text-zinc-500">"Deliveries with the same key continue one session, e.g. {{ payload.branch }}; empty: a session each (GitHub: one per issue or pull request; email: one per thread; text messages: one per sender)."</span>
                        <input name="conversation" maxlength=CONVERSATION_MAX_BYTES placeholder="{{ payload.branch }}" class=format!("font-mono text-xs {INPUT}") />
                    </label>
                    <label class="block text-sm font-medium">"Permissions of its sessions"
                        <select name="permission_mode" class=INPUT>
                            <option value=PermissionMode::Ask.as_str() selected>"ask before each tool (a person decides)"</option>
                            <option value=PermissionMode::ReadOnly.as_str()>"read-only"</option>
                            <option value=PermissionMode::AcceptEdits.as_str()>"accept edits, ask for commands"</option>
                            <option value=PermissionMode::Auto.as_str()>"auto: run everything unattended"</option>
                        </select>
                    </label>
                    <button type="submit" class=PRIMARY data-testid="add-trigger" disabled=move || !hydrated.get() || create.pending().get()>"Add trigger"</button>
                </form>
            </details>
        </section>
    }
}

/// A secret just made, with where to send deliveries.
#[component]
fn NewSecret(how: &'static str, secret: TriggerSecret, origin: RwSignal<String>) -> impl IntoView {
    let name = secret.trigger.draft.name.clone();
    let said = match (how, &secret.secret) {
        ("rotated", Some(_)) => format!(
            "The trigger \"{name}\" has a new secret; the old one is accepted for {} more hours. Copy it now: it is not shown again.",
            DASHBOARD_OVERLAP_SECS / 3600
        ),
        ("rotated", None) => format!(
            "The trigger \"{name}\" takes the new key; the old one is accepted for {} more hours.",
            DASHBOARD_OVERLAP_SECS / 3600
        ),
        (_, Some(_)) => format!("Trigger \"{name}\" added. Copy its secret now: it is not shown again."),
        (_, None) => format!("Trigger \"{name}\" added; the key you gave is kept sealed."),
    };
    let in_url = secret.trigger.draft.kind.url_password();
    let shown = secret.secret.clone();
    view! {
        <div role="status" data-testid="trigger-secret" class="space-y-2 rounded-lg border border-emerald-300 bg-emerald-50 p-4 text-sm dark:border-emerald-800 dark:bg-emerald-950">
            <p class="font-medium">{said}</p>
            {shown.map(|value| view! {
                <code data-testid="trigger-secret-value" class="block select-all break-all rounded bg-white px-2 py-1 font-mono text-xs dark:bg-zinc-900">{value}</code>
            })}
            <p class="text-xs">{if in_url { "Give the sender this URL (its password is the secret): " } else { "Send deliveries to " }}<code class="select-all break-all font-mono" data-testid="trigger-secret-url">{move || secret.url(&origin.get())}</code></p>
        </div>
    }
}

#[component]
fn TriggerItem(
    row: TriggerRow,
    /// Whether the viewer sets it up (pauses it, gives it a new secret).
    yours: bool,
    origin: RwSignal<String>,
    pause: ServerAction<PauseTrigger>,
    rotate: ServerAction<RotateTriggerSecret>,
    delete: ServerAction<DeleteTrigger>,
) -> impl IntoView {
    let TriggerRow {
        trigger,
        deliveries,
    } = row;
    let id = trigger.id.to_string();
    let paused = trigger.draft.paused;
    let keyed = trigger.draft.kind.sender_keyed();
    let sent = trigger.draft.kind.takes_deliveries();
    let path = trigger_path(trigger.id);
    let next_runs = trigger.next_runs.clone();
    let (pause_id, rotate_id, key_id, delete_id) = (id.clone(), id.clone(), id.clone(), id.clone());
    view! {
        <li class="space-y-1 py-3" data-testid="trigger" data-paused=paused.to_string()>
            <div class="flex flex-wrap items-center gap-2">
                <span class="font-semibold" data-testid="trigger-name">{trigger.draft.name.clone()}</span>
                <span class="text-xs text-zinc-500">{match (&trigger.draft.handle, &trigger.draft.schedule) {
                    (Some(handle), _) => format!("{} · @{handle} · {}", trigger.draft.kind, trigger.draft.permission_mode),
                    (_, Some(s)) => format!("{} · {} in {} · {}", trigger.draft.kind, s.cron, s.timezone, trigger.draft.permission_mode),
                    (None, None) => format!("{} · {}", trigger.draft.kind, trigger.draft.permission_mode),
                }}</span>
                {paused.then(|| view! { <span class="rounded bg-amber-100 px-1.5 text-xs text-amber-900 dark:bg-amber-950 dark:text-amber-200">"paused"</span> })}
                <span class="ml-auto flex flex-wrap gap-1">
                    <button type="button" class=SECONDARY data-testid="pause-trigger" class:hidden=!yours
                        on:click=move |_| { pause.dispatch(PauseTrigger { id: pause_id.clone(), paused: !paused }); }>
                        {if paused { "Resume" } else { "Pause" }}
                    </button>
                    <button type="button" class=SECONDARY data-testid="rotate-trigger" class:hidden=!sent || keyed || !yours
                        on:click=move |_| {
                            if window().confirm_with_message("Make a new secret? The current one is accepted for one more day.").unwrap_or(false) {
                                rotate.dispatch(RotateTriggerSecret { id: rotate_id.clone(), secret: None });
                            }
                        }>"New secret"</button>
                    <button type="button" class=SECONDARY data-testid="delete-trigger"
                        on:click=move |_| {
                            let sure = window().confirm_with_message("Delete this trigger? Its URL stops taking deliveries; sessions it started stay.").unwrap_or(false);
                            if sure { delete.dispatch(DeleteTrigger { id: delete_id.clone() }); }
                        }>"Delete"</button>
                </span>
            </div>
            {match sent {
                true => view! { <p class="text-xs"><code class="select-all break-all font-mono" data-testid="trigger-url">{move || format!("{}{path}", origin.get())}</code></p> }.into_any(),
                false => view! {
                    <p class="flex flex-wrap gap-x-2 text-xs" data-testid="next-runs">
                        {if next_runs.is_empty() { "No runs ahead." } else { "Next runs:" }}
                        {next_runs.into_iter().map(|at| view! { <span data-testid="next-run"><When at /></span> }).collect_view()}
                    </p>
                }.into_any(),
            }}
            {(keyed && yours).then(|| {
                let id = key_id.clone();
                view! {
                    <details class="text-xs" data-testid="new-key">
                        <summary class="cursor-pointer">"New key"</summary>
                        <form class="mt-1 flex flex-wrap gap-2" on:submit=move |ev| {
                            let Some(field) = submitted(&ev) else { return };
                            rotate.dispatch(RotateTriggerSecret { id: id.clone(), secret: field("secret") });
                        }>
                            <input name="secret" type="password" autocomplete="off" required maxlength=SENDER_KEY_MAX_BYTES placeholder="the sender's new key" class=INPUT />
                            <button type="submit" class=SECONDARY>"Use it (the current one stays for a day)"</button>
                        </form>
                    </details>
                }
            })}
            <pre class="whitespace-pre-wrap rounded bg-zinc-100 px-2 py-1 font-mono text-xs dark:bg-zinc-900">{trigger.draft.prompt.clone()}</pre>
            {trigger.draft.conversation.clone().map(|key| view! { <p class="text-xs text-zinc-500">"Conversation: "<code class="font-mono">{key}</code></p> })}
            <Deliveries deliveries />
        </li>
    }
}

#[component]
fn Deliveries(deliveries: Vec<Delivery>) -> impl IntoView {
    if deliveries.is_empty() {
        return view! { <p class="text-xs text-zinc-500" data-testid="no-deliveries">"No deliveries yet."</p> }.into_any();
    }
    view! {
        <details class="text-xs" data-testid="deliveries">
            <summary class="cursor-pointer">{format!("Last deliveries ({})", deliveries.len())}</summary>
            <ul class="mt-1 space-y-0.5">
                {deliveries.into_iter().map(|d| {
                    let ok = (200..300).contains(&d.status);
                    view! {
                        <li data-testid="delivery" data-status=d.status.to_string() class="flex flex-wrap gap-x-2">
                            <span class=if ok { "font-mono text-emerald-700 dark:text-emerald-400" } else { "font-mono text-red-700 dark:text-red-400" }>{d.status}</span>
                            <code class="font-mono">{d.id.clone()}</code>
                            <When at=d.received_at />
                            {match d.session {
                                Some(session) => view! { <a class="underline" href=format!("/sessions/{session}")>{d.outcome.clone()}</a> }.into_any(),
                                None => view! { <span>{d.outcome.clone()}</span> }.into_any(),
                            }}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </details>
    }
    .into_any()
}
