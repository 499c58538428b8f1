//! Paddock's dashboard: pages, components, shared types and the server
//! functions they call. Rendered on the server (`ssr`) and hydrated in the
//! browser (`hydrate`) from this one crate.

pub mod accounts;
pub mod agents;
pub mod api;
mod attention;
pub mod changes;
mod copy;
pub mod domain;
pub mod egress;
pub mod files;
mod layout;
mod live;
pub mod markdown;
pub mod notifications;
mod pages;
mod sessions_feed;
mod shortcuts;
pub mod skills;
pub mod text;
pub mod transcript;
pub mod triggers;
pub mod workspace_source;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    path, SsrMode,
};

/// Who is signed in, with their pages (and an admin's), the keyboard
/// shortcuts' help, and sign-out; with sign-in off, says so. Nothing for an
/// anonymous visitor (the sign-in page).
#[component]
fn AccountMenu(shortcuts_help: RwSignal<bool>) -> impl IntoView {
    let me = Resource::new(|| (), |_| api::accounts::whoami());
    let menu = NodeRef::<leptos::html::Details>::new();
    let link = "block rounded px-3 py-1.5 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800";
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                me.await.ok().flatten().map(|caller| {
                    let admin = caller.is_admin();
                    let signed_in = caller.user.is_some();
                    view! {
                        <details node_ref=menu class="relative" data-testid="account-menu">
                            <summary class="cursor-pointer list-none rounded-md px-2 py-1 text-sm font-medium hover:bg-zinc-100 dark:hover:bg-zinc-800" data-testid="account-name">
                                {caller.display_name.clone()}
                                <span class="ml-1 text-xs font-normal text-zinc-500">{caller.role.to_string()}</span>
                            </summary>
                            <div class="absolute right-0 z-10 mt-1 w-48 rounded-md border border-zinc-200 bg-white py-1 shadow-lg dark:border-zinc-700 dark:bg-zinc-900">
                                {signed_in.then(|| view! {
                                    <A href="/account" attr:class=link>"Account"</A>
                                    <A href="/tokens" attr:class=link>"API tokens"</A>
                                })}
                                <A href="/credentials" attr:class=link>"Credentials"</A>
                                <button type="button" data-testid="open-shortcuts" class=format!("w-full text-left {link}") on:click=move |_| {
                                    // The help instead of the menu.
                                    if let Some(menu) = menu.get_untracked() {
                                        let _ = menu.remove_attribute("open");
                                    }
                                    shortcuts_help.set(true);
                                }>
                                    "Keyboard shortcuts"
                                </button>
                                {(admin && signed_in).then(|| view! {
                                    <A href="/users" attr:class=link>"Users"</A>
                                    <A href="/audit" attr:class=link>"Audit log"</A>
                                })}
                                {if signed_in {
                                    view! {
                                        <form method="post" action="/auth/signout">
                                            <button type="submit" data-testid="signout" class=format!("w-full text-left {link}")>"Sign out"</button>
                                        </form>
                                    }.into_any()
                                } else {
                                    view! { <p class="px-3 py-1.5 text-xs text-zinc-500">"Sign-in is off (local only)"</p> }.into_any()
                                }}
                            </div>
                        </details>
                    }
                })
            })}
        </Suspense>
    }
}

/// Says plainly when sessions run in a weaker sandbox than a closed
/// container (the local backend), on every page but those before sign-in.
#[component]
fn SandboxWarning() -> impl IntoView {
    let info = Resource::new(
        || (),
        |_| async {
            match api::accounts::whoami().await? {
                Some(_) => api::get_server_info().await.map(Some),
                None => Ok(None),
            }
        },
    );
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                info.await.ok().flatten().and_then(|i| i.sandbox_warning).map(|warning| view! {
                    <div role="status" data-testid="sandbox-warning" class="border-b border-amber-300 bg-amber-50 text-amber-900 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-200">
                        <p class="mx-auto max-w-5xl px-4 py-2 text-sm"><strong>"Weaker isolation: "</strong>{warning}</p>
                    </div>
                })
            })}
        </Suspense>
    }
}

