//! Sending notifications. Each server runs one sender; for each endpoint,
//! the server that holds it (a lease in the database, renewed before every
//! try, and let go when the server shuts down) sends its messages one at a
//! time: the pending one due first (tried again with exponential backoff
//! and jitter, for a day, then let go), and when none is pending, the next
//! event that notifies past the endpoint's cursor in a session's log, in
//! the log's order (the cursor moves past the others). A message is stored,
//! and the cursor moved past its event, before it is first sent: a restart
//! resumes from there, and a message is never made twice. A session is
//! told of only while the endpoint's maker may operate it (and, for a
//! template's endpoint, owns it), checked again before every try.
//! The sender wakes when this server stores a status change or a
//! permission request, and looks again every [`POLL`] (other replicas'
//! events, retries due, messages to send again).

use super::client;
use super::message;
use crate::paddock::Paddock;
use crate::store::notifications::{DueEndpoint, MESSAGES_KEPT_DAYS};
use crate::store::storable;
use crate::sync::lock;
use crate::triggers::standard_webhooks;
use crate::vault::SecretOf;
use app::accounts::Access;
use app::domain::{AppError, Event, EventKind, Session, SessionStatus, UserId};
use app::notifications::{Endpoint, EndpointId, Message, MessageState, NotifiedEvent, Scope};
use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How often each server looks, besides when it is told.
pub const POLL: Duration = Duration::from_secs(2);
/// How often each server forgets messages past the log's days, and
/// catches up with the events that may notify stored by a replica of an
/// older version (see
/// [`Notifications::catch_up_notable`](crate::store::notifications::Notifications::catch_up_notable)), as far back
/// as [`CATCH_UP`] (and once at start).
const FORGET_EVERY: Duration = Duration::from_secs(3600);
const CATCH_UP: chrono::Duration = chrono::Duration::hours(2);
/// Status changes looked back through for the start of a run.
const STATUSES_BACK: i64 = 200;
/// How long a server holds an endpoint past its last try: longer than a
/// try may take.
const HOLD: chrono::Duration = chrono::Duration::seconds(60);
/// Endpoints sent to at once.
const ENDPOINTS_AT_ONCE: usize = 16;
/// Turns one person's endpoints take at once (waiting for a slot
/// included): endpoints that never answer hold up their maker's
/// messages, not everyone's.
const MAKERS_TURNS_AT_ONCE: usize = 4;
/// How long one endpoint's turn goes on sending (a try under way ends
/// first): a slow one waits for the next look, behind the others.
const TURN_BUDGET: Duration = Duration::from_secs(30);
/// Sessions, and events of one session, read from the store at once.
const SESSIONS_AT_ONCE: i64 = 50;
const EVENTS_AT_ONCE: i64 = 100;
/// Messages sent to one endpoint in one look (the rest, at the next).
const MESSAGES_PER_LOOK: usize = 20;
/// How long a message is tried.
const TRIED_FOR: chrono::Duration = chrono::Duration::days(1);
/// Tries a message its receiver refuses as it is (a 4xx) or redirects (a
/// 3xx) is given: their
/// waits add up to 10 minutes at the least (21 as a rule), enough for a
/// receiver being deployed or its token rotated.
const REFUSED_TRIES: u32 = 9;
/// The first wait after a failed try, and the longest.
const FIRST_WAIT_SECS: f64 = 5.0;
const LONGEST_WAIT_SECS: f64 = 3600.0;
/// The most of an endpoint's answer read, and kept with a failed try.
const ANSWER_MAX_BYTES: usize = 1024;
const ERROR_MAX_CHARS: usize = 300;

