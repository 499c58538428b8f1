//! Live updates in the browser. Where the browser has `SharedWorker`, all
//! of its dashboard tabs share one connection (`/live-worker.js`, over
//! `GET /api/live`), because over HTTP/1.1 a browser opens at most six to
//! one origin and tabs with streams of their own stop loading at the
//! seventh. The worker resumes each transcript after the last event it
//! passed on when it reconnects, and a tab that joins late catches up from
//! the newest event it holds; tabs drop what they already have.
//!
//! Elsewhere (or in a tab whose worker could not start: it loads again once
//! without it) each subscription is a Server-Sent Events stream of its own,
//! through the browser's `EventSource`, which reconnects by itself after
//! network errors and resumes with `Last-Event-ID`. When the browser gives
//! up (the server answered with an error, e.g. while it restarts behind a
//! proxy), this opens a fresh one after a pause, from the newest event the
//! page holds then, unless the session is gone for this reader (deleted,
//! or no longer shared with them), which reading it says.
//!
//! On the server (the first render) there is nothing to subscribe to; the
//! page is rendered from the store and subscribes once hydrated.

use crate::domain::SessionId;
use leptos::prelude::*;

/// The state of the live connection, for the indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Connecting,
    /// Made by the browser's connection only.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    Live,
    /// Only the browser (or its shared worker) reconnects.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    Reconnecting,
    /// What it followed is gone for this reader (deleted, or no longer
    /// shared with them): nothing more will come.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    Gone,
}

impl Link {
    pub fn label(self) -> &'static str {
        match self {
            Link::Connecting => "Connecting…",
            Link::Live => "Live",
            Link::Reconnecting => "Reconnecting…",
            Link::Gone => "Gone: deleted, or no longer shared with you",
        }
    }
}

/// What a page follows.
pub enum Topic {
    /// The sessions list: `session`, `deleted` and `resync` frames.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    List,
    /// A session's transcript after the newest event the page holds (read
    /// at each (re)connection): `event`, `html` and `delta` frames.
    Session {
        id: SessionId,
        newest: Box<dyn Fn() -> i64>,
    },
}

impl Topic {
    /// The stream of its own.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn url(&self) -> String {
        match self {
            Topic::List => "/api/updates".into(),
            Topic::Session { id, newest } => {
                format!("/api/sessions/{id}/events?html=true&after={}", newest())
            }
        }
    }
}

/// Subscribes, for as long as the current reactive owner lives, to `topic`,
/// calling `on_message(frame_name, data)` for every frame named in `names`.
#[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
pub fn subscribe(
    topic: Topic,
    names: &'static [&'static str],
    on_message: impl Fn(&str, String) + 'static,
    link: WriteSignal<Link>,
) {
    #[cfg(feature = "hydrate")]
    match shared::Worker::get() {
        Some(worker) => shared::subscribe(worker, topic, names, on_message, link),
        None => browser::subscribe(topic, names, on_message, link),
    }
}

/// Through the browser's one connection, held by the shared worker.
#[cfg(feature = "hydrate")]
mod shared {
    use super::{backoff, Link, Topic};
    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::rc::Rc;
    use std::time::Duration;
    use wasm_bindgen::prelude::*;
    use web_sys::js_sys::{global, Array, Reflect};
    use web_sys::{MessageEvent, MessagePort, PageTransitionEvent, SharedWorker};

    /// The worker's script; its version changes with what it speaks, so a
    /// browser never keeps an older worker for a newer page.
    const SCRIPT: &str = "/live-worker.js?v=3";
    /// Set in this tab's `sessionStorage` once its worker failed to start
    /// (when, in ms since the epoch): it streams on its own for
    /// [`FAILED_FOR`] then, and tries the worker again after (a script
    /// that did not load once, the server restarting, loads the next time).
    const FAILED: &str = "paddock.live.worker-failed";
    const FAILED_FOR: Duration = Duration::from_secs(600);
    /// How often a tab tells the worker it is still there.
    const PING: Duration = Duration::from_secs(20);

