//! The bus between Paddock replicas: PostgreSQL's `LISTEN/NOTIFY`, so that
//! several Paddock processes on one database serve one installation.
//!
//! It carries [`Notice`]s: what changed (an event stored, a token fragment,
//! a session's summary, access) for the viewers each replica serves, and
//! what a request asked of the replica that runs a session (Stop, a
//! permission decision). Events travel as references (`session`, `seq`):
//! a receiver reads them from the store, which holds them before they are
//! announced (invariant 1), so the bus never carries more than 8000 bytes
//! of a notification and never holds a transcript's text.
//!
//! Each notification is sealed (XChaCha20-Poly1305, under a key derived
//! from the master key, which replicas share): PostgreSQL lets any role
//! that may connect to the database listen and notify on any channel, so
//! another role on a shared cluster reads nothing of the live text and
//! cannot stop, delete or decide anything through the bus; a notification
//! that does not open is dropped, and so is one heard before or sent more
//! than [`FRESH_WITHIN`] ago (a replay of one it listened to; the first of
//! those in a window is taken as a gap, as this process may have been held
//! up).
//!
//! Notifications are not durable: one sent while a receiver reconnects is
//! lost. A receiver therefore says when it reconnected ([`Received::Gap`]),
//! and viewers repair from the store what they missed, the way a lagging
//! viewer does. With SQLite there is no bus: one process serves alone.

mod heard;

use crate::seal::Sealer;
use app::domain::{Decision, Delta, SessionId, UserId};
use base64::Engine as _;
use heard::{Heard, Heeded, FRESH_WITHIN};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The notification channel every replica listens on.
const CHANNEL: &str = "paddock";
/// PostgreSQL refuses payloads of 8000 bytes or more.
const PAYLOAD_MAX: usize = 7900;
/// An envelope's JSON at most: sealed, then in base64, it fits
/// [`PAYLOAD_MAX`].
const ENVELOPE_MAX: usize = PAYLOAD_MAX / 4 * 3 - Sealer::OVERHEAD;
/// What the bus's key is derived for.
pub const PURPOSE: &str = "the bus between replicas";
/// Notices waiting to be sent before new ones are dropped (viewers then
/// repair from the store at the next event).
const QUEUE: usize = 8192;

/// What one replica tells the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Notice {
    /// An event was stored (read it from the store).
    Event { session: SessionId, seq: i64 },
    /// A fragment of a block still being generated.
    Delta(Delta),
    /// A session's summary changed (read it from the store).
    Session { session: SessionId },
    /// A session was deleted: its viewers' streams end.
    Deleted { session: SessionId },
    /// What a person may see or do changed (everyone's, without one):
    /// their open streams check their caller again.
    Access {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<UserId>,
    },
    /// Stop the session's run, wherever it runs.
    Stop { session: SessionId },
    /// A replica shutting down gave its sessions up: take them over now.
    HandedOff,
    /// A decision on a permission request, for the replica that asked it.
    Decide {
        session: SessionId,
        request_id: String,
        decision: Decision,
        reason: Option<String>,
        by: Option<String>,
    },
}

/// What a replica hears.
#[derive(Debug, PartialEq)]
pub enum Received {
    Notice(Notice),
    /// The listening connection was lost and is back: notices sent
    /// meanwhile may be missing.
    Gap,
}

/// One notification: who sent it, when (milliseconds since 1970, by its
/// clock), and its notices in order, each read on its own: one that a newer
/// replica sends during an upgrade does not lose the others.
#[derive(Deserialize)]
struct Envelope {
    from: String,
    at: i64,
    notices: Vec<serde_json::Value>,
}

impl Envelope {
    /// The notices this replica knows, in order, and why the first it does
    /// not know was not read.
    fn read(self) -> (Vec<Notice>, Option<serde_json::Error>) {
        let mut unknown = None;
        let known = self
            .notices
            .into_iter()
            .filter_map(|notice| {
                serde_json::from_value(notice)
                    .map_err(|e| unknown = unknown.take().or(Some(e)))
                    .ok()
            })
            .collect();
        (known, unknown)
    }
}

/// Sends notices to the other replicas. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    queue: mpsc::Sender<Notice>,
    pool: PgPool,
    /// This process, drawn at start (not its replica name, which two
    /// processes may share by mistake): what it hears from itself is
    /// dropped by it.
    sender: String,
    /// Whether notices are being dropped (warned once per spell).
    dropping: Arc<AtomicBool>,
    sealer: Sealer,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the database does not carry the notice: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the notice is too large for the bus ({0} bytes)")]
    TooLarge(usize),
    #[error("cannot seal the notice: {0}")]
    Seal(String),
}