/// Runs this server's sender while `paddock` is served; when it shuts
/// down (or goes), the endpoints it held are let go at once, for another
/// server to take. Each look starts a turn for each endpoint with work
/// that has none under way ([`ENDPOINTS_AT_ONCE`] run at once): a slow
/// endpoint holds up only its own messages, never a look.
pub fn spawn(paddock: &Arc<Paddock>) {
    let holder: Arc<str> = uuid::Uuid::now_v7().to_string().into();
    let notable = paddock.journal.notable();
    let shutting_down = paddock.hub.shutting_down();
    let http = match client::client(paddock.private_notifications()) {
        Ok(http) => http,
        Err(e) => {
            tracing::error!("notifications cannot be sent: no HTTP client ({e})");
            return;
        }
    };
    let store = paddock.store.clone();
    let paddock: Weak<Paddock> = Arc::downgrade(paddock);
    tokio::spawn(async move {
        tokio::pin!(shutting_down);
        // (Caught up at the first look.)
        let mut forgotten: Option<tokio::time::Instant> = None;
        let mut turns = tokio::task::JoinSet::new();
        let under_way: Arc<Mutex<UnderWay>> = Arc::default();
        let slots = Arc::new(Semaphore::new(ENDPOINTS_AT_ONCE));
        loop {
            let Some(p) = paddock.upgrade() else { break };
            while turns.try_join_next().is_some() {}
            match p.store.endpoints_due(Utc::now()).await {
                Ok(mut due) => {
                    // In no fixed order: one person's endpoints past their
                    // turns at once are not always the same ones.
                    due.shuffle(&mut rand::rng());
                    for endpoint in due {
                        let Some(turn) = Turn::start(endpoint, &under_way) else {
                            continue;
                        };
                        let (p, holder, http, slots) =
                            (p.clone(), holder.clone(), http.clone(), slots.clone());
                        turns.spawn(async move {
                            let turn = turn; // whole, so that it ends with the task
                            let Ok(_slot) = slots.acquire_owned().await else {
                                return;
                            };
                            if let Err(e) = p.notify(turn.id, &holder, &http).await {
                                tracing::warn!(endpoint = %turn.id, "notifications: {e}");
                            }
                        });
                    }
                }
                Err(e) => tracing::warn!("cannot list the notification endpoints: {e}"),
            }
            if forgotten.is_none_or(|at| at.elapsed() >= FORGET_EVERY) {
                forgotten = Some(tokio::time::Instant::now());
                let before = Utc::now() - chrono::Duration::days(MESSAGES_KEPT_DAYS);
                if let Err(e) = p.store.forget_messages(before).await {
                    tracing::warn!("cannot forget old notification messages: {e}");
                }
                if let Err(e) = p.store.catch_up_notable(Utc::now() - CATCH_UP).await {
                    tracing::warn!("cannot catch up with the events that may notify: {e}");
                }
            }
            drop(p);
            tokio::select! {
                () = notable.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                () = &mut shutting_down => break,
            }
        }
        // A try cut short stays pending: the next holder makes it.
        turns.shutdown().await;
        if let Err(e) = store.release_endpoints(&holder).await {
            tracing::warn!("cannot let the notification endpoints go: {e}");
        }
    });
}

/// The endpoints with a turn under way on this server, and how many of
/// them each person made.
#[derive(Default)]
struct UnderWay {
    endpoints: HashSet<EndpointId>,
    by_maker: HashMap<UserId, usize>,
}

/// An endpoint's turn under way on this server, until dropped.
struct Turn {
    id: EndpointId,
    maker: Option<UserId>,
    under_way: Arc<Mutex<UnderWay>>,
}

