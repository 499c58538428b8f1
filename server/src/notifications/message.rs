//! What a notification says: which of a session's events makes one, and
//! its body, `{"type", "timestamp", "data"}` as Standard Webhooks senders
//! write them, with the session (its link) and what the event says: the
//! run's final text, the error, or the tool the agent asks to use.

use app::domain::{Event, EventKind, Session, SessionStatus};
use app::notifications::NotifiedEvent;
use chrono::SecondsFormat;
use serde_json::{json, Value};

/// The notified event an event of a session's log is, if any.
pub fn notified(event: &Event) -> Option<NotifiedEvent> {
    match &event.kind {
        EventKind::Status {
            status: SessionStatus::Idle,
            ..
        } => Some(NotifiedEvent::Finished),
        // A run cut off by a restart or a replica's loss ends as much as
        // one that failed.
        EventKind::Status {
            status: SessionStatus::Error | SessionStatus::Interrupted,
            ..
        } => Some(NotifiedEvent::Error),
        EventKind::PermissionRequest { .. } => Some(NotifiedEvent::PermissionRequested),
        _ => None,
    }
}

/// The message's id (`webhook-id`): one per event of a session.
pub fn message_id(event: &Event) -> String {
    format!("msg_{}_{}", event.session_id.simple(), event.seq)
}

/// Whether `id` is written as [`message_id`] writes one, so that anything
/// else (a NUL, which PostgreSQL's text refuses; a whole page of text) is
/// unknown without a look in the store.
pub fn could_be_message_id(id: &str) -> bool {
    id.strip_prefix("msg_")
        .and_then(|rest| rest.split_once('_'))
        .is_some_and(|(session, seq)| {
            session.len() == 32
                && session.bytes().all(|b| b.is_ascii_hexdigit())
                && (1..=20).contains(&seq.len())
                && seq.bytes().all(|b| b.is_ascii_digit())
        })
}

/// What the event says besides the session: `said` is the text that goes
/// with it (the run's last text, or the error).
pub fn body(
    what: NotifiedEvent,
    event: &Event,
    session: &Session,
    base_url: &str,
    said: Option<String>,
) -> Value {
    let mut data = json!({
        "session": {
            "id": session.id,
            "name": session.name,
            "url": format!("{base_url}/sessions/{}", session.id),
            // The event's (the session may have moved on by the time
            // the message is made: a queued prompt running).
            "status": status_at(event).unwrap_or(session.status),
            "cost_usd": session.cost_usd,
            "turns": session.turns,
            "template": session.template.as_ref().map(|t| &t.name),
            "trigger": session.trigger.as_ref().map(|t| &t.name),
        },
        "seq": event.seq,
    });
    match (&event.kind, what) {
        (EventKind::Status { message, .. }, NotifiedEvent::Finished) => {
            data["text"] = said.into();
            data["message"] = message.clone().into();
        }
        (EventKind::Status { message, .. }, NotifiedEvent::Error) => {
            data["error"] = said.or_else(|| message.clone()).into();
        }
        (
            EventKind::PermissionRequest {
                request_id,
                tool,
                input,
                ..
            },
            _,
        ) => {
            data["permission"] = json!({ "request_id": request_id, "tool": tool, "input": input });
        }
        _ => {}
    }
    cut_strings(&mut data, STRING_MAX_BYTES);
    json!({
        "type": what.message_type(),
        "timestamp": event.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "data": data,
    })
}

/// The session's status as of `event`, where the event says it.
fn status_at(event: &Event) -> Option<SessionStatus> {
    match &event.kind {
        EventKind::Status { status, .. } => Some(*status),
        EventKind::PermissionRequest { .. } => Some(SessionStatus::AwaitingPermission),
        _ => None,
    }
}

/// The longest string a message carries (a run's text, an error, a value
/// of a tool's input such as a whole file to write): it is kept for every
/// endpoint, and sent on every try.
pub const STRING_MAX_BYTES: usize = 8 * 1024;

