//! Copy buttons: a `[data-copy]` button copies the text of the `<pre>` in
//! its `[data-copy-scope]` to the clipboard, and says so for a moment. One
//! listener serves the whole page, so buttons inside rendered Markdown (an
//! HTML string) work like those in components. Without JavaScript the
//! buttons are hidden (`style/main.css`).

/// Starts the page's one listener (once, in the app's root).
pub fn listen() {
    #[cfg(feature = "hydrate")]
    browser::listen();
}

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::*;
    use std::time::Duration;
    use wasm_bindgen::prelude::*;
    use web_sys::Element;

    /// How long the button says "Copied".
    const SAID: Duration = Duration::from_millis(1500);

    pub fn listen() {
        let on_click = Closure::<dyn FnMut(web_sys::MouseEvent)>::new(|e: web_sys::MouseEvent| {
            let button = e
                .target()
                .and_then(|t| t.dyn_into::<Element>().ok())
                .and_then(|el| el.closest("[data-copy]").ok().flatten());
            let Some(button) = button else { return };
            let pre = button
                .closest("[data-copy-scope]")
                .ok()
                .flatten()
                .and_then(|scope| scope.query_selector("pre").ok().flatten());
            let Some(pre) = pre else { return };
            let navigator = window().navigator();
            let has_clipboard =
                web_sys::js_sys::Reflect::has(&navigator, &"clipboard".into()).unwrap_or(false);
            if !has_clipboard {
                // Only secure pages (https, or loopback) have the clipboard:
                // select the text for the person to copy.
                if let Ok(Some(selection)) = window().get_selection() {
                    let _ = selection.select_all_children(&pre);
                }
                button.set_text_content(Some("Selected: press Ctrl+C"));
                set_timeout(move || button.set_text_content(Some("Copy")), SAID * 2);
                return;
            }
            let text = pre.text_content().unwrap_or_default();
            let written = navigator.clipboard().write_text(&text);
            leptos::task::spawn_local(async move {
                let copied = wasm_bindgen_futures::JsFuture::from(written).await.is_ok();
                button.set_text_content(Some(if copied { "Copied" } else { "Copy failed" }));
                set_timeout(move || button.set_text_content(Some("Copy")), SAID);
            });
        });
        let _ =
            document().add_event_listener_with_callback("click", on_click.as_ref().unchecked_ref());
        // The page's own listener, for as long as the page lives.
        on_click.forget();
    }
}