    struct Sub {
        topic: Rc<Topic>,
        names: &'static [&'static str],
        on_message: Rc<dyn Fn(&str, String)>,
        link: WriteSignal<Link>,
        /// Times in a row the server ended it to be followed again, with
        /// nothing between (a session it cannot read now): each waits
        /// longer ([`backoff`]).
        failures: Rc<Cell<u32>>,
    }

    /// This tab's port to the worker and what it follows through it.
    pub struct Worker {
        port: MessagePort,
        subs: RefCell<HashMap<u32, Sub>>,
        next: Cell<u32>,
        /// Whether the tab is asking if it is still signed in.
        asking: Cell<bool>,
    }

    thread_local! {
        static WORKER: RefCell<Option<Option<Rc<Worker>>>> = const { RefCell::new(None) };
    }

    impl Worker {
        /// This tab's worker, started on first use; none where the browser
        /// has no `SharedWorker`.
        pub fn get() -> Option<Rc<Worker>> {
            WORKER.with(|w| w.borrow_mut().get_or_insert_with(Self::start).clone())
        }

        fn start() -> Option<Rc<Worker>> {
            let has = Reflect::has(&global(), &"SharedWorker".into()).unwrap_or(false);
            let session = web_sys::window()?.session_storage().ok().flatten();
            let now = web_sys::js_sys::Date::now();
            let failed = session
                .as_ref()
                .and_then(|s| s.get_item(FAILED).ok().flatten())
                .and_then(|at| at.parse::<f64>().ok())
                .is_some_and(|at| now - at < FAILED_FOR.as_millis() as f64);
            if !has || failed {
                return None;
            }
            let worker = SharedWorker::new_with_str(SCRIPT, "paddock-live").ok()?;
            // A worker that cannot start (its script did not load): this tab
            // loads again once and follows on streams of its own.
            let on_error = Closure::once_into_js(move || {
                if let Some(s) = session {
                    let _ = s.set_item(FAILED, &now.to_string());
                }
                let _ = window().location().reload();
            });
            worker.set_onerror(Some(on_error.unchecked_ref()));
            let port = worker.port();
            let this = Rc::new(Worker {
                port: port.clone(),
                subs: RefCell::new(HashMap::new()),
                next: Cell::new(1),
                asking: Cell::new(false),
            });
            let weak = Rc::downgrade(&this);
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                if let Some(this) = weak.upgrade() {
                    this.receive(&Array::from(&e.data()));
                }
            });
            port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            on_message.forget(); // lives as long as the page
            port.start();
            this.hello();
            let window = web_sys::window()?;
            let bye_port = port.clone();
            let bye = Closure::<dyn FnMut()>::new(move || {
                let _ = bye_port.post_message(&r#"{"op":"bye"}"#.into());
            });
            let _ =
                window.add_event_listener_with_callback("pagehide", bye.as_ref().unchecked_ref());
            bye.forget();
            // Back from the back-forward cache: the worker was told bye.
            let weak = Rc::downgrade(&this);
            let back =
                Closure::<dyn FnMut(PageTransitionEvent)>::new(move |e: PageTransitionEvent| {
                    if let Some(this) = weak.upgrade().filter(|_| e.persisted()) {
                        this.hello();
                        this.send_subs();
                    }
                });
            let _ =
                window.add_event_listener_with_callback("pageshow", back.as_ref().unchecked_ref());
            back.forget();
            let ping_port = port.clone();
            let ping = Closure::<dyn FnMut()>::new(move || {
                let _ = ping_port.post_message(&r#"{"op":"ping"}"#.into());
            });
            let _ = window.set_interval_with_callback_and_timeout_and_arguments_0(
                ping.as_ref().unchecked_ref(),
                PING.as_millis() as i32,
            );
            ping.forget();
            Some(this)
        }

        /// After the connection failed: signed out (here or in another
        /// tab, everywhere, or the account disabled), the page goes to the
        /// sign-in. Once at a time: every subscription is told of a
        /// failure.
        fn sign_in_if_signed_out(self: &Rc<Self>) {
            if self.asking.replace(true) {
                return;
            }
            let weak = Rc::downgrade(self);
            leptos::task::spawn_local(async move {
                let me = crate::api::accounts::whoami().await;
                if matches!(me, Ok(None)) {
                    super::go_to_sign_in();
                }
                if let Some(this) = weak.upgrade() {
                    this.asking.set(false);
                }
            });
        }

        /// Tells the worker this tab is new to it (else, having forgotten
        /// it, the worker asks for its subscriptions again).
        fn hello(&self) {
            self.send(serde_json::json!({"op": "hello"}));
        }

        fn send(&self, message: serde_json::Value) {
            let _ = self.port.post_message(&message.to_string().into());
        }

        fn send_sub(&self, id: u32) {
            let subs = self.subs.borrow();
            let Some(sub) = subs.get(&id) else { return };
            let message = match &*sub.topic {
                Topic::List => serde_json::json!({"op": "sub", "sub": id, "topic": "list"}),
                Topic::Session {
                    id: session,
                    newest,
                } => serde_json::json!({
                    "op": "sub", "sub": id, "topic": session.to_string(), "after": newest(),
                }),
            };
            drop(subs);
            self.send(message);
        }

        /// Says again everything this tab follows, after the worker forgot
        /// it (or it comes back from the back-forward cache): it may have
        /// missed frames, so its subscriptions catch up once open.
        fn send_subs(&self) {
            let ids: Vec<(u32, WriteSignal<Link>)> = self
                .subs
                .borrow()
                .iter()
                .map(|(id, s)| (*id, s.link))
                .collect();
            for (id, link) in ids {
                link.set(Link::Reconnecting);
                self.send_sub(id);
            }
        }

        /// `[sub, name, data]` from the worker.
        fn receive(self: &Rc<Self>, frame: &Array) {
            let (Some(id), Some(name), Some(data)) = (
                frame.get(0).as_f64().map(|n| n as u32),
                frame.get(1).as_string(),
                frame.get(2).as_string(),
            ) else {
                return;
            };
            if name == "resub" {
                // The worker forgot this tab (it was silent too long).
                self.send_subs();
                return;
            }
            let (link, on_message, names, failures) = {
                let subs = self.subs.borrow();
                let Some(sub) = subs.get(&id) else { return };
                (
                    sub.link,
                    sub.on_message.clone(),
                    sub.names,
                    sub.failures.clone(),
                )
            };
            match name.as_str() {
                // Also sent when the worker moved to a new connection
                // without missing anything: nothing to catch up on then.
                "open" => link.maybe_update(|l| std::mem::replace(l, Link::Live) != Link::Live),
                "error" => {
                    link.set(Link::Reconnecting);
                    self.sign_in_if_signed_out();
                }
                "closed" => {
                    if data == "invalid" {
                        // The page holds events past the session's newest:
                        // the server's history is another (its database was
                        // restored from a backup). Resuming cannot mend
                        // that; the page read afresh can.
                        let _ = window().location().reload();
                        return;
                    }
                    // Gone (deleted, or no longer shared) stays gone.
                    link.set(match data.as_str() {
                        "gone" => Link::Gone,
                        _ => Link::Reconnecting,
                    });
                    if data == "retry" {
                        failures.set(failures.get().saturating_add(1));
                        let weak = Rc::downgrade(self);
                        set_timeout(
                            move || {
                                if let Some(this) = weak.upgrade() {
                                    this.send_sub(id);
                                }
                            },
                            backoff(failures.get()),
                        );
                    }
                }
                name if names.contains(&name) => {
                    failures.set(0);
                    on_message(name, data)
                }
                _ => {}
            }
        }
    }

    pub fn subscribe(
        worker: Rc<Worker>,
        topic: Topic,
        names: &'static [&'static str],
        on_message: impl Fn(&str, String) + 'static,
        link: WriteSignal<Link>,
    ) {
        let id = worker.next.get();
        worker.next.set(id + 1);
        worker.subs.borrow_mut().insert(
            id,
            Sub {
                topic: Rc::new(topic),
                names,
                on_message: Rc::new(on_message),
                link,
                failures: Rc::new(Cell::new(0)),
            },
        );
        worker.send_sub(id);
        let worker = SendWrapper::new(worker);
        on_cleanup(move || {
            worker.subs.borrow_mut().remove(&id);
            worker.send(serde_json::json!({"op": "unsub", "sub": id}));
        });
    }
}

