//! Schedule triggers: a cron expression in a time zone (croner, chrono-tz),
//! run by whichever server looks first. Each server looks every [`TICK`]
//! for schedules due (`trigger_schedules`); the one that moves a schedule
//! on to its next time (compare and set in the database) runs that time,
//! so with several replicas each run is had once. A run is a delivery like
//! any other (its id `schedule-<time due>`), so its prompt, conversation
//! and log work as for senders. Never two runs of one schedule at once: a
//! run due while the last one's session still works is skipped. Runs
//! missed while no server was running are skipped, or run once, as the
//! trigger says.

use super::{Opened, Said, Verified};
use crate::paddock::Paddock;
use crate::store::triggers::{forget_deliveries_before, Claim, NextRun};
use app::domain::{AppError, SessionId, SessionStatus};
use app::triggers::{Delivery, MissedRuns, Schedule, Trigger, TriggerDraft, TriggerId};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often each server looks for runs due.
pub const TICK: Duration = Duration::from_secs(1);
/// A run this late counts as missed (no server was running when it was
/// due).
const LATE_AFTER_SECS: i64 = 60;
/// Runs a server starts at once: one slow to start (its prompt's template
/// takes its time) holds up no others.
const RUNS_AT_ONCE: usize = 4;
/// Next runs shown with a schedule.
const SHOWN: usize = 3;

/// A schedule's times: its cron expression in its time zone.
pub struct Times {
    cron: Cron,
    zone: Tz,
    /// Its hours are named (not `*` nor a step of it): as cron does, such
    /// a time runs once on the night the clocks go back, not again in the
    /// hour lived twice.
    named_hours: bool,
}

impl Times {
    /// The schedule's times, or why it has none: minutes are the finest
    /// (no seconds field), and the zone is an IANA name.
    pub fn of(schedule: &Schedule) -> Result<Self, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(&schedule.cron)
            .map_err(|e| format!("{:?} is not a cron expression: {e}", schedule.cron))?;
        let zone: Tz = schedule.timezone.parse().map_err(|_| {
            format!(
                "{:?} is not a time zone (an IANA name such as Europe/Paris or UTC)",
                schedule.timezone
            )
        })?;
        let hours = match schedule.cron.trim() {
            "@hourly" => "*",
            alias if alias.starts_with('@') => "0",
            fields => fields.split_whitespace().nth(1).unwrap_or("*"),
        };
        Ok(Self {
            cron,
            zone,
            named_hours: !hours.contains('*'),
        })
    }

    /// The first time after `t`, if any is left.
    pub fn next_after(&self, mut t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        loop {
            let at = self
                .cron
                .find_next_occurrence(&t.with_timezone(&self.zone), false)
                .ok()?
                .with_timezone(&Utc);
            if !self.lived_again(at) {
                return Some(at);
            }
            t = at;
        }
    }

    /// The last time at or before `t`.
    fn latest_at(&self, mut t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut inclusive = true;
        loop {
            let at = self
                .cron
                .find_previous_occurrence(&t.with_timezone(&self.zone), inclusive)
                .ok()?
                .with_timezone(&Utc);
            if !self.lived_again(at) {
                return Some(at);
            }
            (t, inclusive) = (at, false);
        }
    }

    /// Whether `at` is a time of named hours in the hour lived a second
    /// time as the clocks go back (its wall-clock time came an hour ago).
    fn lived_again(&self, at: DateTime<Utc>) -> bool {
        use chrono::{LocalResult, TimeZone};
        let wall = at.with_timezone(&self.zone).naive_local();
        self.named_hours
            && matches!(self.zone.from_local_datetime(&wall),
                LocalResult::Ambiguous(first, _) if first.with_timezone(&Utc) != at)
    }

    /// The next [`SHOWN`] times after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(t), |at| self.next_after(*at))
            .take(SHOWN)
            .collect()
    }
}

/// A run, as the prompt templates see it (`schedule`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    /// When it was due (RFC 3339, UTC).
    pub due: String,
    /// The same in the schedule's time zone (`2026-12-06 02:00`).
    pub local: String,
    pub cron: String,
    pub timezone: String,
    /// Whether it runs for times missed while no server was running.
    pub late: bool,
}

/// Looks for runs due every [`TICK`] while `paddock` is served.
pub fn spawn(paddock: &Arc<Paddock>) {
    let paddock: Weak<Paddock> = Arc::downgrade(paddock);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_pass: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
        loop {
            tick.tick().await;
            let Some(paddock) = paddock.upgrade() else {
                return;
            };
            let now = Utc::now();
            // Since the last pass began, if it ended just now (it was
            // slow), this server was running all along.
            let watched_since = match last_pass {
                Some((began, ended)) if (now - ended).num_seconds() <= LATE_AFTER_SECS => began,
                _ => now,
            };
            paddock.run_schedules(now, watched_since).await;
            last_pass = Some((now, Utc::now()));
        }
    });
}

