//! Your sessions that need you: those asking for a decision, and those
//! that finished or failed while you were looking elsewhere. Every page says
//! how many in its title and favicon; the sidebar marks them; and, once you
//! turn it on, a desktop notification names the session and why, opening
//! it at the request when clicked. Only your own sessions count (for the
//! local operator, with sign-in off, all): an admin sees everyone's, and a
//! session shared with you is its owner's to answer.
//!
//! What this browser has noticed lives in its `localStorage`, so all its
//! tabs agree: the sessions that finished or failed unseen (cleared when a
//! visible tab shows one, or when it works again), and which session each
//! visible tab shows (refreshed while it is visible, forgotten when it is
//! hidden or silent): none is marked, and no notification is shown, for a
//! session someone is looking at. Every tab sees the same change on the
//! list's stream; a notification is tagged with the session, why and when,
//! so the browser shows each change once.

use crate::domain::{Session, SessionId, SessionStatus, UserId};
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use std::collections::BTreeMap;

/// The address fragment that brings a session's page to its pending
/// permission request.
pub const PENDING_ANCHOR: &str = "#pending";

/// Why a session needs you.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Why {
    Asks,
    Finished,
    Failed,
}

impl Why {
    /// For `localStorage` and the sidebar's `data-attention`.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Asks => "asks",
            Why::Finished => "finished",
            Why::Failed => "failed",
        }
    }

    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn parse(s: &str) -> Option<Self> {
        [Why::Asks, Why::Finished, Why::Failed]
            .into_iter()
            .find(|w| w.as_str() == s)
    }

    /// What the notification says.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn says(self) -> &'static str {
        match self {
            Why::Asks => "asks for your permission",
            Why::Finished => "finished",
            Why::Failed => "failed",
        }
    }
}

/// Whether going from `before` to `now` is news for you. A run ended by
/// Stop ends idle too, and counts as finished for whoever did not stop it.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn news(before: SessionStatus, now: SessionStatus) -> Option<Why> {
    use SessionStatus::*;
    let was_working = before.is_busy();
    match now {
        AwaitingPermission if before != AwaitingPermission => Some(Why::Asks),
        Idle if was_working => Some(Why::Finished),
        Error | Interrupted if was_working => Some(Why::Failed),
        _ => None,
    }
}

/// The sessions that need you, most urgent first, from each session's id,
/// status and last activity: those asking (the one waiting longest first),
/// then those that finished or failed unseen, newest first.
fn needing_you(
    sessions: impl IntoIterator<Item = (SessionId, SessionStatus, DateTime<Utc>)>,
    unseen: &BTreeMap<SessionId, Why>,
) -> Vec<(SessionId, Why)> {
    let mut list: Vec<(SessionId, Why, DateTime<Utc>)> = sessions
        .into_iter()
        .filter_map(|(id, status, at)| match status {
            SessionStatus::AwaitingPermission => Some((id, Why::Asks, at)),
            _ if status.is_busy() => None,
            _ => unseen.get(&id).map(|why| (id, *why, at)),
        })
        .collect();
    list.sort_by(
        |(_, a, at_a), (_, b, at_b)| match (*a == Why::Asks, *b == Why::Asks) {
            (true, true) => at_a.cmp(at_b),
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            (false, false) => at_b.cmp(at_a),
        },
    );
    list.into_iter().map(|(id, why, _)| (id, why)).collect()
}

/// The page's title with the count in front, as tabs show it: every
/// page's title goes through it. The server's is HTML-escaped, since
/// leptos_meta writes it into `<title>` as it is given (a session named
/// `</title><script>…` would run); the browser sets the title as text.
pub fn title(count: usize, text: String) -> String {
    let text = match count {
        0 => text,
        n => format!("({n}) {text}"),
    };
    #[cfg(feature = "ssr")]
    let text = {
        let mut escaped = String::with_capacity(text.len());
        crate::markdown::escape(&text, &mut escaped);
        escaped
    };
    text
}

/// The favicon (public/favicon.svg) with a red badge holding the count.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn favicon(count: usize) -> String {
    let digits = if count > 9 {
        "9+".to_owned()
    } else {
        count.to_string()
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
         <rect x=\"2\" y=\"2\" width=\"12\" height=\"12\" rx=\"2\" fill=\"#f59e0b\"/>\
         <circle cx=\"11\" cy=\"5\" r=\"5\" fill=\"#dc2626\"/>\
         <text x=\"11\" y=\"7.6\" font-family=\"sans-serif\" font-size=\"{}\" font-weight=\"700\" \
         text-anchor=\"middle\" fill=\"#fff\">{digits}</text></svg>",
        if count > 9 { 5.5 } else { 7.5 }
    )
}

