//! Wide or narrow: on wide screens (90rem: 1440 px at the default font
//! size) a session's page shows the sessions beside it and its workspace
//! beside the transcript; narrower, one at a time, as tabs. What is wide
//! follows [`use_wide`], which is narrow on the server and until the page
//! runs (effects run once it is hydrated), so the page hydrates as it was
//! rendered, and without JavaScript the narrow layout holds.

use leptos::prelude::*;

/// Wide, as a media query.
#[cfg(feature = "hydrate")]
const WIDE: &str = "(min-width: 90rem)";

#[derive(Clone, Copy)]
struct Wide(Memo<bool>);

/// Starts following the window's width (once, in the app's root).
pub fn provide() {
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    let (wide, set_wide) = signal(false);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        use wasm_bindgen::prelude::*;
        let Ok(Some(query)) = window().match_media(WIDE) else {
            return;
        };
        set_wide.set(query.matches());
        let on_change = Closure::<dyn FnMut()>::new({
            let query = query.clone();
            move || set_wide.set(query.matches())
        });
        let _ =
            query.add_event_listener_with_callback("change", on_change.as_ref().unchecked_ref());
        on_change.forget(); // the page's, for as long as it lives
    });
    // A memo: what it shows is made again only when the width crosses.
    provide_context(Wide(Memo::new(move |_| wide.get())));
}

/// Whether the window is wide (tracked).
pub fn use_wide() -> Signal<bool> {
    let Wide(wide) = expect_context();
    wide.into()
}