impl Bus {
    /// Connects to the PostgreSQL at `url` as `replica`, sealing with
    /// `sealer` (the master key's, for [`PURPOSE`]): returns the bus and
    /// what the other replicas send (never this one's own notices).
    /// Hearing nothing for `quiet`, it asks its connection whether it still
    /// holds, and gives it a third of that to answer: one a NAT or a load
    /// balancer dropped without a word would otherwise be waited on for
    /// good, every notice since lost.
    pub async fn connect(
        url: &str,
        quiet: Duration,
        sealer: Sealer,
    ) -> Result<(Self, mpsc::Receiver<Received>), BusError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let listener = listening(url).await?;
        let (queue, outbox) = mpsc::channel(QUEUE);
        let (inbox, received) = mpsc::channel(QUEUE);
        let bus = Self {
            queue,
            pool,
            sender: uuid::Uuid::now_v7().simple().to_string(),
            dropping: Arc::default(),
            sealer: sealer.clone(),
        };
        tokio::spawn(bus.clone().send_queued(outbox));
        let link = Link {
            url: url.to_owned(),
            quiet,
            sealer,
        };
        tokio::spawn(listen(link, listener, bus.sender.clone(), inbox));
        Ok((bus, received))
    }

    /// Queues a notice (announcements: sent in order, batched, never
    /// waited for). Dropped when the database has not kept up.
    pub fn post(&self, notice: Notice) {
        match self.queue.try_send(notice) {
            Ok(()) => self.dropping.store(false, Ordering::Relaxed),
            Err(_) => {
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the bus to other replicas is full: notices are dropped (their viewers \
                         catch up from the store at the next event)"
                    );
                }
            }
        }
    }

    /// Sends one notice now and says whether the database took it
    /// (commands, whose sender answers a request).
    pub async fn send(&self, notice: Notice) -> Result<(), BusError> {
        let envelope = self.envelope(&[encode(&notice)]);
        if envelope.len() > ENVELOPE_MAX {
            return Err(BusError::TooLarge(envelope.len()));
        }
        self.notify(&envelope).await
    }

    /// An [`Envelope`] around notices already encoded.
    fn envelope(&self, notices: &[String]) -> String {
        format!(
            r#"{{"from":{},"at":{},"notices":[{}]}}"#,
            encode(&self.sender),
            chrono::Utc::now().timestamp_millis(),
            notices.join(",")
        )
    }

    /// Sends an envelope, sealed.
    async fn notify(&self, envelope: &str) -> Result<(), BusError> {
        let sealed = self
            .sealer
            .seal(envelope.as_bytes())
            .map_err(|e| BusError::Seal(e.to_string()))?;
        let payload = base64::engine::general_purpose::STANDARD.encode(sealed);
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sends queued notices in order, as many in one notification as fit.
    async fn send_queued(self, mut outbox: mpsc::Receiver<Notice>) {
        let room = ENVELOPE_MAX.saturating_sub(self.envelope(&[]).len());
        let mut next: Option<String> = None;
        loop {
            let first = match next.take() {
                Some(first) => first,
                None => match outbox.recv().await {
                    Some(notice) => encode(&notice),
                    None => return,
                },
            };
            if first.len() > room {
                // A long delta: viewers get its text whole with its block.
                tracing::debug!("a notice too large for the bus was not sent");
                continue;
            }
            let mut size = first.len();
            let mut batch = vec![first];
            while let Ok(notice) = outbox.try_recv() {
                let more = encode(&notice);
                if size + 1 + more.len() > room {
                    next = Some(more);
                    break;
                }
                size += 1 + more.len();
                batch.push(more);
            }
            if let Err(e) = self.notify(&self.envelope(&batch)).await {
                tracing::warn!("notices to other replicas lost: {e}");
            }
        }
    }
}