/// A tab found signed out (here or in another tab, everywhere, or its
/// account disabled) goes to the sign-in, and back here after it. Not a
/// reload, which would cancel this tab's own sign-out on its way there.
#[cfg(feature = "hydrate")]
fn go_to_sign_in() {
    let location = window().location();
    let here = format!(
        "{}{}",
        location.pathname().unwrap_or_default(),
        location.search().unwrap_or_default()
    );
    let next = String::from(web_sys::js_sys::encode_uri_component(&here));
    let _ = location.assign(&format!("/signin?next={next}"));
}

/// How long to wait before following again what failed.
#[cfg(feature = "hydrate")]
const RETRY: std::time::Duration = std::time::Duration::from_secs(2);
/// The longest a stream of its own waits before it tries again.
#[cfg(feature = "hydrate")]
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// How long to wait before following again what failed `failures` times
/// in a row: twice as long each time, up to [`RETRY_MAX`].
#[cfg(feature = "hydrate")]
fn backoff(failures: u32) -> std::time::Duration {
    (RETRY * 2u32.saturating_pow(failures.saturating_sub(1))).min(RETRY_MAX)
}

/// A stream of its own, where the browser has no `SharedWorker`.
#[cfg(feature = "hydrate")]
mod browser {
    use super::{backoff, Link, Topic};
    use crate::domain::AppError;
    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use std::cell::RefCell;
    use std::rc::Rc;
    use wasm_bindgen::prelude::*;
    use web_sys::{EventSource, MessageEvent};

    /// One open `EventSource` and the callbacks it holds.
    struct Connection {
        source: EventSource,
        _callbacks: Vec<Closure<dyn FnMut(web_sys::Event)>>,
    }

