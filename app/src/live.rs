//! Live updates in the browser: a Server-Sent Events subscription through the
//! browser's own `EventSource`, which reconnects by itself after network
//! errors and resumes with `Last-Event-ID`. When the browser gives up (the
//! server answered with an error, e.g. while it restarts behind a proxy),
//! this opens a fresh one after a pause, from the URL the caller computes
//! then, so it resumes from the newest event the page holds.
//!
//! On the server (the first render) there is nothing to subscribe to; the
//! page is rendered from the store and subscribes once hydrated.

use leptos::prelude::*;

/// The state of the live connection, for the indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Live,
    /// Only the browser reconnects.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    Reconnecting,
}

impl Link {
    pub fn label(self) -> &'static str {
        match self {
            Link::Connecting => "Connecting…",
            Link::Live => "Live",
            Link::Reconnecting => "Reconnecting…",
        }
    }
}

/// Subscribes, for as long as the current reactive owner lives, to the SSE
/// stream at `url()`, calling `on_message(event_name, data)` for every frame
/// named in `names`.
#[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
pub fn subscribe(
    url: impl Fn() -> String + 'static,
    names: &'static [&'static str],
    on_message: impl Fn(&str, String) + 'static,
    link: WriteSignal<Link>,
) {
    #[cfg(feature = "hydrate")]
    browser::subscribe(url, names, on_message, link);
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::Link;
    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;
    use wasm_bindgen::prelude::*;
    use web_sys::{EventSource, MessageEvent};

    /// How long to wait before opening a new connection after the browser
    /// gave up on one.
    const RETRY: Duration = Duration::from_secs(2);

    /// One open `EventSource` and the callbacks it holds.
    struct Connection {
        source: EventSource,
        _callbacks: Vec<Closure<dyn FnMut(web_sys::Event)>>,
    }

    struct State {
        url: Box<dyn Fn() -> String>,
        names: &'static [&'static str],
        on_message: Rc<dyn Fn(&str, String)>,
        link: WriteSignal<Link>,
        current: Option<Connection>,
        closed: bool,
    }

    pub fn subscribe(
        url: impl Fn() -> String + 'static,
        names: &'static [&'static str],
        on_message: impl Fn(&str, String) + 'static,
        link: WriteSignal<Link>,
    ) {
        let state = Rc::new(RefCell::new(State {
            url: Box::new(url),
            names,
            on_message: Rc::new(on_message),
            link,
            current: None,
            closed: false,
        }));
        connect(&state);
        let state = SendWrapper::new(state);
        on_cleanup(move || {
            let mut s = state.borrow_mut();
            s.closed = true;
            if let Some(c) = s.current.take() {
                c.source.close();
            }
        });
    }

    fn connect(state: &Rc<RefCell<State>>) {
        let mut s = state.borrow_mut();
        if s.closed {
            return;
        }
        let url = (s.url)();
        let Ok(source) = EventSource::new(&url) else {
            s.link.set(Link::Reconnecting);
            drop(s);
            retry(state);
            return;
        };
        let mut callbacks = Vec::new();
        for &name in s.names {
            let on_message = s.on_message.clone();
            let cb = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
                if let Some(data) = e
                    .dyn_ref::<MessageEvent>()
                    .and_then(|m| m.data().as_string())
                {
                    on_message(name, data);
                }
            });
            let _ = source.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
            callbacks.push(cb);
        }
        let link = s.link;
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| link.set(Link::Live));
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        callbacks.push(on_open);
        let weak = Rc::downgrade(state);
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let Some(state) = weak.upgrade() else { return };
            link.set(Link::Reconnecting);
            let gave_up = state
                .borrow()
                .current
                .as_ref()
                .is_some_and(|c| c.source.ready_state() == EventSource::CLOSED);
            if gave_up {
                retry(&state);
            }
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        callbacks.push(on_error);
        if let Some(old) = s.current.replace(Connection {
            source,
            _callbacks: callbacks,
        }) {
            old.source.close();
        }
    }

    fn retry(state: &Rc<RefCell<State>>) {
        let weak = Rc::downgrade(state);
        set_timeout(
            move || {
                if let Some(state) = weak.upgrade() {
                    connect(&state);
                }
            },
            RETRY,
        );
    }
}