impl Paddock {
    /// Runs what is due at `now` of every schedule, each run by the one
    /// server that takes it, a few at once ([`RUNS_AT_ONCE`]). This server
    /// has looked since `watched_since`: a run due since then is not one
    /// missed while no server was running, however late it is taken.
    pub async fn run_schedules(&self, now: DateTime<Utc>, watched_since: DateTime<Utc>) {
        let due = match self.store.due_schedules(now).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!("cannot read the schedules due: {e}");
                return;
            }
        };
        let watched_since = watched_since.min(now);
        futures_util::stream::iter(due)
            .for_each_concurrent(RUNS_AT_ONCE, |(trigger, at)| async move {
                if let Err(e) = self.run_schedule(trigger, at, now, watched_since).await {
                    tracing::warn!(trigger = %trigger, "a scheduled run failed: {e}");
                }
            })
            .await;
    }

    /// When a schedule trigger runs next, from now, as `draft` says: after
    /// it is made (no `before`) or changed. Only what its times hang on
    /// moves them: an edit of its name or prompt leaves a run that came
    /// due, not yet taken, to run.
    pub(super) fn next_run(
        draft: &TriggerDraft,
        before: Option<&TriggerDraft>,
    ) -> Result<NextRun, AppError> {
        let Some(schedule) = draft.schedule.as_ref().filter(|_| !draft.paused) else {
            return Ok(NextRun::Never);
        };
        let next = Times::of(schedule)
            .map_err(AppError::Invalid)?
            .next_after(Utc::now());
        let moved =
            before.is_none_or(|b| (&b.schedule, b.paused) != (&draft.schedule, draft.paused));
        Ok(match (moved, next) {
            (false, next) => NextRun::Kept(next),
            (true, Some(next)) => NextRun::At(next),
            (true, None) => NextRun::Never,
        })
    }

    /// A schedule trigger's next runs, shown with it.
    pub(super) fn with_next_runs(mut trigger: Trigger) -> Trigger {
        if let (Some(schedule), false) = (&trigger.draft.schedule, trigger.draft.paused) {
            if let Ok(times) = Times::of(schedule) {
                trigger.next_runs = times.upcoming(Utc::now());
            }
        }
        trigger
    }

    /// Runs a schedule due at `due` if this server is the one to move it
    /// on: for the latest time due at `now` (the ones missed before it are
    /// let go), late if it was due well before `watched_since`.
    async fn run_schedule(
        &self,
        id: TriggerId,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        watched_since: DateTime<Utc>,
    ) -> Result<(), AppError> {
        let trigger = self.store.get_trigger(id).await?.map(|(t, _)| t);
        let found = trigger.and_then(|t| match (t.draft.schedule.clone(), t.draft.paused) {
            (Some(schedule), false) => Times::of(&schedule)
                .map_err(|why| tracing::warn!(trigger = %id, "the schedule cannot run: {why}"))
                .ok()
                .map(|times| (schedule, times, t)),
            _ => None,
        });
        let Some((schedule, times, trigger)) = found else {
            // Paused, changed or gone meanwhile (a change sets its own next
            // time): this time is not to run.
            self.store.advance_schedule(id, due, None).await?;
            return Ok(());
        };
        let latest = times.latest_at(now).map_or(due, |at| at.max(due));
        // No time left after this one (a cron with a year): the last run.
        if !self
            .store
            .advance_schedule(id, due, times.next_after(now))
            .await?
        {
            return Ok(());
        }
        let run = format!(
            "schedule-{}",
            latest.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let late = (watched_since - latest).num_seconds() > LATE_AFTER_SECS;
        let local = latest
            .with_timezone(&times.zone)
            .format("%Y-%m-%d %H:%M")
            .to_string();
        if late && schedule.missed == MissedRuns::Skip {
            return self
                .skip_run(
                    &trigger,
                    &run,
                    409,
                    format!("skipped: due at {local} while no server was running"),
                )
                .await;
        }
        if let Some((session, status)) = self.run_in_progress(&trigger).await? {
            let going = match status {
                SessionStatus::AwaitingPermission => "waits for a permission decision",
                _ => "is still going",
            };
            return self
                .skip_run(
                    &trigger,
                    &run,
                    409,
                    format!("skipped: the run in session {session} {going}"),
                )
                .await;
        }
        let said = Run {
            due: latest.to_rfc3339_opts(SecondsFormat::Secs, true),
            local: local.clone(),
            cron: schedule.cron.clone(),
            timezone: schedule.timezone.clone(),
            late,
        };
        let opened = Opened {
            verified: Verified {
                id: run.clone(),
                how: format!(
                    "Schedule: {} in {}, due {local}{}",
                    schedule.cron,
                    schedule.timezone,
                    if late { " (missed, run once)" } else { "" }
                ),
            },
            payload: serde_json::to_value(&said).unwrap_or_default(),
            said: Said::Schedule(said),
            files: Vec::new(),
            kept: None,
        };
        let answer = self.accept(&trigger, opened, None).await?;
        if answer.status >= 300 {
            // Not started (another handling held it, or the server could
            // not): said in the log, as no one sends it again.
            let why = answer.body["error"]["message"]
                .as_str()
                .or(answer.body["outcome"].as_str())
                .unwrap_or("not started")
                .to_owned();
            self.skip_run(&trigger, &run, answer.status, format!("not run: {why}"))
                .await?;
        }
        Ok(())
    }

    /// The session of the schedule's last run and where it is, if its run
    /// is not over (it works, or waits for a permission decision).
    async fn run_in_progress(
        &self,
        trigger: &Trigger,
    ) -> Result<Option<(SessionId, SessionStatus)>, AppError> {
        let Some(session) = self.store.last_session(trigger.id).await? else {
            return Ok(None);
        };
        Ok(self
            .store
            .get_session(session)
            .await?
            .filter(|s| s.status.is_busy())
            .map(|s| (session, s.status)))
    }

    /// Notes a run that was not started, in the trigger's log (a run
    /// handled meanwhile keeps its own answer).
    async fn skip_run(
        &self,
        trigger: &Trigger,
        run: &str,
        status: u16,
        why: String,
    ) -> Result<(), AppError> {
        let claim = uuid::Uuid::now_v7().to_string();
        let abandoned_before = Utc::now() - super::ABANDONED_AFTER;
        let claimed = self
            .store
            .claim_delivery(trigger.id, run, &claim, abandoned_before)
            .await?;
        if let Claim::New { .. } = claimed {
            tracing::info!(trigger = %trigger.id, "{run} {why}");
            let skipped = Delivery {
                trigger: trigger.id,
                id: run.to_owned(),
                received_at: Utc::now(),
                status,
                outcome: why,
                session: None,
            };
            let forget_before = forget_deliveries_before(trigger.draft.kind);
            self.store
                .finish_delivery(&skipped, &claim, forget_before)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn times(cron: &str, zone: &str) -> Result<Times, String> {
        Times::of(&Schedule {
            cron: cron.into(),
            timezone: zone.into(),
            missed: MissedRuns::Skip,
        })
    }

    #[test]
    fn times_follow_the_cron_in_its_zone() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let paris = times("0 2 * * *", "Europe/Paris").unwrap();
        // 2 am in Paris is 1 am UTC in winter.
        assert_eq!(
            paris.next_after(at("2026-12-05T12:00:00Z")),
            Some(at("2026-12-06T01:00:00Z"))
        );
        assert_eq!(
            paris.latest_at(at("2026-12-06T01:00:00Z")),
            Some(at("2026-12-06T01:00:00Z"))
        );
        let shown = paris.upcoming(at("2026-12-05T12:00:00Z"));
        assert_eq!(shown.len(), SHOWN);
        assert_eq!(shown[2], at("2026-12-08T01:00:00Z"));
        let hourly = times("@hourly", "UTC").unwrap();
        assert_eq!(
            hourly.next_after(Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 11, 0, 0).unwrap())
        );
        for (cron, zone) in [
            ("* * * * * *", "UTC"),
            ("61 * * * *", "UTC"),
            ("every day", "UTC"),
            ("0 2 * * *", "Mars/Olympus"),
            ("0 2 * * *", ""),
        ] {
            assert!(times(cron, zone).is_err(), "{cron} {zone}");
        }
    }

    /// The night the clocks go back, 1:30 comes twice in New York: a time
    /// of named hours runs once (the first), as cron runs it, whether it
    /// names one hour or several; one of every hour runs each hour lived.
    #[test]
    fn a_time_of_named_hours_runs_once_when_the_clocks_go_back() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let first_three = |cron: &str, from: &str| {
            let t = times(cron, "America/New_York").unwrap();
            std::iter::successors(t.next_after(at(from)), |x| t.next_after(*x))
                .take(3)
                .collect::<Vec<_>>()
        };
        let back = "2026-11-01T03:00:00Z";
        for cron in ["30 1,13 * * *", "30 1-2 * * *", "30 1 * * *"] {
            let runs = first_three(cron, back);
            assert_eq!(runs[0], at("2026-11-01T05:30:00Z"), "{cron}");
            assert!(
                !runs.contains(&at("2026-11-01T06:30:00Z")),
                "{cron}: {runs:?}"
            );
        }
        assert_eq!(
            first_three("30 * * * *", back),
            [
                at("2026-11-01T03:30:00Z"),
                at("2026-11-01T04:30:00Z"),
                at("2026-11-01T05:30:00Z")
            ]
        );
        assert!(first_three("*/30 * * * *", "2026-11-01T05:50:00Z")
            .contains(&at("2026-11-01T06:30:00Z")));
        // The latest time due, seen from the hour lived again: the first.
        let named = times("30 1,13 * * *", "America/New_York").unwrap();
        assert_eq!(
            named.latest_at(at("2026-11-01T06:45:00Z")),
            Some(at("2026-11-01T05:30:00Z"))
        );
    }
}
