//! Desktop notifications: the switch (the browser's permission and the
//! user's choice, remembered by the browser) and one notification per
//! change of a session that needs you.

use super::{storage, Why, PENDING_ANCHOR};
use crate::domain::SessionId;
use leptos::prelude::*;
use leptos_router::NavigateOptions;
use wasm_bindgen::prelude::*;
use web_sys::{Notification, NotificationOptions, NotificationPermission};

/// `"on"` once the user turned notifications on.
pub(super) const NOTIFY: &str = "paddock.attention.notify";

/// The switch as it stands: `None` where notifications cannot be shown.
pub(super) fn switch_state() -> Option<bool> {
    let has = web_sys::js_sys::Reflect::has(&window(), &"Notification".into()).unwrap_or(false);
    if !has {
        return None;
    }
    let on = storage()
        .and_then(|s| s.get_item(NOTIFY).ok().flatten())
        .as_deref()
        == Some("on");
    match Notification::permission() {
        NotificationPermission::Denied => None,
        NotificationPermission::Granted => Some(on),
        _ => Some(false),
    }
}

/// Turns notifications off, or asks the browser and turns them on.
pub(super) fn toggle(notify: RwSignal<Option<bool>>) {
    let set = move |on: bool| {
        if let Some(s) = storage() {
            let _ = s.set_item(NOTIFY, if on { "on" } else { "off" });
        }
        notify.set(switch_state());
    };
    if notify.get_untracked() == Some(true) {
        set(false);
        return;
    }
    let Ok(asked) = Notification::request_permission() else {
        return;
    };
    leptos::task::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(asked).await;
        set(Notification::permission() == NotificationPermission::Granted);
    });
}

/// One notification per session, why and when (the tag): every tab sees
/// the change, the browser shows it once. Clicking it opens the session,
/// at the request, in this tab.
pub(super) fn notify(
    id: SessionId,
    name: &str,
    why: Why,
    when: i64,
    navigate: impl Fn(&str, NavigateOptions) + 'static,
) {
    let options = NotificationOptions::new();
    options.set_body(&format!("{name} {}", why.says()));
    options.set_tag(&format!("paddock:{id}:{}:{when}", why.as_str()));
    options.set_icon("/favicon.svg");
    let Ok(shown) = Notification::new_with_options(&format!("Paddock: {name}"), &options) else {
        return;
    };
    let at = match why {
        Why::Asks => PENDING_ANCHOR,
        _ => "",
    };
    let target = format!("/sessions/{id}{at}");
    let on_click = Closure::<dyn FnMut()>::new({
        let shown = shown.clone();
        move || {
            let _ = window().focus();
            shown.close();
            navigate(&target, NavigateOptions::default());
        }
    });
    shown.set_onclick(Some(on_click.as_ref().unchecked_ref()));
    // Held until the notification closes (clicked, dismissed, or replaced
    // by a newer one of its tag), not for as long as the tab lives.
    let held = std::cell::Cell::new(Some(on_click));
    let on_close = Closure::once_into_js({
        let shown = shown.clone();
        move || {
            shown.set_onclick(None);
            drop(held.take());
        }
    });
    shown.set_onclose(Some(on_close.unchecked_ref()));
}