    struct State {
        topic: Topic,
        names: &'static [&'static str],
        on_message: Rc<dyn Fn(&str, String)>,
        link: WriteSignal<Link>,
        current: Option<Connection>,
        closed: bool,
        /// Tries in a row that failed, with no event between and none
        /// open for [`STEADY`]: each waits twice the one before, up to a
        /// minute.
        failures: u32,
        /// When the stream under way opened (ms since the epoch).
        opened_at: Option<f64>,
    }

    pub fn subscribe(
        topic: Topic,
        names: &'static [&'static str],
        on_message: impl Fn(&str, String) + 'static,
        link: WriteSignal<Link>,
    ) {
        let state = Rc::new(RefCell::new(State {
            topic,
            names,
            on_message: Rc::new(on_message),
            link,
            current: None,
            closed: false,
            failures: 0,
            opened_at: None,
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
        let url = s.topic.url();
        let Ok(source) = EventSource::new(&url) else {
            s.link.set(Link::Reconnecting);
            drop(s);
            retry(state);
            return;
        };
        let mut callbacks = Vec::new();
        for &name in s.names {
            let on_message = s.on_message.clone();
            let heard = Rc::downgrade(state);
            let cb = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
                if let Some(data) = e
                    .dyn_ref::<MessageEvent>()
                    .and_then(|m| m.data().as_string())
                {
                    if let Some(state) = heard.upgrade() {
                        state.borrow_mut().failures = 0;
                    }
                    on_message(name, data);
                }
            });
            let _ = source.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
            callbacks.push(cb);
        }
        let link = s.link;
        let opened = Rc::downgrade(state);
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            link.set(Link::Live);
            if let Some(state) = opened.upgrade() {
                state.borrow_mut().opened_at = Some(web_sys::js_sys::Date::now());
            }
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        callbacks.push(on_open);
        // The browser would try again every few seconds for ever (a stream
        // the server ended as failed, where it cannot read the session
        // now): this page does, waiting longer each time.
        let weak = Rc::downgrade(state);
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let Some(state) = weak.upgrade() else { return };
            link.set(Link::Reconnecting);
            {
                let mut s = state.borrow_mut();
                if let Some(c) = s.current.as_ref() {
                    c.source.close();
                }
                // A stream that held a while was no failure of its own.
                let now = web_sys::js_sys::Date::now();
                if s.opened_at
                    .take()
                    .is_some_and(|at| now - at >= STEADY.as_millis() as f64)
                {
                    s.failures = 0;
                }
            }
            retry_unless_gone(&state);
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

    /// The browser hides why it gave up, which reading the session says: a
    /// session's stream is refused (404) once it is deleted or no longer
    /// shared with this reader, and then nothing more will come; a reader
    /// signed out goes to the sign-in; a page that holds events the
    /// session no longer has (a database restored from a backup: its
    /// stream is refused as `invalid`) loads again, as the shared worker's
    /// tabs do. The list asks only whether its reader is signed in.
    fn retry_unless_gone(state: &Rc<RefCell<State>>) {
        let session = match &state.borrow().topic {
            Topic::Session { id, newest } => Some((*id, newest())),
            Topic::List => None,
        };
        let weak = Rc::downgrade(state);
        let Some((id, newest)) = session else {
            leptos::task::spawn_local(async move {
                let me = crate::api::accounts::whoami().await;
                let Some(state) = weak.upgrade() else { return };
                match me {
                    Ok(None) => super::go_to_sign_in(),
                    _ => retry(&state),
                }
            });
            return;
        };
        leptos::task::spawn_local(async move {
            let read = crate::api::get_session(id.to_string()).await;
            let Some(state) = weak.upgrade() else { return };
            if matches!(read, Err(AppError::Unauthenticated(_))) {
                return super::go_to_sign_in();
            }
            if matches!(&read, Ok(s) if s.last_seq < newest) {
                let _ = leptos::prelude::window().location().reload();
                return;
            }
            if !matches!(read, Err(AppError::NotFound(_) | AppError::Forbidden(_))) {
                return retry(&state);
            }
            let mut s = state.borrow_mut();
            if s.closed {
                return;
            }
            s.closed = true;
            s.link.set(Link::Gone);
            if let Some(c) = s.current.take() {
                c.source.close();
            }
        });
    }

    /// How long a stream stays open to count as having worked.
    const STEADY: std::time::Duration = std::time::Duration::from_secs(10);

    fn retry(state: &Rc<RefCell<State>>) {
        let failures = {
            let mut s = state.borrow_mut();
            s.failures = s.failures.saturating_add(1);
            s.failures
        };
        let wait = backoff(failures);
        let weak = Rc::downgrade(state);
        set_timeout(
            move || {
                if let Some(state) = weak.upgrade() {
                    connect(&state);
                }
            },
            wait,
        );
    }
}
