//! One session: its header and counters, then the transcript and the
//! composer, and its workspace's [`files`] (`?view=files`) or, for a session
//! cloned from git, its [`changes`] (`?view=changes`), and for those who may
//! operate it, shells in its sandbox ([`terminal`], `?view=terminal`). On a
//! wide screen the
//! workspace is a second pane beside the transcript (the files, or the
//! changes of a repository, unless the address asks for the other) and the
//! sessions are in a sidebar; narrower, the transcript and the workspace
//! views are tabs (see [`crate::layout`]).
//!
//! The page is rendered on the server from the store (the newest page of the
//! transcript), so a reload shows the whole recent history at once; once
//! hydrated it subscribes to the session's event stream from the last `seq`
//! it holds. Stored events extend the transcript; deltas feed the blocks
//! still being generated (as plain text), which the stored block replaces
//! when it arrives. The model's Markdown comes rendered by the server, with
//! the event (see [`EventHtml`]).
//! Older events are loaded a page at a time on request, so a transcript of
//! any length renders quickly.
//!
//! The pieces: the [`header`], the transcript's [`cards`] (with the
//! [`permission`] cards), the [`composer`], and the [`fold`] of the live
//! stream into the page's state.

mod cards;
mod changes;
mod composer;
mod files;
mod fold;
mod header;
mod permission;
mod settings_edit;
mod share;
mod terminal;

use super::sidebar::Sidebar;
use super::{ErrorNote, Missing};
use crate::accounts::Access;
use crate::api::{open_session, session_events, EventPage, SessionView, EVENTS_PAGE};
use crate::domain::{AppError, Delta, Event, EventHtml, PermissionMode, SessionSettings};
use crate::files::FilesChanged;
use crate::live::{self, Link, Topic};
use crate::transcript::{cut_before, Item, Transcript};
use cards::{EventView, LiveBlockView};
use changes::ChangesView;
use composer::Composer;
use files::FilesView;
use fold::{Live, LiveBlock};
use header::Header;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use std::collections::HashMap;
use terminal::TerminalView;

#[component]
pub fn SessionPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let data = Resource::new(id, open_session);
    let wide = crate::layout::use_wide();
    let current = Signal::derive(move || id().parse().unwrap_or_default());
    view! {
        <div class=move || if wide.get() { "grid grid-cols-[15rem_minmax(0,1fr)] gap-6" } else { "" }>
            {move || wide.get().then(|| view! {
                <aside class="sticky top-4 max-h-[calc(100vh-2rem)] self-start overflow-y-auto">
                    <Sidebar current />
                </aside>
            })}
            <div class="min-w-0">
                <Suspense fallback=|| view! { <p class="text-sm text-zinc-500">"Loading session…"</p> }>
                    {move || Suspend::new(async move {
                        match data.await {
                            Ok(v) => view! { <SessionScreen data=v /> }.into_any(),
                            Err(AppError::NotFound(_)) => view! { <Missing what="Session" /> }.into_any(),
                            Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                        }
                    })}
                </Suspense>
            </div>
        </div>
    }
}

/// The rendered Markdown of the events shown, by `seq`.
#[derive(Default)]
struct Html(HashMap<i64, String>);

impl Html {
    fn add(&mut self, html: impl IntoIterator<Item = EventHtml>) {
        self.0.extend(html.into_iter().map(|h| (h.seq, h.html)));
    }

    /// Lets go of the events before `first`.
    fn keep_from(&mut self, first: i64) {
        self.0.retain(|seq, _| *seq >= first);
    }
}

/// How many events a page followed at the bottom holds: past it, it lets
/// go of the runs before the newest [`EVENTS_PAGE`] events ("Show earlier
/// events" brings them back), so a tab open all day on a busy session
/// stays as small and quick as a fresh one. A page read further up does
/// so only while it is out of sight (its reader left it there, or looks at
/// another pane), or once it holds [`EVENTS_HELD_READING`].
const EVENTS_HELD: usize = 2 * EVENTS_PAGE as usize;
/// The most a page read further up holds: a reader who scrolled up, then
/// worked in the terminal beside it all day, does not hold the day.
const EVENTS_HELD_READING: usize = 8 * EVENTS_PAGE as usize;

