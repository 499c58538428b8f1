//! Sending notifications. Each server runs one sender; for each endpoint,
//! the server that holds it (a lease in the database, renewed while it
//! works) sends its messages one at a time, in the order their events
//! happened: the oldest pending message first (tried again with
//! exponential backoff and jitter, for a day, then let go), and when none
//! is pending, the next event past the endpoint's cursor that notifies
//! (the cursor moves past the others). A message is stored, and the cursor
//! moved past its event, before it is first sent: a restart resumes from
//! there, and a message is never made twice. The sender wakes when a
//! session changes and looks again every [`POLL`] (other replicas' events,
//! retries due, messages to send again).

use super::client::{self, TRY_TIMEOUT};
use super::message;
use crate::paddock::Paddock;
use crate::triggers::standard_webhooks;
use crate::vault::SecretOf;
use app::domain::AppError;
use app::notifications::{Endpoint, EndpointId, Message, MessageState};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often each server looks, besides when a session changes.
pub const POLL: Duration = Duration::from_secs(2);
/// How long a server holds an endpoint past its last look.
const HOLD: chrono::Duration = chrono::Duration::seconds(30);
/// Events read from the logs at once.
const EVENTS_AT_ONCE: i64 = 100;
/// Messages sent to one endpoint in one look (the rest, at the next).
const MESSAGES_PER_LOOK: usize = 20;
/// How long a message is tried.
const TRIED_FOR: chrono::Duration = chrono::Duration::days(1);
/// The first wait after a failed try, and the longest.
const FIRST_WAIT_SECS: f64 = 5.0;
const LONGEST_WAIT_SECS: f64 = 3600.0;
/// The most of an endpoint's answer kept with a failed try.
const ERROR_MAX_CHARS: usize = 300;

/// Runs this server's sender while `paddock` is served; when it shuts
/// down (or goes), the endpoints it held are let go at once, for another
/// server to take.
pub fn spawn(paddock: &Arc<Paddock>) {
    let holder = uuid::Uuid::now_v7().to_string();
    let mut changes = paddock.hub.subscribe_sessions();
    let shutting_down = paddock.hub.shutting_down();
    let http = client::client(paddock.private_notifications());
    let store = paddock.store.clone();
    let paddock: Weak<Paddock> = Arc::downgrade(paddock);
    tokio::spawn(async move {
        tokio::pin!(shutting_down);
        loop {
            let Some(p) = paddock.upgrade() else { break };
            p.notify_all(&holder, &http).await;
            drop(p);
            tokio::select! {
                _ = changes.recv() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = &mut shutting_down => break,
            }
        }
        if let Err(e) = store.release_endpoints(&holder).await {
            tracing::warn!("cannot let the notification endpoints go: {e}");
        }
    });
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
    /// One look at every endpoint this server holds or may take, all at
    /// once.
    pub async fn notify_all(&self, holder: &str, http: &reqwest::Client) {
        let ids = match self.store.endpoint_ids().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("cannot list the notification endpoints: {e}");
                return;
            }
        };
        let looks = ids.into_iter().map(|id| async move {
            if let Err(e) = self.notify(id, holder, http).await {
                tracing::warn!(endpoint = %id, "notifications: {e}");
            }
        });
        futures_util::future::join_all(looks).await;
    }

    /// Sends what is due to one endpoint, if this server holds it.
    async fn notify(
        &self,
        id: EndpointId,
        holder: &str,
        http: &reqwest::Client,
    ) -> Result<(), AppError> {
        let now = Utc::now();
        if !self
            .store
            .hold_endpoint(id, holder, now, now + HOLD)
            .await?
        {
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
        for _ in 0..MESSAGES_PER_LOOK {
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
            let tried = send(http, &endpoint.draft.url, &secret, &message.id, &body).await;
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
        loop {
            let events = self.store.events_for(endpoint, EVENTS_AT_ONCE).await?;
            if events.is_empty() {
                return Ok(None);
            }
            for event in events {
                let heard =
                    message::notified(&event).filter(|what| endpoint.draft.events.contains(what));
                let (Some(what), Some(session)) =
                    (heard, self.store.get_session(event.session_id).await?)
                else {
                    self.store
                        .advance_cursor(endpoint.id, event.session_id, event.seq)
                        .await?;
                    continue;
                };
                let said = self.said_with(&event, what).await?;
                let base = self.config.base_url(self.config.listen_addr());
                let body = message::body(what, &event, &session, &base, said).to_string();
                let now = Utc::now();
                let made = Message {
                    endpoint: endpoint.id,
                    id: message::message_id(&event),
                    session: session.id,
                    event: what,
                    state: MessageState::Pending,
                    attempts: 0,
                    response_code: None,
                    error: None,
                    created_at: now,
                    updated_at: now,
                    next_attempt_at: Some(now),
                };
                self.store.queue_message(&made, &body, event.seq).await?;
                return Ok(Some((made, body)));
            }
        }
    }

    /// The text that goes with a notified event: the run's last text, or
    /// the error it ended with.
    async fn said_with(
        &self,
        event: &app::domain::Event,
        what: app::notifications::NotifiedEvent,
    ) -> Result<Option<String>, AppError> {
        use app::domain::EventKind;
        use app::notifications::NotifiedEvent;
        let kind = match what {
            NotifiedEvent::Finished => "assistant_text",
            NotifiedEvent::Error => "error",
            NotifiedEvent::PermissionRequested => return Ok(None),
        };
        let before = self
            .store
            .latest_before(event.session_id, event.seq, kind)
            .await?;
        Ok(before.and_then(|e| match e.kind {
            EventKind::AssistantText { text } | EventKind::Error { message: text } => Some(text),
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
        Ok(answer) => {
            let status = answer.status().as_u16();
            let text = tokio::time::timeout(TRY_TIMEOUT, answer.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            Tried::Answered(status, text.chars().take(ERROR_MAX_CHARS).collect())
        }
        Err(e) => {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                why = format!("{why}: {inner}");
                source = inner.source();
            }
            Tried::Failed(why.chars().take(ERROR_MAX_CHARS).collect())
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
    if next - message.created_at > TRIED_FOR {
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
    }
}