/// The page's main column: a session's page takes a wide screen's whole
/// width (sessions, transcript, workspace), every other page reads best
/// narrower.
#[component]
fn Main(children: Children) -> impl IntoView {
    let path = leptos_router::hooks::use_location().pathname;
    let wide = layout::use_wide();
    let class = move || {
        let whole = wide.get() && path.with(|p| p.starts_with("/sessions/"));
        format!(
            "mx-auto px-4 py-6 {}",
            if whole { "max-w-none" } else { "max-w-5xl" }
        )
    };
    view! { <main class=class>{children()}</main> }
}

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    allow_only_own_scripts();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.ico" sizes="16x16 32x32 48x48" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                // The session page's terminals (pages/session/terminal.rs).
                <script src="/terminal.js" defer=true></script>
                <MetaTags />
            </head>
            <body class="min-h-screen bg-zinc-50 text-zinc-900 antialiased dark:bg-zinc-950 dark:text-zinc-100">
                <App />
            </body>
        </html>
    }
}

/// A page runs the site's own scripts and the inline ones it was rendered
/// with (Leptos marks them with this answer's nonce), and compiles the
/// site's WebAssembly: nothing else, so text that got into the page as
/// HTML by a mistake cannot run. A policy of its own, beside the one the
/// server gives every answer (both hold).
fn allow_only_own_scripts() {
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(options)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        let policy = format!("script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'");
        if let Ok(policy) = http::HeaderValue::from_str(&policy) {
            options.append_header(http::header::CONTENT_SECURITY_POLICY, policy);
        }
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    pages::provide_clock();
    layout::provide();
    sessions_feed::provide();
    let attention = attention::provide();
    let shortcuts_help = RwSignal::new(false);
    Effect::new(|_| copy::listen());

    // Effects run only in the browser, so this marks the moment the page is
    // interactive; end-to-end tests wait for it before clicking.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/paddock.css" />
        // "(2) …": how many sessions need you, in front of every page's title.
        <Title text="Paddock" formatter=move |text| attention::title(attention.list.with(Vec::len), text) />
        <Router>
            <header class="border-b border-zinc-200 bg-white/80 backdrop-blur dark:border-zinc-800 dark:bg-zinc-900/80">
                <nav class="mx-auto flex max-w-5xl items-center gap-3 px-4 py-3">
                    <A href="/" attr:class="flex items-center gap-2 font-semibold tracking-tight">
                        <span aria-hidden="true" class="inline-block h-3 w-3 rounded-sm bg-amber-500"></span>
                        "Paddock"
                    </A>
                    <span class="hidden text-sm text-zinc-500 sm:inline dark:text-zinc-400">"Claude agents in closed sandboxes"</span>
                    <A href="/agents" attr:class="rounded-md px-2 py-1 text-sm font-medium hover:bg-zinc-100 dark:hover:bg-zinc-800" attr:data-testid="nav-agents">"Agents"</A>
                    <div class="ml-auto flex items-center gap-2">
                        <attention::NotifySwitch />
                        <AccountMenu shortcuts_help />
                    </div>
                </nav>
            </header>
            <attention::Watch />
            <shortcuts::Shortcuts help=shortcuts_help />
            <SandboxWarning />
            <Main>
                // Async: pages arrive complete, so they read well without
                // JavaScript and set their status (404) before the first byte.
                <Routes fallback=pages::NotFound>
                    <Route path=path!("") view=pages::SessionsPage ssr=SsrMode::Async />
                    <Route path=path!("sessions/:id") view=pages::SessionPage ssr=SsrMode::Async />
                    <Route path=path!("signin") view=pages::SignInPage ssr=SsrMode::Async />
                    <Route path=path!("setup") view=pages::SetupPage ssr=SsrMode::Async />
                    <Route path=path!("account") view=pages::AccountPage ssr=SsrMode::Async />
                    <Route path=path!("tokens") view=pages::TokensPage ssr=SsrMode::Async />
                    <Route path=path!("credentials") view=pages::CredentialsPage ssr=SsrMode::Async />
                    <Route path=path!("agents") view=pages::AgentsPage ssr=SsrMode::Async />
                    <Route path=path!("agents/:id") view=pages::AgentPage ssr=SsrMode::Async />
                    <Route path=path!("users") view=pages::UsersPage ssr=SsrMode::Async />
                    <Route path=path!("audit") view=pages::AuditPage ssr=SsrMode::Async />
                </Routes>
            </Main>
        </Router>
    }
}
