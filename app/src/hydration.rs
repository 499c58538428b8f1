//! Taking over the server-rendered page. Each page's code is a file of its
//! own (`pages::lazy`), so hydration waits for that file before it reaches
//! the page, while the shell's effects already run. What must not change
//! the page before hydration has seen it as the server rendered it (the
//! clock turning times relative) waits for [`done`].

use leptos::prelude::*;

thread_local! {
    static DONE: ArcRwSignal<bool> = ArcRwSignal::new(false);
}

/// Whether the whole page is hydrated (tracked: effects that read it run
/// again when it is).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn done() -> bool {
    DONE.with(|done| done.get())
}

/// Hydrates the page with its first page's file; then the page is
/// interactive, which `data-hydrated` on the body tells end-to-end tests.
#[cfg(feature = "hydrate")]
pub fn hydrate() {
    // Not leptos' `spawn_local`: its executor starts inside the hydration.
    wasm_bindgen_futures::spawn_local(async {
        let body = document().body().expect("a page has a body");
        leptos::mount::hydrate_from_async(body.clone(), crate::App)
            .await
            .forget();
        DONE.with(|done| done.set(true));
        let _ = body.set_attribute("data-hydrated", "true");
    });
}