impl Turn {
    /// The endpoint's turn, unless one is under way, or its maker's
    /// endpoints have [`MAKERS_TURNS_AT_ONCE`] (the local operator's,
    /// with sign-in off, are everyone's).
    fn start(due: DueEndpoint, under_way: &Arc<Mutex<UnderWay>>) -> Option<Self> {
        let mut now = lock(under_way);
        let makers_full = due.maker.is_some_and(|m| {
            now.by_maker
                .get(&m)
                .is_some_and(|&n| n >= MAKERS_TURNS_AT_ONCE)
        });
        if now.endpoints.contains(&due.id) || makers_full {
            return None;
        }
        now.endpoints.insert(due.id);
        if let Some(maker) = due.maker {
            *now.by_maker.entry(maker).or_default() += 1;
        }
        Some(Self {
            id: due.id,
            maker: due.maker,
            under_way: under_way.clone(),
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut now = lock(&self.under_way);
        now.endpoints.remove(&self.id);
        if let Some(maker) = self.maker {
            if let Some(n) = now.by_maker.get_mut(&maker) {
                *n -= 1;
                if *n == 0 {
                    now.by_maker.remove(&maker);
                }
            }
        }
    }
}

/// How long to wait after `attempts` failed tries: doubling from
/// [`FIRST_WAIT_SECS`] to [`LONGEST_WAIT_SECS`], each between half and
/// one and a half times that, so that endpoints that failed together are
/// not tried again together.
fn backoff(attempts: u32) -> chrono::Duration {
    let base = (FIRST_WAIT_SECS * 2f64.powi(attempts.saturating_sub(1).min(20) as i32))
        .min(LONGEST_WAIT_SECS);
    let jitter = 0.5 + rand::random::<f64>();
    chrono::Duration::milliseconds((base * jitter * 1000.0) as i64)
}

/// What a try came to: the endpoint's status code, or why there was none.
enum Tried {
    Answered(u16, String),
    Failed(String),
}

impl Paddock {
    /// Holds the endpoint for this server (again): `false` when another
    /// holds it.
    async fn hold(&self, id: EndpointId, holder: &str) -> Result<bool, AppError> {
        let now = Utc::now();
        Ok(self
            .store
            .hold_endpoint(id, holder, now, now + HOLD)
            .await?)
    }

    /// Sends what is due to one endpoint, while this server holds it.
    async fn notify(
        &self,
        id: EndpointId,
        holder: &str,
        http: &reqwest::Client,
    ) -> Result<(), AppError> {
        if !self.hold(id, holder).await? {
            return Ok(());
        }
        let Some((endpoint, sealed)) = self.store.get_endpoint(id).await? else {
            return Ok(());
        };
        let Some(secret) = self
            .vault
            .open_secret(SecretOf::Endpoint(id), &sealed.secret)
        else {
            tracing::error!(endpoint = %id, "the endpoint's secret does not open under the master key");
            return Ok(());
        };
        let private = self.private_notifications();
        let began = tokio::time::Instant::now();
        for _ in 0..MESSAGES_PER_LOOK {
            if began.elapsed() >= TURN_BUDGET {
                return Ok(());
            }
            let pending = match self.store.next_message(id).await? {
                Some(pending) => Some(pending),
                None => self.next_from_logs(&endpoint).await?,
            };
            let Some((mut message, body)) = pending else {
                return Ok(());
            };
            if message.next_attempt_at.is_some_and(|at| at > Utc::now()) {
                return Ok(());
            }
            // Held anew for each try, which takes less than the hold.
            if !self.hold(id, holder).await? {
                return Ok(());
            }
            let session = self.store.get_session(message.session).await?;
            let allowed = match &session {
                Some(session) => self.may_still_hear(&endpoint, session).await?,
                None => false,
            };
            if !allowed {
                let now = Utc::now();
                message.state = MessageState::Failed;
                message.error = Some(
                    "its session is gone, or the endpoint's maker may no longer operate it".into(),
                );
                message.updated_at = now;
                message.next_attempt_at = None;
                self.store.update_message(&message).await?;
                continue;
            }
            let tried = match client::refused_address(&endpoint.draft.url, private) {
                Some(why) => Tried::Failed(why),
                None => send(http, &endpoint.draft.url, &secret, &message.id, &body).await,
            };
            let delivered = settle(&mut message, tried, Utc::now());
            self.store.update_message(&message).await?;
            if !delivered {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Makes the next message from the logs past the endpoint's cursor
    /// (stored, the cursor moved past it), moving the cursor past events
    /// that make none.
    async fn next_from_logs(
        &self,
        endpoint: &Endpoint,
    ) -> Result<Option<(Message, String)>, AppError> {
        for (session, last_seq) in self
            .store
            .sessions_behind(endpoint, SESSIONS_AT_ONCE)
            .await?
        {
            loop {
                let events = self
                    .store
                    .events_behind(endpoint.id, session, EVENTS_AT_ONCE)
                    .await?;
                let complete = events.len() < EVENTS_AT_ONCE as usize;
                let Some(last) = events.last().map(|e| e.seq) else {
                    // Nothing that may notify up to its newest event.
                    self.store
                        .advance_cursor(endpoint.id, session, last_seq)
                        .await?;
                    break;
                };
                for event in events {
                    if let Some(made) = self.message_of(endpoint, &event).await? {
                        return Ok(Some(made));
                    }
                }
                let through = if complete { last.max(last_seq) } else { last };
                self.store
                    .advance_cursor(endpoint.id, session, through)
                    .await?;
                if complete {
                    break;
                }
            }
        }
        Ok(None)
    }

    /// The message an event makes for the endpoint, stored with the cursor
    /// moved past it; none for an event it does not hear of.
    async fn message_of(
        &self,
        endpoint: &Endpoint,
        event: &Event,
    ) -> Result<Option<(Message, String)>, AppError> {
        let heard = message::notified(event).filter(|what| endpoint.draft.events.contains(what));
        let Some(what) = heard else { return Ok(None) };
        let Some(session) = self.store.get_session(event.session_id).await? else {
            return Ok(None);
        };
        if !self.may_still_hear(endpoint, &session).await? {
            return Ok(None);
        }
        let said = self.said_with(event, what).await?;
        let base = self.config.base_url(self.config.listen_addr());
        let body = message::body(what, event, &session, &base, said).to_string();
        let made = Message {
            endpoint: endpoint.id,
            id: message::message_id(event),
            session: session.id,
            event: what,
            state: MessageState::Pending,
            attempts: 0,
            response_code: None,
            error: None,
            created_at: event.at,
            updated_at: Utc::now(),
            tried_since: event.at,
            next_attempt_at: Some(Utc::now()),
        };
        self.store.queue_message(&made, &body, event.seq).await?;
        Ok(Some((made, body)))
    }

    /// Whether the endpoint's maker may still hear of the session: their
    /// account is active (with sign-in off, one made so while it is off),
    /// they may operate it, and for a template's endpoint it is theirs.
    async fn may_still_hear(
        &self,
        endpoint: &Endpoint,
        session: &Session,
    ) -> Result<bool, AppError> {
        let maker = match endpoint.owner {
            None => return Ok(!self.auth.enabled()),
            Some(maker) => match self.store.user_by_id(maker).await? {
                Some(record) if !record.user.disabled => record.user.caller(),
                _ => return Ok(false),
            },
        };
        if matches!(endpoint.scope, Scope::Template(_)) && session.owner != endpoint.owner {
            return Ok(false);
        }
        // Asked of the maker's access, not as a request of theirs: a maker
        // who lost it did nothing to be refused for (nor audited).
        Ok(self
            .access_to(&maker, session)
            .await?
            .is_some_and(|access| access >= Access::Operate))
    }

    /// The text that goes with a notified event: the run's last text, or
    /// the error it ended with (of this run: after the status that ended
    /// the run before it).
    async fn said_with(
        &self,
        event: &Event,
        what: NotifiedEvent,
    ) -> Result<Option<String>, AppError> {
        let kind = match (what, &event.kind) {
            // Said by the status itself: an error recorded earlier in the
            // run (a tool server that did not start) is not why it ended.
            (
                _,
                EventKind::Status {
                    status: SessionStatus::Interrupted,
                    message,
                },
            ) => return Ok(message.clone()),
            (NotifiedEvent::Finished, _) => "assistant_text",
            (NotifiedEvent::Error, _) => "error",
            (NotifiedEvent::PermissionRequested, _) => return Ok(None),
        };
        let statuses = self
            .store
            .events_before(event.session_id, event.seq, "status", STATUSES_BACK)
            .await?;
        let run_began = statuses
            .iter()
            .find(|e| {
                matches!(
                    e.kind,
                    EventKind::Status {
                        status: SessionStatus::Idle
                            | SessionStatus::Error
                            | SessionStatus::Stopped
                            | SessionStatus::Interrupted,
                        ..
                    }
                )
            })
            .map_or(0, |e| e.seq);
        let before = self
            .store
            .events_before(event.session_id, event.seq, kind, 1)
            .await?;
        Ok(before
            .into_iter()
            .filter(|e| e.seq > run_began)
            .find_map(|e| match e.kind {
                EventKind::AssistantText { text } | EventKind::Error { message: text } => {
                    Some(text)
                }
                _ => None,
            }))
    }
}

/// Posts a message to `url`, signed per Standard Webhooks.
async fn send(http: &reqwest::Client, url: &str, secret: &str, id: &str, body: &str) -> Tried {
    let at = Utc::now().timestamp();
    let Some(signature) = standard_webhooks::sign(secret, id, at, body.as_bytes()) else {
        return Tried::Failed("the endpoint's secret is not a whsec_ secret".into());
    };
    let sent = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", at.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await;
    match sent {
        Ok(mut answer) => {
            let status = answer.status().as_u16();
            if answer.status().is_redirection() {
                let to = answer
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .map(|to| String::from_utf8_lossy(to.as_bytes()).into_owned())
                    .unwrap_or_default();
                let said =
                    format!("redirected to {to:?}; redirects are not followed: use that URL");
                return Tried::Answered(status, storable(&said, ERROR_MAX_CHARS));
            }
            let mut text = Vec::new();
            // (Within the client's time limit for the whole try.)
            while text.len() < ANSWER_MAX_BYTES {
                match answer.chunk().await {
                    Ok(Some(chunk)) => text.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            text.truncate(ANSWER_MAX_BYTES);
            let text = String::from_utf8_lossy(&text);
            Tried::Answered(status, storable(&text, ERROR_MAX_CHARS))
        }
        Err(e) => {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                why = format!("{why}: {inner}");
                source = inner.source();
            }
            Tried::Failed(storable(&why, ERROR_MAX_CHARS))
        }
    }
}

/// Records a try on the message: delivered (2xx), or pending with its next
/// try, or failed once it has been tried for [`TRIED_FOR`]. Whether it
/// was delivered.
fn settle(message: &mut Message, tried: Tried, now: DateTime<Utc>) -> bool {
    message.attempts += 1;
    message.updated_at = now;
    let (code, error) = match tried {
        Tried::Answered(code, _) if (200..300).contains(&code) => (Some(code), None),
        Tried::Answered(code, text) => (Some(code), Some(format!("answered {code}: {text}"))),
        Tried::Failed(why) => (None, Some(why)),
    };
    message.response_code = code;
    message.error = error;
    if message.error.is_none() {
        message.state = MessageState::Delivered;
        message.next_attempt_at = None;
        return true;
    }
    let next = now + backoff(message.attempts);
    // A receiver that refuses this message as it is (a 4xx other than a
    // timeout, a conflict or a rate limit), or sends it elsewhere (a 3xx,
    // as no redirect is followed), does so again: a few tries, not a day
    // of them holding back every message after it.
    let refused_as_is =
        code.is_some_and(|c| (300..500).contains(&c) && ![408, 409, 425, 429].contains(&c));
    if next - message.tried_since > TRIED_FOR
        || (refused_as_is && message.attempts >= REFUSED_TRIES)
    {
        message.state = MessageState::Failed;
        message.next_attempt_at = None;
    } else {
        message.next_attempt_at = Some(next);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_person_s_endpoints_take_a_few_turns_at_once() {
        let under_way = Arc::default();
        let (ada, max) = (Some(uuid::Uuid::now_v7()), Some(uuid::Uuid::now_v7()));
        let due = |maker| DueEndpoint {
            id: uuid::Uuid::now_v7(),
            maker,
        };
        let adas: Vec<Turn> = (0..10)
            .filter_map(|_| Turn::start(due(ada), &under_way))
            .collect();
        assert_eq!(adas.len(), MAKERS_TURNS_AT_ONCE);
        let again = DueEndpoint {
            id: adas[0].id,
            maker: ada,
        };
        assert!(Turn::start(due(max), &under_way).is_some());
        // The operator's, with sign-in off, are not held to it.
        let operators: Vec<Turn> = (0..10)
            .filter_map(|_| Turn::start(due(None), &under_way))
            .collect();
        assert_eq!(operators.len(), 10);
        drop(adas);
        let back = Turn::start(again, &under_way);
        assert!(back.is_some());
        assert_eq!(lock(&under_way).by_maker.get(&ada.unwrap()), Some(&1));
        drop(back);
        assert!(lock(&under_way).by_maker.is_empty(), "forgotten at none");
    }

    #[tokio::test]
    async fn a_redirect_says_where_it_leads_and_is_not_followed() {
        let followed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = followed.clone();
        // `/hook` sends the message on to `/moved`.
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let seen = seen.clone();
            async move {
                use axum::response::IntoResponse;
                if uri.path() == "/moved" {
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                    return axum::http::StatusCode::NO_CONTENT.into_response();
                }
                (
                    axum::http::StatusCode::PERMANENT_REDIRECT,
                    [("location", "/moved")],
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = crate::notifications::client::client(true).unwrap();
        let secret = standard_webhooks::new_secret();
        let tried = send(&http, &url, &secret, "msg_1", "{}").await;
        let Tried::Answered(308, said) = tried else {
            panic!("not a 308")
        };
        assert!(said.contains("redirected to \"/moved\""), "{said}");
        assert!(!followed.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn tries_back_off_with_jitter_for_a_day() {
        for attempts in 1..30 {
            let wait = backoff(attempts).num_milliseconds() as f64 / 1000.0;
            let base = (FIRST_WAIT_SECS * 2f64.powi(attempts as i32 - 1)).min(LONGEST_WAIT_SECS);
            assert!(
                wait >= base * 0.5 && wait <= base * 1.5,
                "{attempts}: {wait}"
            );
        }
        let now = Utc::now();
        let mut m = Message {
            endpoint: uuid::Uuid::nil(),
            id: "msg".into(),
            session: uuid::Uuid::nil(),
            event: app::notifications::NotifiedEvent::Finished,
            state: MessageState::Pending,
            attempts: 0,
            response_code: None,
            error: None,
            created_at: now,
            updated_at: now,
            tried_since: now,
            next_attempt_at: Some(now),
        };
        assert!(!settle(&mut m, Tried::Answered(500, "oops".into()), now));
        assert_eq!(
            (m.state, m.attempts, m.response_code),
            (MessageState::Pending, 1, Some(500))
        );
        assert!(m.next_attempt_at.unwrap() > now);
        assert!(!settle(
            &mut m,
            Tried::Failed("refused".into()),
            now + chrono::Duration::hours(25)
        ));
        assert_eq!(m.state, MessageState::Failed);
        assert!(settle(&mut m, Tried::Answered(204, String::new()), now));
        assert_eq!((m.state, m.error.clone()), (MessageState::Delivered, None));
        // Refused as it is: nine tries, ten minutes at the least; a rate
        // limit is tried for the day.
        let waits: f64 = (1..REFUSED_TRIES)
            .map(|n| FIRST_WAIT_SECS * 2f64.powi(n as i32 - 1) * 0.5)
            .sum();
        assert!(waits >= 600.0, "{waits}");
        for (code, tries) in [
            (413, REFUSED_TRIES),
            (400, REFUSED_TRIES),
            (308, REFUSED_TRIES),
            (429, 40),
            (503, 40),
        ] {
            m.state = MessageState::Pending;
            m.attempts = 0;
            m.tried_since = now;
            for _ in 0..tries - 1 {
                settle(&mut m, Tried::Answered(code, String::new()), now);
                assert_eq!(m.state, MessageState::Pending, "{code}");
            }
            settle(&mut m, Tried::Answered(code, String::new()), now);
            let expected = if tries == REFUSED_TRIES {
                MessageState::Failed
            } else {
                MessageState::Pending
            };
            assert_eq!(m.state, expected, "{code}");
        }
    }
}
