//! Paddock's dashboard: pages, components, shared types and the server
//! functions they call. Rendered on the server (`ssr`) and hydrated in the
//! browser (`hydrate`) from this one crate.

pub mod api;
pub mod domain;
mod live;
pub mod markdown;
mod pages;
pub mod transcript;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    path, SsrMode,
};

/// Says plainly when sessions run in a weaker sandbox than a closed
/// container (the local backend), on every page.
#[component]
fn SandboxWarning() -> impl IntoView {
    let info = Resource::new(|| (), |_| api::get_server_info());
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                info.await.ok().and_then(|i| i.sandbox_warning).map(|warning| view! {
                    <div role="status" data-testid="sandbox-warning" class="border-b border-amber-300 bg-amber-50 text-amber-900 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-200">
                        <p class="mx-auto max-w-5xl px-4 py-2 text-sm"><strong>"Weaker isolation: "</strong>{warning}</p>
                    </div>
                })
            })}
        </Suspense>
    }
}

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body class="min-h-screen bg-zinc-50 text-zinc-900 antialiased dark:bg-zinc-950 dark:text-zinc-100">
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    // Effects run only in the browser, so this marks the moment the page is
    // interactive; end-to-end tests wait for it before clicking.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/paddock.css" />
        <Title text="Paddock" />
        <Router>
            <header class="border-b border-zinc-200 bg-white/80 backdrop-blur dark:border-zinc-800 dark:bg-zinc-900/80">
                <nav class="mx-auto flex max-w-5xl items-center gap-3 px-4 py-3">
                    <A href="/" attr:class="flex items-center gap-2 font-semibold tracking-tight">
                        <span aria-hidden="true" class="inline-block h-3 w-3 rounded-sm bg-amber-500"></span>
                        "Paddock"
                    </A>
                    <span class="text-sm text-zinc-500 dark:text-zinc-400">"Claude agents in closed sandboxes"</span>
                </nav>
            </header>
            <SandboxWarning />
            <main class="mx-auto max-w-5xl px-4 py-6">
                // Async: pages arrive complete, so they read well without
                // JavaScript and set their status (404) before the first byte.
                <Routes fallback=pages::NotFound>
                    <Route path=path!("") view=pages::SessionsPage ssr=SsrMode::Async />
                    <Route path=path!("sessions/:id") view=pages::SessionPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}