/// Cuts every string in `value` longer than `max` bytes to its first
/// `max` (at a character's boundary), saying how much was left out.
fn cut_strings(value: &mut Value, max: usize) {
    match value {
        Value::String(s) if s.len() > max => {
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let left_out = s.len() - end;
            s.truncate(end);
            s.push_str(&format!("… ({left_out} bytes more)"));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| cut_strings(v, max)),
        Value::Object(fields) => fields.values_mut().for_each(|v| cut_strings(v, max)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_make_the_notifications_they_are() {
        let event = |kind: EventKind| Event {
            session_id: uuid::Uuid::nil(),
            seq: 7,
            at: chrono::Utc::now(),
            kind,
        };
        let status = |status| {
            event(EventKind::Status {
                status,
                message: None,
            })
        };
        assert_eq!(
            notified(&status(SessionStatus::Idle)),
            Some(NotifiedEvent::Finished)
        );
        assert_eq!(
            notified(&status(SessionStatus::Error)),
            Some(NotifiedEvent::Error)
        );
        assert_eq!(
            notified(&status(SessionStatus::Interrupted)),
            Some(NotifiedEvent::Error)
        );
        assert_eq!(notified(&status(SessionStatus::Running)), None);
        assert_eq!(notified(&status(SessionStatus::Stopped)), None);
        assert_eq!(
            notified(&event(EventKind::AssistantText { text: "x".into() })),
            None
        );
        assert_eq!(
            message_id(&status(SessionStatus::Idle)),
            format!("msg_{}_7", uuid::Uuid::nil().simple())
        );
        assert!(could_be_message_id(&message_id(&status(
            SessionStatus::Idle
        ))));
        let hex = uuid::Uuid::nil().simple().to_string();
        for not_one in [
            format!("msg_{hex}_7\0"),
            format!("msg_{hex}_"),
            format!("msg_{hex}_-7"),
            format!("msg_{}_7", &hex[1..]),
            format!("msg_{hex}_{}", "9".repeat(21)),
            format!("hook_{hex}_7"),
            "msg_".to_owned(),
            String::new(),
        ] {
            assert!(!could_be_message_id(&not_one), "{not_one:?}");
        }
    }

    /// The status a message says is its event's, not the session's when
    /// the message is made (a queued prompt may be running by then).
    #[test]
    fn the_status_is_the_events() {
        let running: Session = serde_json::from_value(json!({
            "id": uuid::Uuid::nil(), "name": "s", "engine": "native", "model": "m",
            "system_prompt": "", "permission_mode": "ask", "status": "running",
            "cost_usd": 0.5, "turns": 2, "input_tokens": 0, "output_tokens": 0,
            "last_seq": 9, "limits": {}, "budget_usd": null, "owner": null,
            "created_at": chrono::Utc::now(), "updated_at": chrono::Utc::now(),
        }))
        .unwrap();
        for (kind, what, said) in [
            (
                EventKind::Status {
                    status: SessionStatus::Interrupted,
                    message: None,
                },
                NotifiedEvent::Error,
                "interrupted",
            ),
            (
                EventKind::Status {
                    status: SessionStatus::Idle,
                    message: None,
                },
                NotifiedEvent::Finished,
                "idle",
            ),
        ] {
            let event = Event {
                session_id: running.id,
                seq: 7,
                at: chrono::Utc::now(),
                kind,
            };
            let body = body(what, &event, &running, "http://x", None);
            assert_eq!(body["data"]["session"]["status"], said);
        }
    }

    #[test]
    fn long_strings_are_cut_at_a_character() {
        let mut value =
            json!({"input": {"content": "é".repeat(10), "lines": ["abc", "x".repeat(9)]}, "n": 7});
        cut_strings(&mut value, 5);
        assert_eq!(
            value,
            json!({"input": {"content": "éé… (16 bytes more)", "lines": ["abc", "xxxxx… (4 bytes more)"]}, "n": 7})
        );
    }
}
