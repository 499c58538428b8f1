//! Several Paddock processes serving one installation: what keeps each
//! replica's part of the work, and what it hears from the others.
//!
//! - The heartbeat: every third of a lease, a replica renews the leases of
//!   the sessions it runs, and takes over sessions with work whose lease
//!   lapsed (their replica died or was cut off), the way a restarted
//!   process takes its own back at start-up (see the
//!   [`Runner`](crate::engine::Runner)); every lease, it removes the
//!   sandboxes of sessions that are gone (one a run here made again while
//!   another replica deleted its session).
//! - The owner watch: a replica stops the runs and sandboxes of sessions
//!   whose owner may no longer run sessions (disabled, or made a viewer).
//! - The follower: what the [`Bus`](crate::bus::Bus) brings from the other
//!   replicas reaches this one's viewers (events read from the store, in
//!   order, each once), its runs (Stop), its open permission requests
//!   (decisions), its terminals (closed when their session becomes
//!   read-only), and its heartbeat's takeover (a replica that shut down
//!   handed its sessions off).
//!
//! Both run on SQLite too, alone: the heartbeat then only guards a
//! process's own runs, and there is no bus to follow.

use crate::bus::{Notice, Received};
use crate::engine::{Permissions, Runner, Takeover};
use crate::hub::{Hub, SessionUpdate};
use crate::journal::secret_mask::SecretMasks;
use crate::store::Store;
use crate::terminal_slots::TerminalSlots;
use app::domain::SessionId;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Events read from the store at once for viewers here.
const EVENTS_READ: i64 = 256;
/// Sessions followed before those nobody here watches any more are
/// forgotten.
const FORGET_AFTER: usize = 1024;

/// Renews this replica's leases, and takes orphaned sessions over, each
/// every third of `lease`, and removes the sandboxes of sessions that are
/// gone, and closes the egress sockets of sandboxes that went down, every
/// `lease`, for as long as the runner lives. Apart: taking
/// many sessions over (each read whole) must not hold the renewals back
/// until this replica's own leases lapse.
pub fn spawn_heartbeat(runner: &Arc<Runner>, lease: Duration) {
    every(runner, lease / 3, |runner| async move {
        runner.renew_leases().await
    });
    every(runner, lease / 3, |runner| async move {
        adopt_orphans(&runner).await
    });
    every(runner, lease, |runner| async move {
        reap_sandboxes(&runner).await
    });
    every(runner, lease, |runner| async move {
        match runner.close_egress_of_downed().await {
            Ok(closed) if closed.is_empty() => {}
            Ok(closed) => tracing::info!(
                ?closed,
                "closed the egress sockets of sandboxes that went down by themselves"
            ),
            Err(e) => tracing::warn!("cannot look for sandboxes that went down: {e}"),
        }
    });
    if let Some(idle) = runner.sandbox_idle() {
        // Looked for four times an idle spell, at most every minute.
        let period = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        every(runner, period, move |runner| async move {
            match runner.stop_idle_sandboxes(idle).await {
                Ok(stopped) if stopped.is_empty() => {}
                Ok(stopped) => {
                    tracing::info!(?stopped, "stopped the sandboxes unused for {idle:?}")
                }
                Err(e) => tracing::warn!("cannot look for idle sandboxes: {e}"),
            }
        });
    }
}

/// Removes the sandboxes whose session is gone, and says so.
async fn reap_sandboxes(runner: &Arc<Runner>) {
    match runner.reap_sandboxes().await {
        Ok(reaped) if reaped.is_empty() => {}
        Ok(reaped) => tracing::info!(?reaped, "removed the sandboxes of sessions that are gone"),
        Err(e) => tracing::warn!("cannot look for sandboxes whose session is gone: {e}"),
    }
}

/// How often every replica looks for what runs on the credentials of
/// owners who may no longer run sessions, besides when it hears of an
/// access change.
const OWNER_SWEEP: Duration = Duration::from_secs(60);

/// Stops what runs here on the credentials of owners who may no longer run
/// sessions (see [`Runner::stop_barred`]): at once when an account's access
/// changes, here or on another replica, and every [`OWNER_SWEEP`] (an
/// account changed by the `paddock user` command, which tells no running
/// server, or a sandbox a terminal still held), for as long as the runner
/// lives.
pub fn spawn_owner_watch(runner: &Arc<Runner>, hub: &Hub) {
    let mut changes = hub.subscribe_access();
    let runner = Arc::downgrade(runner);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(OWNER_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let whose = tokio::select! {
                heard = changes.recv() => match heard {
                    Ok(whose) => whose,
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => None,
            };
            let Some(runner) = Weak::upgrade(&runner) else {
                return;
            };
            match runner.stop_barred(whose).await {
                Ok(stopped) if stopped.is_empty() => {}
                Ok(stopped) => tracing::info!(
                    ?stopped,
                    "stopped the sandboxes of owners who may no longer run sessions"
                ),
                Err(e) => tracing::warn!("cannot look for what barred owners run: {e}"),
            }
        }
    });
}