/// How many of the oldest events a page lets go of, if any
/// ([`EVENTS_HELD`]): at the end of a run; in one run longer than all that,
/// before the newest page, as a page's first read begins anywhere.
fn let_go(events: &[Event]) -> Option<usize> {
    if events.len() <= EVENTS_HELD {
        return None;
    }
    let older = &events[..events.len() - EVENTS_PAGE as usize];
    Some(cut_before(older).unwrap_or(older.len()))
}

/// Whether the page is in sight (not a tab in the background).
fn in_sight() -> bool {
    #[cfg(feature = "hydrate")]
    return crate::attention::visible();
    #[cfg(not(feature = "hydrate"))]
    true
}

#[component]
fn SessionScreen(data: SessionView) -> impl IntoView {
    let SessionView {
        session: initial,
        page,
        people,
        terminals,
    } = data;
    // What this viewer may do, as it is now: the composer, the permission
    // buttons and the operators' controls appear only for those who may
    // use them (the server checks each call anyway), and follow a change
    // of their share (`People` reads it again).
    let people = RwSignal::new(people);
    let access = Memo::new(move |_| people.with(|p| p.access));
    provide_context(access);
    let session_id = initial.id;
    let id = initial.id.to_string();
    let has_repo = matches!(
        initial.source,
        crate::workspace_source::WorkspaceSource::Git { .. }
    );
    let session = RwSignal::new(initial);
    // Terminals: where the sandboxes have them, for those who may operate
    // the session, while it is not read-only.
    let terminals = Memo::new(move |_| {
        terminals
            && access.get() >= Access::Operate
            && session.with(|s| s.permission_mode != PermissionMode::ReadOnly)
    });
    let query = use_query_map();
    // A caller without terminals asking for them sees the transcript.
    let shown = Memo::new(
        move |_| match View::from_query(query.read().get("view").as_deref()) {
            View::Terminal if !terminals.get() => View::Transcript,
            view => view,
        },
    );
    // Wide, the workspace is beside the transcript: the view asked for, or
    // the changes of a repository, or the files. Narrow, one at a time.
    let wide = crate::layout::use_wide();
    let panel = Memo::new(move |_| match shown.get() {
        View::Transcript if has_repo => View::Changes,
        View::Transcript => View::Files,
        view => view,
    });
    let panel_shows = move |view: View| {
        Memo::new(move |_| panel.get() == view && (wide.get() || shown.get() == view))
    };
    let (files_shown, changes_shown) = (panel_shows(View::Files), panel_shows(View::Changes));
    let terminal_shown = panel_shows(View::Terminal);
    // The tab marked current: wide, the workspace's view; narrow, the one shown.
    let tab = Memo::new(move |_| if wide.get() { panel.get() } else { shown.get() });
    let away = Memo::new(move |_| shown.get() != View::Transcript && !wide.get());
    let live = RwSignal::new(Live::after(&page.events));
    let events = RwSignal::new(page.events);
    let html = RwSignal::new(Html::default());
    html.update(|h| h.add(page.html));
    let (link, set_link) = signal(Link::Connecting);
    // The newest stored event the page holds (its events end there).
    let newest = move || session.with_untracked(|s| s.last_seq);

    // Stored events are applied together, once those that came at once
    // are in: each change of the list builds the transcript again, and a
    // catch-up (after a reconnect, or a laptop's sleep) brings hundreds,
    // each its own message.
    let incoming = StoredValue::new(Vec::<Event>::new());
    let following = RwSignal::new(true);
    let flush = move || {
        let batch = incoming
            .try_update_value(std::mem::take)
            .unwrap_or_default();
        let mut fresh = Vec::with_capacity(batch.len());
        for e in batch {
            let mut new = false;
            session.maybe_update(|s| {
                new = fold::count(s, &e);
                new
            });
            if new {
                live.maybe_update(|live| live.settle(&e));
                fresh.push(e);
            } // else already shown
        }
        if fresh.is_empty() {
            return;
        }
        let mut first = None;
        events.update(|list| {
            list.extend(fresh);
            // Read further up in sight, it keeps what is read.
            let reading = !following.get_untracked()
                && in_sight()
                && !away.get_untracked()
                && list.len() <= EVENTS_HELD_READING;
            if let Some(cut) = let_go(list).filter(|_| !reading) {
                list.drain(..cut);
                first = list.first().map(|e| e.seq);
            }
        });
        if let Some(first) = first {
            html.update(|h| h.keep_from(first));
        }
    };
    let apply = move |e: Event| {
        let first = incoming
            .try_update_value(|waiting| {
                waiting.push(e);
                waiting.len() == 1
            })
            .unwrap_or(false);
        if first {
            set_timeout(flush, std::time::Duration::ZERO);
        }
    };
    let on_delta = move |d: Delta| live.update(|live| live.stream(d));
    // What the agent (or a terminal) just changed in the workspace.
    let files_changed = RwSignal::new(None::<FilesChanged>);
    live::subscribe(
        Topic::Session {
            id: session_id,
            newest: Box::new(newest),
        },
        &["event", "html", "delta", "files"],
        move |name, data| match name {
            "event" => {
                if let Ok(e) = serde_json::from_str::<Event>(&data) {
                    apply(e);
                }
            }
            "html" => {
                if let Ok(h) = serde_json::from_str::<EventHtml>(&data) {
                    html.update(|m| m.add([h]));
                }
            }
            "delta" => {
                if let Ok(d) = serde_json::from_str::<Delta>(&data) {
                    on_delta(d);
                }
            }
            _ => {
                if let Ok(c) = serde_json::from_str::<FilesChanged>(&data) {
                    files_changed.set(Some(c));
                }
            }
        },
        set_link,
    );

    // Settings changed elsewhere (by the owner in another tab or through
    // the API) arrive with the sessions list: applied when the row's
    // settings change; the counters stay the transcript's.
    let feed = crate::sessions_feed::use_feed();
    Effect::new(move |was: Option<Option<SessionSettings>>| {
        let row = feed.sessions.with(|l| {
            l.iter()
                .find(|s| s.id == session_id)
                .map(SessionSettings::of)
        });
        // Not on the first run: the page's own data is as fresh.
        let changed = |now: &SessionSettings| was.as_ref().is_some_and(|w| w.as_ref() != Some(now));
        if let Some(now) = row.clone().filter(changed) {
            if session.with_untracked(|s| SessionSettings::of(s) != now) {
                session.update(|s| now.apply(s));
            }
        }
        row
    });

    let transcript = Memo::new(move |_| events.with(|e| Transcript::build(e)));
    let status = Memo::new(move |_| session.with(|s| s.status));
    follow_bottom(transcript, live, away, following);

    let (id_header, id_earlier, id_items) = (id.clone(), id.clone(), id.clone());
    view! {
        // Read again as the page moves to another session, after this one
        // is gone (the title's text is the document's, not this view's).
        <leptos_meta::Title text=move || session.try_with(|s| format!("{} · Paddock", s.name)).unwrap_or_default() />
        <article class="space-y-4 pb-4">
            <Header session id=id_header link people />
            <div class=move || if wide.get() { "grid grid-cols-2 items-start gap-6" } else { "flex flex-col gap-4" }>
            // In the order they are seen: narrow, the tabs over the view shown;
            // wide, the transcript, then the workspace pane with its tabs.
            {move || (!wide.get()).then(|| view! { <Tabs id=session_id current=tab wide has_repo terminals /> })}
            <div class:hidden=move || away.get() class="min-w-0 space-y-4">
            <section aria-labelledby="transcript-heading" class="space-y-3">
                <h2 id="transcript-heading" class="sr-only">"Transcript"</h2>
                <EarlierEvents id=id_earlier events html />
                {move || (events.with(Vec::is_empty) && live.with(|l| l.blocks.is_empty())).then(|| view! {
                    <p data-testid="transcript-empty" class="rounded-lg border border-dashed border-zinc-300 p-6 text-center text-sm text-zinc-500 dark:border-zinc-700 dark:text-zinc-400">
                        "Nothing here yet. Describe a task below; the agent works on it in this session's sandbox."
                    </p>
                })}
                <ol class="space-y-3" data-testid="transcript">
                    <For
                        each=move || transcript.with(|t| t.items.clone())
                        key=|item: &Item| (item.event.seq, item.queued)
                        let:item
                    >
                        <EventView item transcript html id=id_items.clone() />
                    </For>
                </ol>
                <div aria-live="polite" aria-busy=move || (!live.with(|l| l.blocks.is_empty())).to_string() data-testid="live">
                    <For each=move || live.with(|l| l.blocks.clone()) key=|b: &LiveBlock| (b.after, b.block, b.text.len()) let:block>
                        <LiveBlockView block />
                    </For>
                </div>
            </section>
            {move || (access.get() >= Access::Operate).then(|| view! { <Composer id=id.clone() status /> })}
            {move || (access.get() < Access::Operate).then(|| view! {
                <p data-testid="watch-only" class="rounded-lg border border-zinc-200 bg-white p-3 text-sm text-zinc-600 dark:border-zinc-800 dark:bg-zinc-900 dark:text-zinc-300">
                    "You are watching this session: it is shared with you to follow, not to prompt."
                </p>
            })}
            </div>
            <div data-testid="workspace-panel" class=move || if wide.get() {
                "sticky top-4 max-h-[calc(100vh-2rem)] min-w-0 space-y-4 overflow-y-auto"
            } else {
                "min-w-0 space-y-4"
            }>
                {move || wide.get().then(|| view! { <Tabs id=session_id current=tab wide has_repo terminals /> })}
                {move || files_shown.get().then(|| view! { <FilesView id=session_id access status changed=files_changed.read_only() /> })}
                {move || changes_shown.get().then(|| view! { <ChangesView id=session_id access status /> })}
                // Always there, hidden unless shown: its terminals stay open
                // while another view is.
                {move || terminals.get().then(|| view! { <TerminalView id=session_id shown=terminal_shown /> })}
            </div>
            </div>
        </article>
    }
}

