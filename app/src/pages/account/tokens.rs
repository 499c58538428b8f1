//! Personal API tokens: for scripts that call the REST API and the event
//! streams with `Authorization: Bearer`. A new token's secret is shown once.

use super::super::form::{submitted, PageTitle, INPUT, PANEL, PRIMARY, SECONDARY};
use super::super::{format_time, ErrorNote, When};
use super::SignedIn;
use crate::accounts::{ListedToken, NewApiToken, TOKEN_NAME_MAX_CHARS};
use crate::api::accounts::{list_tokens, CreateToken, RevokeToken};
use leptos::prelude::*;

#[component]
pub fn TokensPage() -> impl IntoView {
    view! {
        <div class="mx-auto max-w-3xl space-y-4">
            <PageTitle title="API tokens" about="For scripts: send one as \"Authorization: Bearer <token>\" to the REST API and the event streams. A token acts as you." />
            <SignedIn signed_in=|_| view! { <Tokens /> } />
        </div>
    }
}

#[component]
fn Tokens() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_tokens(),
    );
    // The newest made here, its secret shown until the page goes (a later
    // error is shown apart, not in its place).
    let made = RwSignal::new(None::<NewApiToken>);
    Effect::new(move |_| {
        if let Some(Ok(new)) = create.value().get() {
            made.set(Some(new));
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(field) = submitted(&ev) else { return };
        create.dispatch(CreateToken {
            name: field("name").unwrap_or_default(),
            expires_in_days: field("expires_in_days"),
        });
    };
    view! {
        <form on:submit=submit class=format!("flex flex-wrap items-end gap-3 {PANEL}") data-testid="token-form">
            <div class="min-w-48 flex-1">
                <label for="token-name" class="text-sm font-medium">"Name"</label>
                <input id="token-name" name="name" required maxlength=TOKEN_NAME_MAX_CHARS placeholder="deploy script" class=INPUT />
            </div>
            <div>
                <label for="token-expiry" class="text-sm font-medium">"Expires"</label>
                <select id="token-expiry" name="expires_in_days" class=INPUT>
                    <option value="7">"in 7 days"</option>
                    <option value="30" selected>"in 30 days"</option>
                    <option value="90">"in 90 days"</option>
                    <option value="365">"in a year"</option>
                    <option value="">"never"</option>
                </select>
            </div>
            <button type="submit" class=PRIMARY disabled=move || create.pending().get()>"Create token"</button>
        </form>
        {move || made.get().map(|new| view! {
            <div role="status" class="rounded-lg border border-emerald-300 bg-emerald-50 p-4 text-sm dark:border-emerald-800 dark:bg-emerald-950">
                <p class="font-medium">"Token \"" {new.token.name.clone()} "\" created. Copy it now: it is not shown again."</p>
                <code data-testid="new-token" class="mt-2 block select-all break-all rounded bg-white px-2 py-1 font-mono text-xs dark:bg-zinc-900">{new.secret.clone()}</code>
            </div>
        })}
        {move || create.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
        {move || revoke.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
        <Suspense>
            {move || Suspend::new(async move {
                match tokens.await {
                    Ok(list) if list.is_empty() => view! { <p class="text-sm text-zinc-500" data-testid="no-tokens">"No tokens yet."</p> }.into_any(),
                    Ok(list) => view! {
                        <ul class="divide-y divide-zinc-200 rounded-lg border border-zinc-200 bg-white dark:divide-zinc-800 dark:border-zinc-800 dark:bg-zinc-900" data-testid="token-list">
                            {list.into_iter().map(|t| view! { <TokenRow t revoke /> }).collect_view()}
                        </ul>
                    }.into_any(),
                    Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn TokenRow(t: ListedToken, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    let ListedToken { token: t, live } = t;
    let state = match (t.revoked_at, t.expires_at) {
        (Some(at), _) => format!("revoked {}", format_time(at)),
        (None, Some(at)) if !live => format!("expired {}", format_time(at)),
        (None, Some(at)) => format!("expires {}", format_time(at)),
        (None, None) => "never expires".to_owned(),
    };
    let used = t.last_used_at.map_or_else(
        || "never used".to_owned(),
        |at| format!("last used {}", format_time(at)),
    );
    let id = t.id.to_string();
    view! {
        <li class="flex flex-wrap items-center gap-3 px-4 py-3 text-sm" data-testid="token-row">
            <span class="font-medium" data-testid="token-name">{t.name.clone()}</span>
            <span class="text-xs text-zinc-500 dark:text-zinc-400">
                "created "<When at=t.created_at />{format!(" · {state} · {used}")}
            </span>
            {live.then(|| view! {
                <button
                    type="button"
                    data-testid="revoke"
                    class=format!("ml-auto {SECONDARY}")
                    on:click=move |_| { revoke.dispatch(RevokeToken { id: id.clone() }); }
                >"Revoke"</button>
            })}
        </li>
    }
}
