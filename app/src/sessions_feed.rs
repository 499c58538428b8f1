//! The sessions as they are now, for the whole page: the list page, the
//! sidebar, the attention count and the shortcut to the session waiting
//! for you all read this one copy. In the browser, for someone signed in,
//! it is read once the page is hydrated and whenever the live connection
//! (re)opens (what changed meanwhile was never streamed), and kept current
//! by the list's stream; on the server it stays unloaded and pages render
//! from their own data.

use crate::domain::{Session, UserId};
use leptos::prelude::*;

/// The page's copy of the sessions list.
#[derive(Clone, Copy)]
pub struct SessionsFeed {
    /// Newest activity first; empty until `loaded`.
    pub sessions: RwSignal<Vec<Session>>,
    /// Whether `sessions` has been read from the server at least once.
    pub loaded: RwSignal<bool>,
    /// Who reads it: the signed-in user (`None`: the local operator, with
    /// sign-in off), as sessions name their owner.
    pub me: RwSignal<Option<UserId>>,
    /// Counted up each time the list was read again after its first read:
    /// what the reader may see changed (a share), or the connection came
    /// back. What else the
    /// page knows of its access is then read again too.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub reloads: RwSignal<u64>,
}

/// Starts the page's feed (once, in the app's root) and provides it.
pub fn provide() {
    let feed = SessionsFeed {
        sessions: RwSignal::new(Vec::new()),
        loaded: RwSignal::new(false),
        me: RwSignal::new(None),
        reloads: RwSignal::new(0),
    };
    #[cfg(feature = "hydrate")]
    follow(feed);
    provide_context(feed);
}

/// The page's feed, as the app's root provided it.
pub fn use_feed() -> SessionsFeed {
    expect_context()
}