/// Which view of the session the page shows (`?view=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Transcript,
    Files,
    Changes,
    Terminal,
}

impl View {
    fn from_query(view: Option<&str>) -> Self {
        match view {
            Some("files") => View::Files,
            Some("changes") => View::Changes,
            Some("terminal") => View::Terminal,
            _ => View::Transcript,
        }
    }
}

/// The transcript (narrow only: wide, it is always beside), the files,
/// (for a session cloned from git) the changes and (for those who may open
/// them) the terminals: links, so each view has its address.
#[component]
fn Tabs(
    id: crate::domain::SessionId,
    current: Memo<View>,
    wide: Signal<bool>,
    has_repo: bool,
    terminals: Memo<bool>,
) -> impl IntoView {
    let tab = |label: &'static str, href: String, testid: &'static str, current: bool| {
        view! {
            <a
                href=href
                data-testid=testid
                aria-current=current.then_some("page")
                class=if current {
                    "border-b-2 border-amber-500 px-3 py-2 text-sm font-semibold"
                } else {
                    "border-b-2 border-transparent px-3 py-2 text-sm text-zinc-500 hover:text-zinc-900 dark:text-zinc-400 dark:hover:text-zinc-100"
                }
            >
                {label}
            </a>
        }
    };
    view! {
        <nav aria-label="Session views" class="flex gap-1 border-b border-zinc-200 dark:border-zinc-800">
            {move || {
                let now = current.get();
                view! {
                    {(!wide.get()).then(|| tab("Transcript", format!("/sessions/{id}"), "tab-transcript", now == View::Transcript))}
                    {has_repo.then(|| tab("Changes", crate::changes::changes_view_url(id, None), "tab-changes", now == View::Changes))}
                    {tab("Files", crate::files::files_view_url(id, "", None), "tab-files", now == View::Files)}
                    {terminals.get().then(|| tab("Terminal", format!("/sessions/{id}?view=terminal"), "tab-terminal", now == View::Terminal))}
                }
            }}
        </nav>
    }
}

