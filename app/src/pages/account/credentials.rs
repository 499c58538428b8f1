//! Saved credentials: the Anthropic API key the agents use, the server's
//! (an admin's to set) and a person's own, which their sessions use first;
//! and the secrets people give their agents by name. A saved value is never
//! shown again: a key only as a hint of its last characters, a secret not
//! at all.

use super::super::form::{submitted, PageTitle, INPUT, PANEL, PRIMARY, SECONDARY};
use super::super::{ErrorNote, When};
use crate::accounts::{
    Caller, CredentialInfo, CredentialKind, CredentialScope, CREDENTIAL_MAX_BYTES,
};
use crate::api::accounts::{list_credentials, whoami, DeleteCredential, SaveCredential};
use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;

#[component]
pub fn CredentialsPage() -> impl IntoView {
    let me = Resource::new(|| (), |_| whoami());
    view! {
        <div class="mx-auto max-w-3xl space-y-4">
            <PageTitle title="Credentials" about="Kept encrypted on the server and never sent to a sandbox: the agents' model calls go through Paddock, which adds the key." />
            <Suspense>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(Some(caller)) => view! { <Credentials caller /> }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

#[component]
fn Credentials(caller: Caller) -> impl IntoView {
    let save = ServerAction::<SaveCredential>::new();
    let delete = ServerAction::<DeleteCredential>::new();
    let saved = Resource::new(
        move || (save.version().get(), delete.version().get()),
        |_| list_credentials(),
    );
    let mut scopes = Vec::new();
    if caller.is_admin() {
        scopes.push((
            "server",
            "Server key",
            "Used by every session whose owner has no key of their own. Without it, the ANTHROPIC_API_KEY of the server's environment.",
        ));
    }
    if caller.user.is_some() {
        scopes.push((
            "mine",
            "Your key",
            "Used for the sessions you own, before the server's.",
        ));
    }
    let is_server = |c: &CredentialInfo| c.id.scope == CredentialScope::Server;
    // Sessions use their owner's secrets and git tokens; with sign-in off,
    // the server's.
    let secrets_scope = if caller.user.is_some() {
        "mine"
    } else {
        "server"
    };
    view! {
        {move || save.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
        {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
        {scopes.into_iter().map(|(scope, title, about)| {
            let submit = move |ev: leptos::ev::SubmitEvent| {
                let Some(field) = submitted(&ev) else { return };
                save.dispatch(SaveCredential {
                    scope: scope.into(),
                    kind: CredentialKind::AnthropicApiKey.to_string(),
                    name: None,
                    value: field("value").unwrap_or_default(),
                });
                event_target::<leptos::web_sys::HtmlFormElement>(&ev).reset();
            };
            view! {
                <section class=format!("space-y-3 {PANEL}") data-testid=format!("credential-{scope}")>
                    <div>
                        <h2 class="font-semibold">{title} " · Anthropic API key"</h2>
                        <p class="text-sm text-zinc-500 dark:text-zinc-400">{about}</p>
                    </div>
                    <Suspense>
                        {move || Suspend::new(async move {
                            let current = saved.await.ok().and_then(|list| {
                                list.into_iter().find(|c| {
                                    c.id.kind == CredentialKind::AnthropicApiKey
                                        && is_server(c) == (scope == "server")
                                })
                            });
                            match current {
                                Some(c) => view! {
                                    <p class="flex flex-wrap items-center gap-2 text-sm">
                                        "Saved: "<code data-testid="credential-hint" class="font-mono">{c.hint.clone()}</code>
                                        <span class="text-xs text-zinc-500">{format!("by {} · ", c.updated_by)}<When at=c.updated_at /></span>
                                        <button
                                            type="button"
                                            data-testid="delete-credential"
                                            class=format!("ml-auto {SECONDARY}")
                                            on:click=move |_| {
                                                if removal_confirmed() {
                                                    delete.dispatch(DeleteCredential { scope: scope.into(), kind: c.id.kind.to_string(), name: None });
                                                }
                                            }
                                        >"Remove"</button>
                                    </p>
                                }.into_any(),
                                None => view! { <p class="text-sm text-zinc-500" data-testid="credential-none">"None saved."</p> }.into_any(),
                            }
                        })}
                    </Suspense>
                    // A post, also before the page's code loads: never a GET
                    // that would put the key in the address.
                    <form on:submit=submit method="post" action=SaveCredential::PATH class="flex flex-wrap items-end gap-3">
                        <input type="hidden" name="scope" value=scope />
                        <input type="hidden" name="kind" value=CredentialKind::AnthropicApiKey.as_str() />
                        <div class="min-w-64 flex-1">
                            <label for=format!("credential-{scope}-value") class="text-sm font-medium">"New key"</label>
                            <input id=format!("credential-{scope}-value") name="value" type="password" required autocomplete="off" maxlength=CREDENTIAL_MAX_BYTES placeholder="sk-ant-…" class=INPUT />
                        </div>
                        <button type="submit" class=PRIMARY data-testid="save-credential">"Save"</button>
                    </form>
                </section>
            }
        }).collect_view()}
        <Named kind=CredentialKind::Secret scope=secrets_scope saved save delete />
        <Named kind=CredentialKind::GitToken scope=secrets_scope saved save delete />
    }
}

/// The credentials of one named kind (secrets, git tokens) of one scope:
/// names only, a form to add or replace one, and a button to remove each.
#[component]
fn Named(
    kind: CredentialKind,
    scope: &'static str,
    saved: Resource<Result<Vec<CredentialInfo>, crate::domain::AppError>>,
    save: ServerAction<SaveCredential>,
    delete: ServerAction<DeleteCredential>,
) -> impl IntoView {
    // (test id, title, what it is for, a name's example, the value's hint)
    let (slug, title, about, example, hint) = match kind {
        CredentialKind::GitToken => (
            "git-token",
            "Git tokens",
            "Tokens the server clones and pushes your sessions' repositories with (name one as a workspace's source). They stay on the server: no sandbox, transcript or log ever holds one.",
            "GITHUB",
            "The token, or user:token (one line)",
        ),
        _ => (
            "secret",
            "Secrets",
            "Values your agents' commands need (a token for a package registry, a deploy key). A session you start with a secret has it in its commands' environment under the secret's name; wherever the value would show in the transcript, it reads ••••.",
            "NPM_TOKEN",
            "One line, or several (a key file)",
        ),
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(field) = submitted(&ev) else { return };
        save.dispatch(SaveCredential {
            scope: scope.into(),
            kind: kind.to_string(),
            name: field("name"),
            value: field("value").unwrap_or_default(),
        });
        event_target::<leptos::web_sys::HtmlFormElement>(&ev).reset();
    };
    view! {
        <section class=format!("space-y-3 {PANEL}") data-testid=format!("{slug}s")>
            <div>
                <h2 class="font-semibold">{title}</h2>
                <p class="text-sm text-zinc-500 dark:text-zinc-400">{about}</p>
            </div>
            <Suspense>
                {move || Suspend::new(async move {
                    let named: Vec<CredentialInfo> = saved.await.unwrap_or_default().into_iter()
                        .filter(|c| c.id.kind == kind && (c.id.scope == CredentialScope::Server) == (scope == "server"))
                        .collect();
                    if named.is_empty() {
                        return view! { <p class="text-sm text-zinc-500" data-testid=format!("{slug}s-none")>"None saved."</p> }.into_any();
                    }
                    view! {
                        <ul class="divide-y divide-zinc-200 text-sm dark:divide-zinc-800">
                            {named.into_iter().map(|c| {
                                let name = c.id.name.clone();
                                view! {
                                    <li class="flex flex-wrap items-center gap-2 py-2" data-testid=slug>
                                        <code class="font-mono" data-testid=format!("{slug}-name")>{c.id.name.clone()}</code>
                                        <span class="font-mono text-zinc-500">{c.hint.clone()}</span>
                                        <span class="text-xs text-zinc-500">{format!("by {} · ", c.updated_by)}<When at=c.updated_at /></span>
                                        <button
                                            type="button"
                                            data-testid=format!("delete-{slug}")
                                            class=format!("ml-auto {SECONDARY}")
                                            on:click=move |_| {
                                                if removal_confirmed() {
                                                    delete.dispatch(DeleteCredential { scope: scope.into(), kind: kind.to_string(), name: Some(name.clone()) });
                                                }
                                            }
                                        >"Remove"</button>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any()
                })}
            </Suspense>
            <form on:submit=submit method="post" action=SaveCredential::PATH class="flex flex-wrap items-end gap-3">
                <input type="hidden" name="scope" value=scope />
                <input type="hidden" name="kind" value=kind.as_str() />
                <div class="min-w-40">
                    <label for=format!("{slug}-name") class="text-sm font-medium">"Name"</label>
                    <input id=format!("{slug}-name") name="name" required autocomplete="off" spellcheck="false" pattern="[A-Za-z_][A-Za-z0-9_]*" placeholder=example class=format!("font-mono {INPUT}") />
                </div>
                <div class="min-w-64 flex-1">
                    <label for=format!("{slug}-value") class="text-sm font-medium">"Value"</label>
                    <textarea id=format!("{slug}-value") name="value" rows="2" required autocomplete="off" spellcheck="false" maxlength=CREDENTIAL_MAX_BYTES placeholder=hint class=format!("font-mono [-webkit-text-security:disc] {INPUT}")></textarea>
                </div>
                <button type="submit" class=PRIMARY data-testid=format!("save-{slug}")>{format!("Save {}", title.trim_end_matches('s').to_lowercase())}</button>
            </form>
        </section>
    }
}

/// Whether the person confirms removing a saved credential (the sessions
/// that use it fail without it; it cannot be shown again to be put back).
fn removal_confirmed() -> bool {
    leptos::web_sys::window()
        .and_then(|w| {
            w.confirm_with_message(
                "Remove this credential? Sessions that use it fail until another is saved.",
            )
            .ok()
        })
        .unwrap_or(false)
}