#[cfg(feature = "hydrate")]
fn follow(feed: SessionsFeed) {
    use crate::api::list_sessions;
    use crate::domain::SESSIONS_LISTED_MAX;
    use crate::live::{self, Link, Topic};

    let SessionsFeed {
        sessions,
        loaded,
        me,
        reloads,
    } = feed;
    let (link, set_link) = signal(Link::Connecting);
    // Sessions deleted while this page runs, with the number of reads of
    // the list begun by then: a list read before a deletion and answered
    // after it does not bring one back.
    let gone = StoredValue::new(std::collections::HashMap::<String, u64>::new());
    // Reads of the list begun so far, and the number of the last one whose
    // answer was taken: an answer to an earlier read, come later, is older.
    let reads = StoredValue::new((0u64, 0u64));
    // Each session that streamed in, with the number of reads begun by
    // then: a read begun before it may have missed it.
    let streamed =
        StoredValue::new(std::collections::HashMap::<crate::domain::SessionId, u64>::new());
    // Reads that failed in a row: the last is tried again, later each time
    // (the server was busy a moment), unless another began since.
    let failures = RwSignal::new(0u32);
    let reload = move || {
        let read = reads.with_value(|(begun, _)| begun + 1);
        reads.update_value(|(begun, _)| *begun = read);
        leptos::task::spawn_local(async move {
            let Ok(mut fresh) = list_sessions().await else {
                if reads.with_value(|(begun, _)| *begun == read) {
                    let wait = 2u64.pow(failures.get_untracked().min(5) + 1).min(60);
                    set_timeout(
                        move || failures.update(|n| *n += 1),
                        std::time::Duration::from_secs(wait),
                    );
                }
                return;
            };
            failures.set(0);
            if reads.with_value(|(_, taken)| *taken > read) {
                return;
            }
            reads.update_value(|(_, taken)| *taken = read);
            gone.with_value(|gone| fresh.retain(|s| !gone.contains_key(&s.id.to_string())));
            sessions.with_untracked(|now| {
                // What streamed in while the answer was on its way is
                // newer: by its activity, or, as new settings leave
                // that as it was, by having come since the read began.
                let since_read = |x: &Session| {
                    streamed
                        .with_value(|streamed| streamed.get(&x.id).is_some_and(|at| *at >= read))
                };
                for s in &mut fresh {
                    if let Some(newer) = now.iter().find(|x| {
                        x.id == s.id
                            && (x.updated_at > s.updated_at
                                || (x.updated_at == s.updated_at && since_read(x)))
                    }) {
                        *s = newer.clone();
                    }
                }
                // And a session made after the read began is not in it.
                let missed: Vec<Session> = streamed.with_value(|streamed| {
                    now.iter()
                        .filter(|x| streamed.get(&x.id).is_some_and(|at| *at >= read))
                        .filter(|x| !fresh.iter().any(|s| s.id == x.id))
                        .cloned()
                        .collect()
                });
                fresh.extend(missed);
            });
            sort(&mut fresh);
            fresh.truncate(SESSIONS_LISTED_MAX);
            sessions.set(fresh);
            // What came before this read began is in its answer, or in
            // none to come (each is newer): not kept for ever by a page
            // left open.
            streamed.update_value(|streamed| streamed.retain(|_, at| *at >= read));
            gone.update_value(|gone| gone.retain(|_, at| *at >= read));
            if loaded.get_untracked() {
                reloads.update(|n| *n += 1);
            }
            loaded.set(true);
            // End-to-end tests wait for it, as for `data-hydrated`.
            if let Some(body) = document().body() {
                let _ = body.set_attribute("data-sessions", "loaded");
            }
        })
    };
    Effect::new(move |_| {
        if link.get() == Link::Live {
            reload();
        }
    });
    Effect::new(move |_| {
        if failures.get() > 0 {
            reload();
        }
    });
    // Once the page runs (effects run once it is hydrated), and only for
    // someone signed in: the sign-in page has no sessions. Read at once,
    // and again when the stream is live.
    let signed_in = RwSignal::new(false);
    Effect::new(move |_| ask_who(me, signed_in));
    Effect::new(move |_| {
        if !signed_in.get() {
            return;
        }
        reload();
        live::subscribe(
            Topic::List,
            &["session", "deleted", "resync"],
            move |name, data| match name {
                "session" => {
                    let deleted =
                        |s: &Session| gone.with_value(|gone| gone.contains_key(&s.id.to_string()));
                    if let Some(s) = serde_json::from_str::<Session>(&data)
                        .ok()
                        .filter(|s| !deleted(s))
                    {
                        let begun = reads.with_value(|(begun, _)| *begun);
                        streamed.update_value(|streamed| {
                            streamed.insert(s.id, begun);
                        });
                        // A row older than the one held (the same frame
                        // again, as the live connection changes hands) is
                        // not news.
                        sessions.maybe_update(|l| {
                            match l.iter_mut().find(|x| x.id == s.id) {
                                Some(x) if x.updated_at > s.updated_at => return false,
                                Some(x) => *x = s,
                                None => l.push(s),
                            }
                            sort(l);
                            // As the server lists them: a page left open
                            // while sessions are made holds no more.
                            l.truncate(SESSIONS_LISTED_MAX);
                            true
                        });
                    }
                }
                "deleted" => {
                    sessions.update(|l| l.retain(|s| s.id.to_string() != data));
                    let begun = reads.with_value(|(begun, _)| *begun);
                    gone.update_value(|gone| {
                        gone.insert(data, begun);
                    });
                }
                _ => reload(),
            },
            set_link,
        );
    });
}

/// Newest activity first, as the server lists them.
#[cfg(feature = "hydrate")]
fn sort(list: &mut [Session]) {
    list.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then(b.created_at.cmp(&a.created_at))
    });
}

/// How long before asking again who is signed in, when the server could
/// not say.
#[cfg(feature = "hydrate")]
const ASK_AGAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Asks who is signed in, and again while the server cannot say (it
/// restarts, its database is busy): answered once, the page follows the
/// list; asked once in vain, it never would.
#[cfg(feature = "hydrate")]
fn ask_who(me: RwSignal<Option<UserId>>, signed_in: RwSignal<bool>) {
    leptos::task::spawn_local(async move {
        match crate::api::accounts::whoami().await {
            Ok(Some(caller)) => {
                me.set(caller.user);
                signed_in.set(true);
            }
            // Refused for good (a host or an origin this server does not
            // serve): not asked again. Anything else (down, a proxy's page
            // while it restarts, busy) is asked again.
            Ok(None)
            | Err(
                crate::domain::AppError::Misdirected(_) | crate::domain::AppError::Forbidden(_),
            ) => {}
            Err(_) => set_timeout(move || ask_who(me, signed_in), ASK_AGAIN),
        }
    });
}