/// Keeps the newest content in view while the user is at the bottom of the
/// page (and looking at the transcript); scrolling up stops that until they
/// scroll back down (`following`, which the page reads too).
fn follow_bottom(
    transcript: Memo<Transcript>,
    live: RwSignal<Live>,
    away: Memo<bool>,
    following: RwSignal<bool>,
) {
    #[cfg(feature = "hydrate")]
    {
        let at_bottom = |y: f64| {
            let height = window()
                .inner_height()
                .ok()
                .and_then(|h| h.as_f64())
                .unwrap_or(0.0);
            let total = document()
                .document_element()
                .map_or(0.0, |e| f64::from(e.scroll_height()));
            y + height >= total - 120.0
        };
        // Only the reader scrolling up stops it: the page growing under a
        // scroll to the bottom (a burst of events) is no reason to.
        let last_y = std::cell::Cell::new(0.0);
        let handle = window_event_listener(leptos::ev::scroll, move |_| {
            let y = window().scroll_y().unwrap_or(0.0);
            let up = y < last_y.replace(y);
            if away.get_untracked() {
                return;
            }
            if at_bottom(y) {
                following.set(true);
            } else if up {
                following.set(false);
            }
        });
        on_cleanup(move || handle.remove());
    }
    Effect::new(move |_| {
        transcript.track();
        live.track();
        // Coming back to the transcript follows it again, if it was.
        if following.get_untracked() && !away.get() {
            request_animation_frame(|| {
                let total = document()
                    .document_element()
                    .map_or(0, |e| e.scroll_height());
                window().scroll_to_with_x_and_y(0.0, f64::from(total));
            });
        }
    });
}

