//! Users: add someone, change their role, disable them (they are signed out
//! at once, their tokens stop working) or set a new password for them.

use super::super::form::{
    submitted, LoginField, PageTitle, PasswordField, INPUT, PANEL, PRIMARY, SECONDARY,
};
use super::super::{format_time, ErrorNote, When};
use crate::accounts::{Role, User, PASSWORD_MIN_CHARS};
use crate::api::accounts::{list_users, AddUser, ChangeUser, ResetPassword};
use leptos::prelude::*;

#[component]
pub fn UsersPage() -> impl IntoView {
    let add = ServerAction::<AddUser>::new();
    let change = ServerAction::<ChangeUser>::new();
    let reset = ServerAction::<ResetPassword>::new();
    let users = Resource::new(
        move || (add.version().get(), change.version().get()),
        |_| list_users(),
    );
    let submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(field) = submitted(&ev) else { return };
        add.dispatch(AddUser {
            login: field("login").unwrap_or_default(),
            display_name: field("display_name").unwrap_or_default(),
            role: field("role").unwrap_or_default(),
            password: field("password").unwrap_or_default(),
        });
    };
    let role_options = |selected: Role| {
        Role::ALL
            .iter()
            .map(|r| view! { <option value=r.as_str() selected=*r == selected>{r.as_str()}</option> })
            .collect_view()
    };
    view! {
        <div class="space-y-4">
            <PageTitle title="Users" about="Admins manage users, credentials and every session; members run their own sessions and those shared with them; viewers read what is shared with them." />
            <form on:submit=submit class=format!("grid gap-3 sm:grid-cols-5 sm:items-end {PANEL}") data-testid="add-user-form">
                <LoginField id="user-login" autocomplete="off" />
                <div>
                    <label for="user-name" class="text-sm font-medium">"Display name"</label>
                    <input id="user-name" name="display_name" autocomplete="off" class=INPUT />
                </div>
                <div>
                    <label for="user-role" class="text-sm font-medium">"Role"</label>
                    <select id="user-role" name="role" class=INPUT>{role_options(Role::Member)}</select>
                </div>
                <PasswordField id="user-password" name="password" label="First password" new=true />
                <button type="submit" class=PRIMARY disabled=move || add.pending().get()>"Add user"</button>
            </form>
            {move || add.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            {move || change.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            {move || reset.value().get().map(|r| match r {
                Ok(()) => view! { <p role="status" class="text-sm text-emerald-700 dark:text-emerald-400">"Password set; that user is signed out everywhere, and their API tokens are revoked."</p> }.into_any(),
                Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
            })}
            <Suspense>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(list) => view! {
                            <ul class="divide-y divide-zinc-200 rounded-lg border border-zinc-200 bg-white dark:divide-zinc-800 dark:border-zinc-800 dark:bg-zinc-900" data-testid="user-list">
                                {list.into_iter().map(|u| view! { <UserRow u change reset /> }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

#[component]
fn UserRow(
    u: User,
    change: ServerAction<ChangeUser>,
    reset: ServerAction<ResetPassword>,
) -> impl IntoView {
    let id = u.id.to_string();
    let (role_id, toggle_id, reset_id) = (id.clone(), id.clone(), id);
    let on_role = move |ev: leptos::ev::Event| {
        change.dispatch(ChangeUser {
            id: role_id.clone(),
            role: Some(event_target_value(&ev)),
            disabled: None,
        });
    };
    let disabled = u.disabled;
    let on_toggle = move |_| {
        change.dispatch(ChangeUser {
            id: toggle_id.clone(),
            role: None,
            disabled: Some((!disabled).to_string()),
        });
    };
    let on_reset = move |ev: leptos::ev::SubmitEvent| {
        let Some(field) = submitted(&ev) else { return };
        reset.dispatch(ResetPassword {
            id: reset_id.clone(),
            password: field("password").unwrap_or_default(),
        });
        event_target::<leptos::web_sys::HtmlFormElement>(&ev).reset();
    };
    let seen = u.last_sign_in_at.map_or_else(
        || "never signed in".to_owned(),
        |at| format!("signed in {}", format_time(at)),
    );
    view! {
        <li class="flex flex-wrap items-center gap-3 px-4 py-3 text-sm" data-testid="user-row" data-login=u.login.clone()>
            <div class="min-w-40 flex-1">
                <p class="font-medium">{u.display_name.clone()} <span class="text-zinc-500">{format!(" ({})", u.login)}</span></p>
                <p class="text-xs text-zinc-500 dark:text-zinc-400">
                    "added "<When at=u.created_at />{format!(" · {seen}")}
                    {disabled.then(|| view! { <span data-testid="user-disabled" class="ml-1 font-medium text-red-700 dark:text-red-400">" · disabled"</span> })}
                </p>
            </div>
            <label class="sr-only" for=format!("role-{}", u.login)>"Role"</label>
            <select id=format!("role-{}", u.login) data-testid="user-role" on:change=on_role class="rounded-md border border-zinc-300 bg-white px-2 py-1 text-sm dark:border-zinc-700 dark:bg-zinc-900">
                {Role::ALL.iter().map(|r| view! { <option value=r.as_str() selected=*r == u.role>{r.as_str()}</option> }).collect_view()}
            </select>
            <button type="button" data-testid="toggle-user" on:click=on_toggle class=SECONDARY>
                {if disabled { "Enable" } else { "Disable" }}
            </button>
            <form on:submit=on_reset class="flex items-center gap-2">
                <label class="sr-only" for=format!("reset-{}", u.login)>"New password"</label>
                <input id=format!("reset-{}", u.login) name="password" type="password" required minlength=PASSWORD_MIN_CHARS autocomplete="new-password" placeholder="New password" class="w-36 rounded-md border border-zinc-300 bg-white px-2 py-1 text-sm dark:border-zinc-700 dark:bg-zinc-900" />
                <button type="submit" class=SECONDARY>"Set"</button>
            </form>
        </li>
    }
}