/// Runs `beat` every `period` (the first a period from now), for as long
/// as the runner lives.
fn every<F, B>(runner: &Arc<Runner>, period: Duration, beat: B)
where
    B: Fn(Arc<Runner>) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    let runner = Arc::downgrade(runner);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(runner) = Weak::upgrade(&runner) else {
                return;
            };
            beat(runner).await;
        }
    });
}

/// Takes over what nobody runs, and says so.
async fn adopt_orphans(runner: &Arc<Runner>) {
    match runner.take_over_orphans().await {
        Ok(taken) => {
            for (session, how) in taken {
                tracing::info!(%session, ?how, "took the session over");
                crate::metrics::taken_over(match how {
                    Takeover::Interrupted => "interrupted",
                    Takeover::Resumed => "awaiting_permission",
                    Takeover::Queued => "queued",
                });
            }
        }
        Err(e) => tracing::warn!("cannot look for sessions to take over: {e}"),
    }
    crate::metrics::session_leases(runner.running());
}

/// What this replica acts on when another replica speaks.
pub struct Follower {
    pub hub: Hub,
    pub store: Arc<dyn Store>,
    pub runner: Arc<Runner>,
    pub permissions: Arc<Permissions>,
    pub terminals: TerminalSlots,
}

impl Follower {
    /// Acts on what other replicas send, until the bus closes.
    pub fn spawn(self, mut inbox: mpsc::Receiver<Received>) {
        tokio::spawn(async move {
            // The last `seq` handed to viewers here, per watched session.
            let mut delivered = HashMap::new();
            while let Some(received) = inbox.recv().await {
                self.act(received, &mut delivered).await;
            }
        });
    }

    async fn act(&self, received: Received, delivered: &mut HashMap<SessionId, i64>) {
        let notice = match received {
            Received::Notice(notice) => notice,
            Received::Gap => {
                // What was missed is in the store: hand viewers what follows
                // what they were given, or the latest event (a viewer that
                // sees it skip a `seq` reads the rest itself).
                // Who may see what may have changed meanwhile too.
                self.hub.deliver_access_change(None);
                delivered.retain(|session, _| self.hub.watched(*session));
                for session in self.hub.watched_sessions() {
                    let after = match delivered.get(&session) {
                        Some(&seq) => seq,
                        None => match self.store.get_session(session).await {
                            Ok(Some(s)) => s.last_seq - 1,
                            _ => continue,
                        },
                    };
                    self.deliver_events(session, after, delivered).await;
                }
                return;
            }
        };
        match notice {
            Notice::Event { session, seq } => {
                if !self.hub.watched(session) {
                    delivered.remove(&session);
                    return;
                }
                // A cursor far behind (the session ran here meanwhile, its
                // events handed over directly) is not caught up a page a
                // notice: from the one before, viewers read what they
                // missed from the store themselves.
                let after = delivered
                    .get(&session)
                    .copied()
                    .filter(|&d| seq.saturating_sub(d) <= EVENTS_READ)
                    .unwrap_or_else(|| seq.saturating_sub(1));
                if seq > after {
                    self.deliver_events(session, after, delivered).await;
                }
            }
            Notice::Delta(delta) => self.hub.deliver_delta(delta),
            Notice::Session { session } => {
                let watched = self.hub.watches_sessions();
                if watched || self.terminals.any_open(session) {
                    if let Ok(Some(s)) = self.store.get_session(session).await {
                        self.terminals.follow(&s);
                        if watched {
                            self.hub
                                .deliver_session(SessionUpdate::Changed(Arc::new(s)));
                        }
                    }
                }
            }
            Notice::Deleted { session } => {
                delivered.remove(&session);
                self.runner.cancel(session);
                // Its secrets, set here by a run of its, are masked no more.
                SecretMasks::global().forget(session);
                self.hub.close(session);
                self.hub.deliver_session(SessionUpdate::Deleted(session));
            }
            Notice::Access { user } => self.hub.deliver_access_change(user),
            Notice::Stop { session } => self.runner.cancel(session),
            Notice::HandedOff => {
                let runner = self.runner.clone();
                tokio::spawn(async move { adopt_orphans(&runner).await });
            }
            Notice::Decide {
                session,
                request_id,
                decision,
                reason,
                by,
            } => {
                // Only the replica that asked has it pending.
                let _ = self
                    .permissions
                    .decide(session, &request_id, decision, reason, by);
            }
        }
    }

    /// Reads the session's events after `after` from the store and hands
    /// them to its viewers here, in order.
    async fn deliver_events(
        &self,
        session: SessionId,
        after: i64,
        delivered: &mut HashMap<SessionId, i64>,
    ) {
        match self.store.events_after(session, after, EVENTS_READ).await {
            Ok(events) => {
                let last = events.last().map_or(after, |e| e.seq);
                for event in events {
                    self.hub.deliver_event(event);
                }
                if delivered.len() >= FORGET_AFTER {
                    delivered.retain(|session, _| self.hub.watched(*session));
                }
                delivered.insert(session, last);
            }
            Err(e) => tracing::warn!(%session, "events for viewers here not read: {e}"),
        }
    }
}