/// The page's attention, for the sidebar and the notifications switch.
#[derive(Clone, Copy)]
pub struct Attention {
    /// Most urgent first.
    pub list: Memo<Vec<(SessionId, Why)>>,
    /// Whether this browser shows desktop notifications: `None` where it
    /// cannot (no Notification API, or blocked).
    pub notify: RwSignal<Option<bool>>,
    /// Sessions that finished or failed while nobody looked.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    unseen: RwSignal<BTreeMap<SessionId, Why>>,
}

/// Whether `session` is the reader's to answer: their own, or any for the
/// local operator (`me` is `None` with sign-in off; the feed reads no
/// sessions before it knows who reads them).
fn yours(me: Option<UserId>, session: &Session) -> bool {
    me.is_none() || session.owner == me
}

/// The page's attention (once, in the app's root, after the sessions
/// feed), provided; [`Watch`] keeps it.
pub fn provide() -> Attention {
    let feed = crate::sessions_feed::use_feed();
    let unseen = RwSignal::new(BTreeMap::<SessionId, Why>::new());
    let list = Memo::new(move |_| {
        let me = feed.me.get();
        feed.sessions.with(|all| {
            let yours = all.iter().filter(|s| yours(me, s));
            unseen.with(|u| needing_you(yours.map(|s| (s.id, s.status, s.updated_at)), u))
        })
    });
    let attention = Attention {
        list,
        notify: RwSignal::new(None),
        unseen,
    };
    provide_context(attention);
    attention
}

/// Keeps the page's attention in the browser: inside the router, which it
/// follows (what this tab shows) and drives (a notification clicked).
#[component]
pub fn Watch() -> impl IntoView {
    #[cfg(feature = "hydrate")]
    browser::follow(
        crate::sessions_feed::use_feed(),
        use_attention(),
        leptos_router::hooks::use_location().pathname,
        leptos_router::hooks::use_navigate(),
    );
}

pub fn use_attention() -> Attention {
    expect_context()
}

/// "Notify me": asks the browser for permission to show notifications, and
/// turns them on and off; shown to someone signed in, where the browser can
/// notify. One button, so it keeps the focus as it switches.
#[component]
pub fn NotifySwitch() -> impl IntoView {
    let attention = use_attention();
    let feed = crate::sessions_feed::use_feed();
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    let toggle = move |_| {
        #[cfg(feature = "hydrate")]
        notifications::toggle(attention.notify);
    };
    let on = move || attention.notify.get() == Some(true);
    view! {
        <button
            type="button"
            data-testid="notify-switch"
            hidden=move || attention.notify.get().is_none() || !feed.loaded.get()
            aria-pressed=move || on().to_string()
            title="Desktop notifications when one of your sessions needs you"
            on:click=toggle
            class=move || format!(
                "whitespace-nowrap rounded-md px-2 py-1 text-sm font-medium {}",
                if on() { "bg-amber-100 text-amber-900 dark:bg-amber-900/50 dark:text-amber-100" } else { "hover:bg-zinc-100 dark:hover:bg-zinc-800" },
            )
        >
            "Notify me"
        </button>
    }
}

#[cfg(feature = "hydrate")]
mod notifications;

#[cfg(feature = "hydrate")]
pub(crate) use browser::visible;

/// This browser's `localStorage`, where its tabs meet.
#[cfg(feature = "hydrate")]
fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

/// Keeping it in the browser: the status changes, the tabs' shared state,
/// the favicon.
#[cfg(feature = "hydrate")]
mod browser {
    use super::notifications::{notify, switch_state, NOTIFY};
    use super::{favicon, news, storage, yours, Attention, Why};
    use crate::domain::{SessionId, SessionStatus};
    use crate::sessions_feed::SessionsFeed;
    use leptos::prelude::*;
    use leptos_router::NavigateOptions;
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::time::Duration;
    use wasm_bindgen::prelude::*;
    use web_sys::js_sys::{Date, Math};
    use web_sys::StorageEvent;

    /// Sessions that finished or failed unseen: `{"<id>": "finished"}`.
    const UNSEEN: &str = "paddock.attention.unseen";
    /// Per visible tab, `<prefix><tab>`: `<session id or "">|<ms since epoch>`.
    const LOOKING: &str = "paddock.attention.looking.";
    /// How often a visible tab says again what it shows.
    const HEARTBEAT: Duration = Duration::from_secs(15);
    /// After how long a tab that stopped saying it is forgotten (it crashed).
    const FORGET_AFTER_MS: f64 = 45_000.0;

