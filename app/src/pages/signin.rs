//! Sign-in and the first admin's setup. Both are plain forms posted to the
//! server's `/auth/…` routes (they set the session cookie), so they work
//! before the page's JavaScript has loaded; a failure comes back as
//! `?error=<code>`, shown here as a message.

use super::form::{LoginField, PageTitle, PasswordField, INPUT, PANEL, PRIMARY};
use super::ErrorNote;
use crate::api::accounts::setup_link_open;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// What a failed form's error code means to the person who sent it. A
/// failed sign-in never says whether the account exists.
pub(super) fn message(code: &str) -> &'static str {
    match code {
        "wrong" => "Wrong login or password.",
        "limited" => "Too many attempts: wait a minute, then try again.",
        "busy" => "The server is busy checking other sign-ins: try again in a moment.",
        "taken" => "That login is taken.",
        "refused" => "This link is no longer valid: look for the current one in the server's log.",
        _ => {
            "That did not work: a login is letters, digits or . - _ @, and a password at \
              least 8 characters, typed the same twice."
        }
    }
}

#[component]
pub fn SignInPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || query.read().get("error").map(|c| message(&c));
    let next = move || query.read().get("next").unwrap_or_else(|| "/".into());
    view! {
        <div class="mx-auto max-w-sm">
            <PageTitle title="Sign in" about="Sign in to run and follow your team's agents." />
            <form method="post" action="/auth/signin" class=format!("space-y-3 {PANEL}") data-testid="signin-form">
                <input type="hidden" name="next" value=next />
                <LoginField id="signin-login" />
                <PasswordField id="signin-password" name="password" label="Password" new=false />
                <button type="submit" class=format!("w-full {PRIMARY}")>"Sign in"</button>
                {move || error().map(|m| view! { <ErrorNote message=m.to_owned() /> })}
            </form>
            <p class="mt-3 text-xs text-zinc-500 dark:text-zinc-400">
                "No account yet? An admin adds you, under Users."
            </p>
        </div>
    }
}

/// The first admin's account, from the one-time link the server prints
/// while no user exists.
#[component]
pub fn SetupPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || query.read().get("error").map(|c| message(&c));
    let token = move || query.read().get("token").unwrap_or_default();
    let open = Resource::new(token, setup_link_open);
    view! {
        <div class="mx-auto max-w-sm">
            <PageTitle title="Set up Paddock" about="Create the first account: an admin, who then adds the team." />
            <Suspense>
                {move || Suspend::new(async move {
                    if open.await.unwrap_or(false) {
                        view! {
                            <form method="post" action="/auth/setup" class=format!("space-y-3 {PANEL}") data-testid="setup-form">
                                <input type="hidden" name="token" value=token />
                                <LoginField id="setup-login" />
                                <div>
                                    <label for="setup-name" class="text-sm font-medium">"Display name"</label>
                                    <input id="setup-name" name="display_name" autocomplete="name" class=INPUT />
                                </div>
                                <PasswordField id="setup-password" name="password" label="Password" new=true />
                                <PasswordField id="setup-confirm" name="confirm" label="Password again" new=true />
                                <button type="submit" class=format!("w-full {PRIMARY}")>"Create admin and sign in"</button>
                                {move || error().map(|m| view! { <ErrorNote message=m.to_owned() /> })}
                            </form>
                        }.into_any()
                    } else {
                        view! {
                            <p class=format!("text-sm {PANEL}") data-testid="setup-closed">
                                "This setup link is used up or out of date: a link works once, until Paddock restarts, and only while no account exists. "
                                <a href="/signin" class="font-medium underline">"Sign in"</a>
                                ", or ask an admin for an account (or run "<code>"paddock user add"</code>" on the server)."
                            </p>
                        }.into_any()
                    }
                })}
            </Suspense>
        </div>
    }
}
