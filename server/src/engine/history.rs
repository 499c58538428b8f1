//! The conversation sent to the model, rebuilt from the event log, so a
//! session resumes after a restart exactly where its transcript stands.
//!
//! The log may hold what a live conversation never would: prompts queued
//! behind each other (merged into one user turn) and tool calls cut off by a
//! crash or Stop (answered with an error result, so the protocol stays valid).

use crate::llm::{ContentBlock, Message, Role};
use app::model::{Event, EventKind};

pub fn rebuild(events: &[Event]) -> Vec<Message> {
    let mut messages: Vec<Message> = Vec::new();
    let mut unanswered: Vec<String> = Vec::new();
    for event in events {
        let (role, block) = match &event.kind {
            EventKind::UserMessage { text } => {
                (Role::User, ContentBlock::Text { text: text.clone() })
            }
            EventKind::AssistantText { text } => {
                (Role::Assistant, ContentBlock::Text { text: text.clone() })
            }
            EventKind::ToolCall { id, name, input } => {
                unanswered.push(id.clone());
                (
                    Role::Assistant,
                    ContentBlock::ToolUse {
                        id: id.clone(),
                        name: name.clone(),
                        input: input.clone(),
                    },
                )
            }
            EventKind::ToolResult {
                id,
                output,
                is_error,
                ..
            } => {
                unanswered.retain(|u| u != id);
                (
                    Role::User,
                    ContentBlock::ToolResult {
                        tool_use_id: id.clone(),
                        content: output.clone(),
                        is_error: *is_error,
                    },
                )
            }
            // Thinking is not replayed (it would need its signature), and
            // status, usage, permission and error events are Paddock's own.
            _ => continue,
        };
        if role == Role::User && !unanswered.is_empty() {
            answer_interrupted(&mut messages, &mut unanswered);
        }
        push(&mut messages, role, block);
    }
    if !unanswered.is_empty() {
        answer_interrupted(&mut messages, &mut unanswered);
    }
    messages
}

/// Tool calls that never got a result: the model is told they were cut off.
fn answer_interrupted(messages: &mut Vec<Message>, unanswered: &mut Vec<String>) {
    for id in unanswered.drain(..) {
        push(
            messages,
            Role::User,
            ContentBlock::ToolResult {
                tool_use_id: id,
                content: "The tool call was interrupted before it finished (stopped, or Paddock restarted).".into(),
                is_error: true,
            },
        );
    }
}

/// Appends to the last message when it has the same role (the API wants
/// roles to alternate); tool results go before text in a user turn.
fn push(messages: &mut Vec<Message>, role: Role, block: ContentBlock) {
    match messages.last_mut() {
        Some(last) if last.role == role => {
            if matches!(block, ContentBlock::ToolResult { .. }) {
                let at = last
                    .content
                    .iter()
                    .position(|b| !matches!(b, ContentBlock::ToolResult { .. }))
                    .unwrap_or(last.content.len());
                last.content.insert(at, block);
            } else {
                last.content.push(block);
            }
        }
        _ => messages.push(Message {
            role,
            content: vec![block],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(kinds: Vec<EventKind>) -> Vec<Event> {
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                session_id: uuid::Uuid::nil(),
                seq: i as i64 + 1,
                at: chrono::Utc::now(),
                kind,
            })
            .collect()
    }

    fn user(text: &str) -> EventKind {
        EventKind::UserMessage { text: text.into() }
    }

    #[test]
    fn alternates_and_pairs_tool_calls_with_results() {
        let log = events(vec![
            user("make a file"),
            EventKind::Thinking { text: "hm".into() },
            EventKind::AssistantText {
                text: "on it".into(),
            },
            EventKind::ToolCall {
                id: "t1".into(),
                name: "bash".into(),
                input: json!({"command": "touch a"}),
            },
            EventKind::ToolResult {
                id: "t1".into(),
                output: "".into(),
                is_error: false,
                truncated: false,
            },
            EventKind::AssistantText {
                text: "done".into(),
            },
            user("thanks"),
        ]);
        let messages = rebuild(&log);
        let roles: Vec<_> = messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::User,
                Role::Assistant,
                Role::User,
                Role::Assistant,
                Role::User
            ]
        );
        assert_eq!(
            messages[1].content.len(),
            2,
            "text and tool_use, no thinking"
        );
        assert!(
            matches!(&messages[2].content[0], ContentBlock::ToolResult { tool_use_id, .. } if tool_use_id == "t1")
        );
    }

    #[test]
    fn queued_prompts_merge_and_cut_off_calls_are_answered() {
        let log = events(vec![
            user("one"),
            EventKind::ToolCall {
                id: "t1".into(),
                name: "bash".into(),
                input: json!({}),
            },
            EventKind::Status {
                status: app::model::SessionStatus::Interrupted,
                message: None,
            },
            user("two"),
            user("three"),
        ]);
        let messages = rebuild(&log);
        assert_eq!(messages.len(), 3);
        let last = &messages[2];
        assert!(matches!(
            &last.content[0],
            ContentBlock::ToolResult { is_error: true, .. }
        ));
        assert_eq!(
            last.content.len(),
            3,
            "interrupted result, then both prompts"
        );
    }
}