    fn read_unseen() -> BTreeMap<SessionId, Why> {
        let raw = storage()
            .and_then(|s| s.get_item(UNSEEN).ok().flatten())
            .unwrap_or_default();
        serde_json::from_str::<HashMap<SessionId, String>>(&raw)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, w)| Why::parse(&w).map(|w| (id, w)))
            .collect()
    }

    /// Changes what is unseen as stored now (another tab may have changed
    /// it since this one read it), then shows it here.
    fn change_unseen(
        unseen: RwSignal<BTreeMap<SessionId, Why>>,
        change: impl FnOnce(&mut BTreeMap<SessionId, Why>) -> bool,
    ) {
        let mut now = read_unseen();
        if change(&mut now) {
            let map: HashMap<&SessionId, &str> =
                now.iter().map(|(id, w)| (id, w.as_str())).collect();
            if let (Some(s), Ok(json)) = (storage(), serde_json::to_string(&map)) {
                let _ = s.set_item(UNSEEN, &json);
            }
        }
        unseen.set(now);
    }

    /// The session a page shows, from its path.
    fn shown(path: &str) -> Option<SessionId> {
        path.strip_prefix("/sessions/")?.parse().ok()
    }

    /// Whether this tab is in sight (not in the background).
    pub(crate) fn visible() -> bool {
        document().visibility_state() == web_sys::VisibilityState::Visible
    }

    /// The sessions the visible tabs of this browser show. The entry of a
    /// tab that went without taking it back (killed, crashed) goes.
    fn looked_at() -> HashSet<SessionId> {
        let Some(s) = storage() else {
            return HashSet::new();
        };
        let now = Date::now();
        let keys: Vec<String> = (0..s.length().unwrap_or(0))
            .filter_map(|i| s.key(i).ok().flatten())
            .filter(|k| k.starts_with(LOOKING))
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let entry = s.get_item(&k).ok().flatten()?;
                let looking = entry
                    .rsplit_once('|')
                    .and_then(|(id, at)| Some((id, at.parse::<f64>().ok()?)));
                match looking {
                    // Its id is empty where the page shows no session.
                    Some((id, at)) if now - at < FORGET_AFTER_MS => id.parse().ok(),
                    _ => {
                        let _ = s.remove_item(&k);
                        None
                    }
                }
            })
            .collect()
    }

    /// This tab's own entry among those of the visible tabs.
    struct Tab {
        key: String,
        path: Memo<String>,
        unseen: RwSignal<BTreeMap<SessionId, Why>>,
    }

    impl Tab {
        /// Says what this tab shows while it is visible (and clears that
        /// session from the unseen), or takes its entry back.
        fn say_where(&self) {
            let Some(s) = storage() else { return };
            if !visible() {
                let _ = s.remove_item(&self.key);
                return;
            }
            let here = shown(&self.path.get_untracked());
            let id = here.map(|id| id.to_string()).unwrap_or_default();
            let _ = s.set_item(&self.key, &format!("{id}|{}", Date::now()));
            if let Some(id) = here {
                change_unseen(self.unseen, |u| u.remove(&id).is_some());
            }
        }
    }

    pub fn follow(
        feed: SessionsFeed,
        attention: Attention,
        path: Memo<String>,
        navigate: impl Fn(&str, NavigateOptions) + Clone + 'static,
    ) {
        let unseen = attention.unseen;
        let tab = std::rc::Rc::new(Tab {
            key: format!("{LOOKING}{}", (Math::random() * 1e16) as u64),
            path,
            unseen,
        });
        // Once the page runs: hydration finds what the server rendered.
        Effect::new({
            let tab = tab.clone();
            move |_| {
                unseen.set(read_unseen());
                attention.notify.set(switch_state());
                listen(&tab, attention);
            }
        });
        // After each navigation in this tab.
        Effect::new({
            let tab = tab.clone();
            move |_| {
                path.track();
                tab.say_where();
            }
        });

        // Each change of a session's status, against the last one seen.
        Effect::new(move |before: Option<HashMap<SessionId, SessionStatus>>| {
            let now: HashMap<SessionId, SessionStatus> = feed
                .sessions
                .with(|l| l.iter().map(|s| (s.id, s.status)).collect());
            let Some(before) = before.filter(|_| feed.loaded.get_untracked()) else {
                return now;
            };
            let me = feed.me.get_untracked();
            let mut looking: Option<HashSet<SessionId>> = None;
            for (id, status) in &now {
                let Some(was) = before.get(id).filter(|was| *was != status) else {
                    continue;
                };
                if status.is_busy() {
                    change_unseen(unseen, |u| u.remove(id).is_some());
                }
                let Some(why) = news(*was, *status) else {
                    continue;
                };
                let Some(session) = feed
                    .sessions
                    .with_untracked(|l| l.iter().find(|s| s.id == *id).cloned())
                    .filter(|s| yours(me, s))
                else {
                    continue;
                };
                if looking.get_or_insert_with(looked_at).contains(id) {
                    continue;
                }
                if why != Why::Asks {
                    change_unseen(unseen, |u| u.insert(*id, why) != Some(why));
                }
                if attention.notify.get_untracked() == Some(true) {
                    let when = session.updated_at.timestamp_millis();
                    notify(*id, &session.name, why, when, navigate.clone());
                }
            }
            // A session deleted is no longer unseen.
            if unseen.with_untracked(|u| u.keys().any(|id| !now.contains_key(id))) {
                change_unseen(unseen, |u| {
                    u.retain(|id, _| now.contains_key(id));
                    true
                });
            }
            now
        });

        // The favicon says it too.
        let icons: Vec<(web_sys::Element, String)> = document()
            .query_selector_all("link[rel~='icon']")
            .ok()
            .map(|nodes| {
                (0..nodes.length())
                    .filter_map(|i| nodes.item(i)?.dyn_into::<web_sys::Element>().ok())
                    .filter_map(|el| el.get_attribute("href").map(|h| (el, h)))
                    .collect()
            })
            .unwrap_or_default();
        Effect::new(move |_| {
            let count = attention.list.with(Vec::len);
            let badge = (count > 0).then(|| {
                format!(
                    "data:image/svg+xml,{}",
                    String::from(web_sys::js_sys::encode_uri_component(&favicon(count)))
                )
            });
            for (el, href) in &icons {
                let _ = el.set_attribute("href", badge.as_deref().unwrap_or(href));
            }
        });
    }

    /// The page's listeners, for as long as it lives: the other tabs'
    /// changes, this tab shown or hidden or closed, and its heartbeat.
    fn listen(tab: &std::rc::Rc<Tab>, attention: Attention) {
        let on_storage = Closure::<dyn FnMut(StorageEvent)>::new({
            let tab = tab.clone();
            move |e: StorageEvent| match e.key().as_deref() {
                Some(UNSEEN) => {
                    attention.unseen.set(read_unseen());
                    // What this tab shows stays seen.
                    tab.say_where();
                }
                Some(NOTIFY) => attention.notify.set(switch_state()),
                _ => {}
            }
        });
        let _ = window()
            .add_event_listener_with_callback("storage", on_storage.as_ref().unchecked_ref());
        on_storage.forget();
        let on_visibility = Closure::<dyn FnMut()>::new({
            let tab = tab.clone();
            move || tab.say_where()
        });
        let _ = document().add_event_listener_with_callback(
            "visibilitychange",
            on_visibility.as_ref().unchecked_ref(),
        );
        on_visibility.forget();
        let on_hide = Closure::<dyn FnMut()>::new({
            let key = tab.key.clone();
            move || {
                if let Some(s) = storage() {
                    let _ = s.remove_item(&key);
                }
            }
        });
        let _ =
            window().add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
        on_hide.forget();
        let tab = tab.clone();
        let _ = set_interval_with_handle(move || tab.say_where(), HEARTBEAT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionStatus::*;

    #[test]
    fn news_is_a_question_an_end_or_a_failure() {
        assert_eq!(news(Running, AwaitingPermission), Some(Why::Asks));
        assert_eq!(news(AwaitingPermission, AwaitingPermission), None);
        assert_eq!(news(Running, Idle), Some(Why::Finished));
        assert_eq!(news(AwaitingPermission, Idle), Some(Why::Finished));
        assert_eq!(news(Running, Error), Some(Why::Failed));
        assert_eq!(news(Starting, Interrupted), Some(Why::Failed));
        // Stopping is the user's own doing; idle to idle is nothing.
        assert_eq!(news(Running, Stopped), None);
        assert_eq!(news(Idle, Idle), None);
        assert_eq!(news(Idle, Running), None);
        assert_eq!(news(Error, Idle), None);
    }

    #[test]
    fn those_asking_come_first_the_longest_waiting_first() {
        let at = |secs: i64| DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        let id = uuid::Uuid::from_u128;
        let sessions = [
            (id(1), Running, at(0)),
            (id(2), AwaitingPermission, at(20)),
            (id(3), AwaitingPermission, at(10)),
            (id(4), Idle, at(5)),
            (id(5), Error, at(30)),
            (id(6), Idle, at(40)),
        ];
        let unseen = BTreeMap::from([
            (id(4), Why::Finished),
            (id(5), Why::Failed),
            (id(9), Why::Failed),
        ]);
        assert_eq!(
            needing_you(sessions, &unseen),
            [
                (id(3), Why::Asks),
                (id(2), Why::Asks),
                (id(5), Why::Failed),
                (id(4), Why::Finished)
            ]
        );
        assert_eq!(needing_you(sessions[..1].to_vec(), &unseen), []);
    }

    #[test]
    fn the_title_counts_and_the_badge_caps() {
        assert_eq!(title(0, "Paddock".into()), "Paddock");
        assert_eq!(title(3, "fix · Paddock".into()), "(3) fix · Paddock");
        assert!(favicon(3).contains(">3</text>"));
        assert!(favicon(12).contains(">9+</text>"));
    }
}
