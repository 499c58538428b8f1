//! Times as people read them: "2 min ago", with the exact time on hover.
//!
//! The server renders the exact time, so hydration finds what it rendered;
//! once the page runs, the page's [`Clock`] turns each time relative and
//! keeps it current.

use super::format_time;
use chrono::{DateTime, Utc};
use leptos::prelude::*;

/// The page's "now": `None` until the page runs in the browser.
#[derive(Clone, Copy)]
pub struct Clock(ReadSignal<Option<DateTime<Utc>>>);

/// How often relative times are brought up to date.
#[cfg(feature = "hydrate")]
const TICK: std::time::Duration = std::time::Duration::from_secs(20);

/// Starts the page's clock (once, in the app's root).
pub fn provide_clock() {
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    let (now, set_now) = signal(None::<DateTime<Utc>>);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let tick = move || {
            set_now.set(DateTime::from_timestamp_millis(
                web_sys::js_sys::Date::now() as i64,
            ));
        };
        tick();
        if let Ok(handle) = set_interval_with_handle(tick, TICK) {
            on_cleanup(move || handle.clear());
        }
    });
    provide_context(Clock(now));
}

/// How long ago `at` was, as of `now`, in words (or how long until it
/// comes: a schedule's next run).
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    match secs {
        ..-172_800 => format!("in {} days", -secs / 86_400),
        -172_800..-86_400 => "tomorrow".to_owned(),
        -86_400..-3_600 => format!("in {} h", -secs / 3_600),
        -3_600..-45 => format!("in {} min", (-secs + 59) / 60),
        // A clock a little ahead of the server's reads as "just now" too.
        -45..45 => "just now".to_owned(),
        45..3_600 => format!("{} min ago", (secs / 60).max(1)),
        3_600..86_400 => format!("{} h ago", secs / 3_600),
        86_400..172_800 => "yesterday".to_owned(),
        172_800..2_592_000 => format!("{} days ago", secs / 86_400),
        _ => at.date_naive().to_string(),
    }
}

/// A time, relative once the page runs; the exact time on hover.
#[component]
pub fn When(#[prop(into)] at: Signal<DateTime<Utc>>) -> impl IntoView {
    let clock = use_context::<Clock>();
    let text = move || match clock.and_then(|Clock(now)| now.get()) {
        Some(now) => relative(at.get(), now),
        None => format_time(at.get()),
    };
    view! {
        <time datetime=move || at.get().to_rfc3339() title=move || exact(at.get())>{text}</time>
    }
}

/// To the second, for the hover.
fn exact(at: DateTime<Utc>) -> String {
    use chrono::Timelike;
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        at.date_naive(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_people_say_it() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ago = |secs: i64| relative(now - chrono::Duration::seconds(secs), now);
        assert_eq!(ago(-30), "just now");
        assert_eq!(ago(10), "just now");
        assert_eq!(ago(50), "1 min ago");
        assert_eq!(ago(125), "2 min ago");
        assert_eq!(ago(3_599), "59 min ago");
        assert_eq!(ago(3_600), "1 h ago");
        assert_eq!(ago(86_399), "23 h ago");
        assert_eq!(ago(90_000), "yesterday");
        assert_eq!(ago(3 * 86_400), "3 days ago");
        assert_eq!(ago(40 * 86_400), "2026-10-26");
        assert_eq!(exact(now), "2026-12-05 12:00:00 UTC");
        // What is to come.
        assert_eq!(ago(-50), "in 1 min");
        assert_eq!(ago(-3_000), "in 50 min");
        assert_eq!(ago(-7_200), "in 2 h");
        assert_eq!(ago(-100_000), "tomorrow");
        assert_eq!(ago(-5 * 86_400), "in 5 days");
    }
}
