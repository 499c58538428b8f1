//! Notifications: webhooks Paddock sends when sessions finish, fail or ask
//! for permission, for an agent template's sessions or one session. Each
//! endpoint has its own secret and signs per Standard Webhooks; what it is
//! sent comes from the sessions' event logs, in order, one message at a
//! time, retried for a day. The server's side: `server/src/notifications/`.

use crate::domain::{string_enum, AppError, SessionId, TemplateId, UserId};
use crate::text::is_hidden_format;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A notification endpoint's id.
pub type EndpointId = Uuid;

string_enum! {
    /// What a session did that an endpoint hears of.
    NotifiedEvent {
        /// A run ended: the session is idle again (or was stopped).
        Finished => "finished",
        /// A run failed: the session is in error.
        Error => "error",
        /// The agent waits for someone to allow or deny a tool.
        PermissionRequested => "permission_requested",
    }
}

impl NotifiedEvent {
    /// The message's `type`, as receivers read it.
    pub fn message_type(self) -> &'static str {
        match self {
            Self::Finished => "session.finished",
            Self::Error => "session.error",
            Self::PermissionRequested => "session.permission_requested",
        }
    }
}

/// Longest endpoint URL.
pub const URL_MAX_CHARS: usize = 2000;

/// What the owner says an endpoint is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDraft {
    /// Where messages are posted: an `http(s)` URL.
    pub url: String,
    /// What it hears of; all three unless it says.
    #[serde(default = "all_events")]
    pub events: Vec<NotifiedEvent>,
}

fn all_events() -> Vec<NotifiedEvent> {
    NotifiedEvent::ALL.to_vec()
}

impl EndpointDraft {
    /// The draft, its URL trimmed and checked, its events in order without
    /// repeats; or why it cannot be one.
    pub fn validate(mut self) -> Result<Self, AppError> {
        self.url = self.url.trim().to_owned();
        let scheme_ok = ["http://", "https://"].iter().any(|scheme| {
            self.url
                .get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        });
        if !scheme_ok
            || self.url.chars().count() > URL_MAX_CHARS
            || self
                .url
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || is_hidden_format(c))
        {
            return Err(AppError::Invalid(format!(
                "A notification URL is an http:// or https:// URL of at most {URL_MAX_CHARS} \
                 characters."
            )));
        }
        self.events
            .sort_by_key(|e| NotifiedEvent::ALL.iter().position(|all| all == e));
        self.events.dedup();
        if self.events.is_empty() {
            return Err(AppError::Invalid(
                "A notification endpoint hears of at least one event.".into(),
            ));
        }
        Ok(self)
    }
}

/// What an endpoint hears of: a template's sessions (its owner's), or one
/// session.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Template(TemplateId),
    Session(SessionId),
}

/// An endpoint as stored (its secret never leaves the server but once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub scope: Scope,
    /// Who made it (none with sign-in off): a template's endpoint hears of
    /// their sessions of it only.
    pub owner: Option<UserId>,
    #[serde(flatten)]
    pub draft: EndpointDraft,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// An endpoint with its secret (`whsec_…`), as shown once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointSecret {
    pub endpoint: Endpoint,
    pub secret: String,
}

string_enum! {
    /// Where a message is.
    MessageState {
        /// Being sent, or waiting for its next try.
        Pending => "pending",
        /// The endpoint answered 2xx.
        Delivered => "delivered",
        /// No try succeeded for a day: let go.
        Failed => "failed",
    }
}

/// One message to an endpoint, and how sending it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub endpoint: EndpointId,
    /// Its `webhook-id`: the same on every try.
    pub id: String,
    pub session: SessionId,
    pub event: NotifiedEvent,
    pub state: MessageState,
    pub attempts: u32,
    /// The endpoint's status code on the last try, if it answered.
    pub response_code: Option<u16>,
    /// Why the last try failed, if it did.
    pub error: Option<String>,
    /// When its event happened.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Since when it is tried (for a day): its event, or when it was sent
    /// again by hand.
    pub tried_since: DateTime<Utc>,
    /// When it is tried next, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// An endpoint with its newest messages, as the template's page lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointRow {
    pub endpoint: Endpoint,
    pub messages: Vec<Message>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_are_checked() {
        let ok = EndpointDraft {
            url: " https://hooks.example.com/paddock ".into(),
            events: vec![
                NotifiedEvent::Error,
                NotifiedEvent::Finished,
                NotifiedEvent::Error,
            ],
        }
        .validate()
        .unwrap();
        assert_eq!(ok.url, "https://hooks.example.com/paddock");
        assert_eq!(ok.events, [NotifiedEvent::Finished, NotifiedEvent::Error]);
        for bad in [
            "ftp://x",
            "hooks.example.com",
            "https://a b",
            "javascript:alert(1)",
            "https://x.example/\u{202e}gpj",
        ] {
            let draft = EndpointDraft {
                url: bad.into(),
                events: all_events(),
            };
            assert!(draft.validate().is_err(), "{bad}");
        }
        let none = EndpointDraft {
            url: "https://x.example".into(),
            events: Vec::new(),
        };
        assert!(none.validate().is_err());
        let draft: EndpointDraft = serde_json::from_str(r#"{"url": "http://x"}"#).unwrap();
        assert_eq!(draft.events.len(), 3);
    }
}
