//! The signed-in person's own pages: their account (password, sign-out
//! everywhere), their API tokens and their saved credentials.

mod credentials;
mod tokens;

pub use credentials::CredentialsPage;
pub use tokens::TokensPage;

use super::form::{PageTitle, PasswordField, PANEL, PRIMARY, SECONDARY};
use super::signin::message;
use super::ErrorNote;
use crate::accounts::Caller;
use crate::api::accounts::whoami;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// Renders `signed_in` for a signed-in person, and says plainly what is
/// not there with sign-in off (the local operator has no account).
#[component]
pub(super) fn SignedIn<V: IntoView + 'static>(
    signed_in: impl Fn(Caller) -> V + Send + Sync + Copy + 'static,
) -> impl IntoView {
    let me = Resource::new(|| (), |_| whoami());
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(caller)) if caller.user.is_some() => signed_in(caller).into_any(),
                    Ok(_) => view! {
                        <p data-testid="sign-in-off" class=format!("text-sm {PANEL}")>
                            "Sign-in is off (PADDOCK_AUTH=off): this Paddock has one local operator and no accounts."
                        </p>
                    }.into_any(),
                    Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn AccountPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || {
        query.read().get("error").map(|c| match c.as_str() {
            "refused" => "The current password is wrong.",
            other => message(other),
        })
    };
    let changed = move || query.read().get("changed").is_some();
    view! {
        <div class="mx-auto max-w-xl space-y-4">
            <PageTitle title="Account" about="Your profile, password and devices." />
            <SignedIn signed_in=move |me: Caller| view! {
                <section class=PANEL data-testid="profile">
                    <dl class="grid grid-cols-3 gap-3 text-sm">
                        <div><dt class="text-xs text-zinc-500">"Name"</dt><dd>{me.display_name.clone()}</dd></div>
                        <div><dt class="text-xs text-zinc-500">"Login"</dt><dd>{me.login.clone()}</dd></div>
                        <div><dt class="text-xs text-zinc-500">"Role"</dt><dd data-testid="role">{me.role.to_string()}</dd></div>
                    </dl>
                </section>
                <form method="post" action="/auth/password" class=format!("space-y-3 {PANEL}") data-testid="password-form">
                    <h2 class="font-semibold">"Change password"</h2>
                    <PasswordField id="current-password" name="current" label="Current password" new=false />
                    <PasswordField id="new-password" name="password" label="New password" new=true />
                    <PasswordField id="confirm-password" name="confirm" label="New password again" new=true />
                    <button type="submit" class=PRIMARY>"Change password"</button>
                    <p class="text-xs text-zinc-500 dark:text-zinc-400">"Your other devices are signed out."</p>
                    {move || changed().then(|| view! { <p role="status" data-testid="password-changed" class="text-sm text-emerald-700 dark:text-emerald-400">"Password changed."</p> })}
                    {move || error().map(|m| view! { <ErrorNote message=m.to_owned() /> })}
                </form>
                <form method="post" action="/auth/signout-everywhere" class=format!("space-y-2 {PANEL}")>
                    <h2 class="font-semibold">"Devices"</h2>
                    <p class="text-sm text-zinc-500 dark:text-zinc-400">"Signs you out in every browser, this one too. API tokens stay valid: revoke them under Tokens."</p>
                    <button type="submit" data-testid="signout-everywhere" class=SECONDARY>"Sign out everywhere"</button>
                </form>
            } />
        </div>
    }
}