fn encode(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A connection to the PostgreSQL at `url`, listening on the bus.
async fn listening(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Where the bus listens, how long it may hear nothing, and what opens
/// what it hears.
struct Link {
    url: String,
    quiet: Duration,
    sealer: Sealer,
}

impl Link {
    /// A notification's envelope (JSON), if it opens.
    fn open(&self, payload: &str) -> Option<Vec<u8>> {
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .ok()?;
        self.sealer.open(&sealed)
    }

    /// How long a question to the connection, or a new one, may take.
    fn answer_within(&self) -> Duration {
        self.quiet / 3
    }
}

/// A new listening connection, tried every second until one holds.
async fn listen_again(link: &Link) -> PgListener {
    loop {
        match tokio::time::timeout(link.answer_within(), listening(&link.url)).await {
            Ok(Ok(listener)) => {
                tracing::info!("the bus to other replicas is back");
                return listener;
            }
            Ok(Err(e)) => tracing::debug!("the bus is still down: {e}"),
            Err(_) => tracing::debug!("the bus is still down: no answer"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A gap for notifications that were not acted on, once a
/// [`FRESH_WITHIN`] at most (the repair reads the store as it is now).
fn gap_once_a_window(last: &mut Option<tokio::time::Instant>) -> Option<Received> {
    let now = tokio::time::Instant::now();
    if last.is_some_and(|gap| now - gap < FRESH_WITHIN) {
        return None;
    }
    *last = Some(now);
    Some(Received::Gap)
}

/// Counts a notification sealed here but not read, or one of its notices
/// (a newer replica's, during an upgrade), said at the 1st, 2nd, 4th… of
/// them: what it said may be missing, so a gap, as after a lost connection.
fn unread_notice(
    unread: &mut u64,
    why: &serde_json::Error,
    last_gap: &mut Option<tokio::time::Instant>,
) -> Option<Received> {
    *unread += 1;
    if unread.is_power_of_two() {
        tracing::warn!("{unread} notices on the bus could not be read: {why}");
    }
    gap_once_a_window(last_gap)
}

/// Hands what other processes send to `inbox`, and a [`Received::Gap`]
/// whenever the connection was lost, once it listens again (a new one
/// where it stopped answering).
async fn listen(link: Link, mut listener: PgListener, me: String, inbox: mpsc::Sender<Received>) {
    let (mut heard_before, mut dropped, mut stale, mut unread) =
        (Heard::default(), 0u64, 0u64, 0u64);
    let mut last_gap: Option<tokio::time::Instant> = None;
    loop {
        let heard = tokio::time::timeout(link.quiet, listener.try_recv()).await;
        let received = match heard {
            Err(_quiet) => {
                let probe = sqlx::query("SELECT 1").execute(&mut listener);
                if let Ok(Ok(_)) = tokio::time::timeout(link.answer_within(), probe).await {
                    continue;
                }
                tracing::warn!("the bus to other replicas does not answer; connecting again");
                listener = listen_again(&link).await;
                vec![Received::Gap]
            }
            Ok(Ok(Some(notification))) => {
                let payload = notification.payload();
                let opened = link
                    .open(payload)
                    .map(|json| serde_json::from_slice::<Envelope>(&json));
                let now = chrono::Utc::now().timestamp_millis();
                let heeded = match &opened {
                    Some(Ok(envelope)) if envelope.from != me => {
                        let nonce = payload.as_bytes().get(..32).and_then(|n| n.try_into().ok());
                        Some(heard_before.heed(nonce.unwrap_or_default(), envelope.at, now))
                    }
                    _ => None,
                };
                match (opened, heeded) {
                    (Some(Ok(_)), None) => continue,
                    (Some(Ok(envelope)), Some(Heeded::New)) => {
                        let (known, unknown) = envelope.read();
                        let mut received: Vec<_> =
                            known.into_iter().map(Received::Notice).collect();
                        if let Some(e) = unknown {
                            received.extend(unread_notice(&mut unread, &e, &mut last_gap));
                        }
                        received
                    }
                    // Of this installation's, but out of its time: a replica's
                    // clock off, this process held up, or one replayed long
                    // after. What it said may be missing, as after a lost
                    // connection.
                    (Some(Ok(envelope)), Some(Heeded::Stale)) => {
                        stale += 1;
                        if stale.is_power_of_two() {
                            tracing::warn!(
                                "{stale} notifications on the bus were out of their time, the \
                                 last by {} s against this server's clock (over {} min: a \
                                 replica's clock off, this process held up, or another role of \
                                 the database sending one again), and were not acted on",
                                envelope.at.saturating_sub(now) / 1000,
                                FRESH_WITHIN.as_secs() / 60
                            );
                        }
                        gap_once_a_window(&mut last_gap).into_iter().collect()
                    }
                    (Some(Err(e)), _) => unread_notice(&mut unread, &e, &mut last_gap)
                        .into_iter()
                        .collect(),
                    _ => {
                        // (Said at the 1st, 2nd, 4th, 8th… of them.)
                        dropped += 1;
                        if dropped.is_power_of_two() {
                            tracing::warn!(
                                "{dropped} notifications on the bus were dropped: sealed with \
                                 another master key (a replica started with another), or heard \
                                 before (another role of the database notifying its channel \
                                 again)"
                            );
                        }
                        continue;
                    }
                }
            }
            // Lost, and listening again already (sqlx reconnects eagerly).
            Ok(Ok(None)) => vec![Received::Gap],
            Ok(Err(e)) => {
                tracing::warn!("the bus to other replicas is down, retrying: {e}");
                // The gap is reported once a new connection listens.
                listener = listen_again(&link).await;
                vec![Received::Gap]
            }
        };
        for r in received {
            if inbox.send(r).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A new random key.
    fn any_key() -> [u8; 32] {
        rand::random()
    }

    #[tokio::test]
    async fn notices_read_back_as_sent() {
        let session = uuid::Uuid::now_v7();
        let notices = vec![
            Notice::Event { session, seq: 7 },
            Notice::Access { user: None },
            Notice::Access {
                user: Some(uuid::Uuid::now_v7()),
            },
            Notice::Decide {
                session,
                request_id: "perm_1".into(),
                decision: Decision::AllowSession,
                reason: Some("ok".into()),
                by: None,
            },
        ];
        let (queue, _) = mpsc::channel(1);
        let bus = Bus {
            queue,
            pool: PgPoolOptions::new()
                .connect_lazy("postgres://x@localhost/x")
                .unwrap(),
            sender: "a\"b".into(),
            dropping: Arc::default(),
            sealer: Sealer::new(any_key(), PURPOSE),
        };
        let encoded: Vec<String> = notices.iter().map(encode).collect();
        let back: Envelope = serde_json::from_str(&bus.envelope(&encoded)).unwrap();
        assert_eq!(back.from, "a\"b");
        assert_eq!(back.read().0, notices);
    }

    /// A notice this replica does not know (a newer one's) is left out, and
    /// the ones around it are read.
    #[test]
    fn an_unknown_notice_leaves_the_others() {
        let session = uuid::Uuid::now_v7();
        let envelope = format!(
            r#"{{"from":"x","at":1,"notices":[{{"t":"stop","session":"{session}"}},{{"t":"rewind","session":"{session}"}},{{"t":"handed_off"}}]}}"#
        );
        let (known, unknown) = serde_json::from_str::<Envelope>(&envelope).unwrap().read();
        assert_eq!(known, [Notice::Stop { session }, Notice::HandedOff]);
        assert!(unknown.unwrap().to_string().contains("rewind"));
    }

    /// What the bus carries opens with the key it was sealed with, for its
    /// purpose, and with nothing else; a plain notification does not.
    #[test]
    fn only_what_this_installation_sealed_opens() {
        let key = any_key();
        let link = |sealer| Link {
            url: String::new(),
            quiet: Duration::from_secs(1),
            sealer,
        };
        let sealed = |sealer: &Sealer, text: &str| {
            base64::engine::general_purpose::STANDARD.encode(sealer.seal(text.as_bytes()).unwrap())
        };
        let envelope = r#"{"from":"x","notices":[{"t":"handed_off"}]}"#;
        let ours = link(Sealer::new(key, PURPOSE));
        let payload = sealed(&Sealer::new(key, PURPOSE), envelope);
        assert_eq!(ours.open(&payload).unwrap(), envelope.as_bytes());
        assert!(payload.len() < envelope.len() * 4 / 3 + 64);
        // Another key, another purpose of this key, plain JSON, a tampered
        // byte: dropped.
        for other in [
            sealed(&Sealer::new(any_key(), PURPOSE), envelope),
            sealed(&Sealer::new(key, "another use"), envelope),
            envelope.to_owned(),
            format!(
                "{}{}{}",
                &payload[..40],
                if &payload[40..41] == "A" { "B" } else { "A" },
                &payload[41..]
            ),
        ] {
            assert!(ours.open(&other).is_none(), "{other}");
        }
        // The largest envelope sent fits PostgreSQL's payload, sealed.
        let largest = "x".repeat(ENVELOPE_MAX);
        assert!(sealed(&Sealer::new(key, PURPOSE), &largest).len() <= PAYLOAD_MAX);
    }
}