/// "Show earlier events": loads the page before the oldest one shown.
#[component]
fn EarlierEvents(id: String, events: RwSignal<Vec<Event>>, html: RwSignal<Html>) -> impl IntoView {
    let first = move || events.with(|e| e.first().map_or(1, |e| e.seq));
    let load = Action::new(move |before: &i64| {
        let (id, before) = (id.clone(), *before);
        async move {
            let older: EventPage = session_events(id, (before - 1 - EVENTS_PAGE).max(0)).await?;
            html.update(|h| h.add(older.html));
            events.update(|list| {
                let mut merged: Vec<Event> = older
                    .events
                    .into_iter()
                    .filter(|e| e.seq < before)
                    .collect();
                merged.append(list);
                *list = merged;
            });
            Ok::<(), AppError>(())
        }
    });
    view! {
        {move || (first() > 1).then(|| view! {
            <button
                type="button"
                data-testid="load-earlier"
                on:click=move |_| { load.dispatch(first()); }
                disabled=move || load.pending().get()
                class="w-full rounded-md border border-zinc-200 py-2 text-sm text-zinc-600 hover:bg-zinc-100 focus:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 dark:border-zinc-800 dark:text-zinc-300 dark:hover:bg-zinc-900"
            >
                {move || format!("Show earlier events ({} not shown)", first() - 1)}
            </button>
        })}
        {move || load.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKind, SessionStatus};

    fn events(statuses_every: usize, count: usize) -> Vec<Event> {
        (1..=count as i64)
            .map(|seq| Event {
                session_id: uuid::Uuid::nil(),
                seq,
                at: chrono::DateTime::from_timestamp(seq, 0).unwrap(),
                kind: match seq as usize % statuses_every {
                    1 => EventKind::UserMessage { text: "go".into() },
                    2 => EventKind::Status {
                        status: SessionStatus::Running,
                        message: None,
                    },
                    0 => EventKind::Status {
                        status: SessionStatus::Idle,
                        message: None,
                    },
                    _ => EventKind::AssistantText { text: "x".into() },
                },
            })
            .collect()
    }

    #[test]
    fn a_page_lets_go_of_whole_runs_and_of_one_long_run_too() {
        // Runs of 10 events: the runs before the newest page go.
        let runs = events(10, EVENTS_HELD + 1);
        let cut = let_go(&runs).unwrap();
        assert_eq!(cut % 10, 0);
        assert!(runs.len() - cut >= EVENTS_PAGE as usize);
        assert_eq!(let_go(&runs[..EVENTS_HELD]), None);
        // One run longer than all that is cut all the same.
        let one = events(usize::MAX, EVENTS_HELD + 1);
        assert_eq!(let_go(&one), Some(one.len() - EVENTS_PAGE as usize));
    }
}
