//! The conversation sent to the model, rebuilt from the event log, so a
//! session resumes after a restart exactly where its transcript stands.
//!
//! The log may hold what a live conversation never would: prompts queued
//! behind each other (merged into one user turn), prompts sent while a turn
//! ran (stored amid it, replayed after its end: those of the turn still
//! open wait for the next run), and tool calls cut off by a crash or Stop
//! (answered with an error result, so the protocol stays valid).

use crate::llm::{ContentBlock, Message, Role};
use app::domain::{Event, EventKind, RunFollower};
use chrono::{DateTime, Utc};

/// A tool call without a result yet: fresh from the model, or left open when
/// the server stopped while it waited for a permission decision.
#[derive(Debug)]
pub struct OpenCall {
    pub id: String,
    pub name: String,
    pub input: serde_json::Value,
    /// The permission request still waiting for a decision, and when it was
    /// asked.
    pub request: Option<(String, DateTime<Utc>)>,
}

/// Each event, and whether it came while a turn ran (from a run's
/// `running` status to the status it ended with): a prompt sent then is
/// the next turn's, and follows this one's end in the conversation.
fn with_turns(events: &[Event]) -> impl Iterator<Item = (&Event, bool)> {
    let mut runs = RunFollower::default();
    events.iter().map(move |event| {
        if let EventKind::Status { status, .. } = event.kind {
            runs.starts(status);
        }
        (event, runs.in_run())
    })
}

/// The tool calls of the turn still open that never got a result: those
/// since the last prompt that started a turn and since the last status
/// that ended one. Empty whenever a turn ended or a prompt started one
/// after them (those are answered as interrupted by [`rebuild`]).
pub fn unfinished(events: &[Event]) -> Vec<OpenCall> {
    let start = with_turns(events)
        .enumerate()
        .filter(|(_, (e, during))| {
            !during
                && matches!(
                    e.kind,
                    EventKind::UserMessage { .. } | EventKind::Status { .. }
                )
        })
        .last()
        .map_or(0, |(i, _)| i + 1);
    let mut calls: Vec<OpenCall> = Vec::new();
    for event in &events[start..] {
        match &event.kind {
            EventKind::ToolCall { id, name, input } => calls.push(OpenCall {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
                request: None,
            }),
            EventKind::ToolResult { id, .. } => calls.retain(|c| &c.id != id),
            EventKind::PermissionRequest {
                request_id,
                tool_use_id,
                ..
            } => {
                if let Some(c) = calls.iter_mut().find(|c| &c.id == tool_use_id) {
                    c.request = Some((request_id.clone(), event.at));
                }
            }
            EventKind::PermissionDecision { request_id, .. } => {
                for c in &mut calls {
                    if c.request.as_ref().is_some_and(|(r, _)| r == request_id) {
                        c.request = None;
                    }
                }
            }
            _ => {}
        }
    }
    calls
}

pub fn rebuild(events: &[Event]) -> Vec<Message> {
    let mut messages: Vec<Message> = Vec::new();
    let mut unanswered: Vec<String> = Vec::new();
    // Where the conversation stood before the turn being read (its
    // prompts, what it made): a turn the model declined goes back to it.
    // Only ever added to after it, at the end: the messages, and the
    // blocks of the last one.
    let mut before_turn = (0, 0);
    // Prompts sent while a turn ran, for after its end.
    let mut waiting: Vec<&str> = Vec::new();
    // A prompt while calls are unanswered: they were cut off (their
    // results come as tool results, each as the call's tool ran).
    let add = |messages: &mut Vec<Message>,
               unanswered: &mut Vec<String>,
               role: Role,
               block: ContentBlock| {
        let prompt = role == Role::User && !matches!(block, ContentBlock::ToolResult { .. });
        if prompt && !unanswered.is_empty() {
            answer_interrupted(messages, unanswered);
        }
        push(messages, role, block);
    };
    let prompt = |text: &str| ContentBlock::Text {
        text: text.to_owned(),
    };
    for (event, during) in with_turns(events) {
        let (role, block) = match &event.kind {
            EventKind::UserMessage { text } if during => {
                waiting.push(text);
                continue;
            }
            EventKind::UserMessage { text } => (Role::User, prompt(text)),
            EventKind::Status { .. } if !during => {
                // The turn is over: a call it left open (stopped, cut off)
                // will get no result now.
                if !unanswered.is_empty() {
                    answer_interrupted(&mut messages, &mut unanswered);
                }
                before_turn = (
                    messages.len(),
                    messages.last().map_or(0, |m| m.content.len()),
                );
                for text in waiting.drain(..) {
                    add(&mut messages, &mut unanswered, Role::User, prompt(text));
                }
                continue;
            }
            // The API refuses a text block of nothing but white space.
            EventKind::AssistantText { text } if text.trim().is_empty() => continue,
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
            // A call has one result: one stored after the call was answered
            // as interrupted (by a replica that had lost the session) is
            // not sent again.
            EventKind::ToolResult { id, .. } if !unanswered.contains(id) => continue,
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
                        content: worded(output, *is_error).to_owned(),
                        is_error: *is_error,
                    },
                )
            }
            // The model declined this turn: it is left out, prompts and
            // all, as the API asks of a conversation that goes on.
            EventKind::Refused { .. } => {
                let (len, blocks) = before_turn;
                messages.truncate(len);
                if let Some(last) = messages.last_mut() {
                    last.content.truncate(blocks);
                }
                unanswered.clear();
                continue;
            }
            // Thinking is not replayed (it would need its signature), and
            // status, usage, permission and error events are Paddock's own.
            _ => continue,
        };
        add(&mut messages, &mut unanswered, role, block);
    }
    // What was sent while the turn still open runs (the run rebuilding
    // this, or the one it resumes) is the next run's: a run gives the
    // prompts stored before it started, as the transcript shows them.
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

/// A tool's output as sent: an error without words (an MCP server's may
/// have none) with some, as the API refuses it, and every prompt after
/// it, without (a transcript recorded before this holds such).
pub fn worded(output: &str, is_error: bool) -> &str {
    match is_error && output.trim().is_empty() {
        true => "The tool failed without saying why.",
        false => output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::permissions::allowed_for_session;
    use app::domain::{Decision, SessionStatus};
    use serde_json::json;
    use std::collections::HashSet;

    /// Each message's role and how many blocks it holds.
    fn shape(messages: &[Message]) -> Vec<(Role, usize)> {
        messages.iter().map(|m| (m.role, m.content.len())).collect()
    }

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
    fn unfinished_calls_and_session_wide_permissions() {
        let request = |id: &str, call: &str| EventKind::PermissionRequest {
            request_id: id.into(),
            tool_use_id: call.into(),
            tool: "bash".into(),
            input: json!({}),
        };
        let call = |id: &str| EventKind::ToolCall {
            id: id.into(),
            name: "bash".into(),
            input: json!({}),
        };
        let log = events(vec![
            user("one"),
            call("t0"),
            request("p0", "t0"),
            EventKind::PermissionDecision {
                request_id: "p0".into(),
                decision: Decision::AllowSession,
                reason: None,
                by: None,
            },
            user("two"),
            call("t1"),
            call("t2"),
            request("p1", "t1"),
        ]);
        let open = unfinished(&log);
        assert_eq!(open.len(), 2);
        assert_eq!(open[0].request.as_ref().map(|r| r.0.as_str()), Some("p1"));
        assert!(open[1].request.is_none(), "not asked yet");
        assert_eq!(
            allowed_for_session(&log),
            HashSet::from(["bash".to_owned()])
        );
        let mut later = log;
        later.extend(events(vec![user("three")]));
        assert!(unfinished(&later).is_empty(), "a prompt came after them");
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
                status: app::domain::SessionStatus::Interrupted,
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

    #[test]
    fn calls_made_together_keep_their_own_results() {
        let call = |id: &str| EventKind::ToolCall {
            id: id.into(),
            name: "bash".into(),
            input: json!({}),
        };
        let result = |id: &str| EventKind::ToolResult {
            id: id.into(),
            output: format!("out {id}"),
            is_error: false,
            truncated: false,
        };
        // Both calls of one turn, then their results as each tool ran:
        // the first result is not a prompt cutting the second call off
        // (which then had two results, and the API refused every later
        // turn of the session).
        let messages = rebuild(&events(vec![
            user("one"),
            call("a"),
            call("b"),
            result("a"),
            result("b"),
            EventKind::AssistantText {
                text: "Both ran.".into(),
            },
            user("two"),
        ]));
        assert_eq!(
            shape(&messages),
            [
                (Role::User, 1),
                (Role::Assistant, 2),
                (Role::User, 2),
                (Role::Assistant, 1),
                (Role::User, 1)
            ]
        );
        assert!(messages[2].content.iter().all(|b| matches!(
            b,
            ContentBlock::ToolResult { content, is_error: false, .. } if content.starts_with("out ")
        )));
    }

    /// A result stored after its call was answered as interrupted (a
    /// replica that lost the session, still running its tool) is not sent
    /// as a second one; nor is a text of white space, which the API refuses.
    #[test]
    fn a_call_has_one_result_and_blank_texts_are_left_out() {
        let status = |status| EventKind::Status {
            status,
            message: None,
        };
        let messages = rebuild(&events(vec![
            user("one"),
            status(SessionStatus::Running),
            EventKind::AssistantText { text: " \n".into() },
            EventKind::ToolCall {
                id: "a".into(),
                name: "bash".into(),
                input: json!({}),
            },
            status(SessionStatus::Interrupted),
            EventKind::ToolResult {
                id: "a".into(),
                output: "late".into(),
                is_error: false,
                truncated: false,
            },
            user("two"),
        ]));
        assert_eq!(
            shape(&messages),
            [(Role::User, 1), (Role::Assistant, 1), (Role::User, 2)]
        );
        assert!(matches!(
            &messages[2].content[0],
            ContentBlock::ToolResult { is_error: true, .. }
        ));
    }

    /// An error without words (an MCP server's may have none) is sent
    /// with some, which the API requires.
    #[test]
    fn an_error_without_words_is_sent_with_some() {
        let messages = rebuild(&events(vec![
            user("one"),
            EventKind::ToolCall {
                id: "a".into(),
                name: "mcp__x__y".into(),
                input: json!({}),
            },
            EventKind::ToolResult {
                id: "a".into(),
                output: " ".into(),
                is_error: true,
                truncated: false,
            },
        ]));
        assert!(matches!(
            &messages[2].content[0],
            ContentBlock::ToolResult { content, is_error: true, .. } if content.contains("without saying why")
        ));
    }

    /// A declined turn goes: its prompt, also where it joined the results
    /// of a turn before (calls cut off), and what the model made in it.
    #[test]
    fn a_declined_turn_is_left_out() {
        let status = |status| EventKind::Status {
            status,
            message: None,
        };
        let messages = rebuild(&events(vec![
            user("one"),
            status(SessionStatus::Running),
            EventKind::ToolCall {
                id: "a".into(),
                name: "bash".into(),
                input: json!({}),
            },
            status(SessionStatus::Interrupted),
            user("declined"),
            status(SessionStatus::Running),
            EventKind::AssistantText {
                text: "made before the refusal".into(),
            },
            EventKind::ToolCall {
                id: "b".into(),
                name: "bash".into(),
                input: json!({}),
            },
            EventKind::ToolResult {
                id: "b".into(),
                output: "ok".into(),
                is_error: false,
                truncated: false,
            },
            EventKind::Refused { explanation: None },
            status(SessionStatus::Idle),
            user("three"),
        ]));
        let texts = serde_json::to_string(&messages).unwrap();
        assert!(
            !texts.contains("declined") && !texts.contains("made before"),
            "{texts}"
        );
        assert_eq!(
            shape(&messages),
            [(Role::User, 1), (Role::Assistant, 1), (Role::User, 2)]
        );
        assert!(matches!(
            &messages[2].content[..],
            [ContentBlock::ToolResult { .. }, ContentBlock::Text { text }] if text == "three"
        ));
    }

    #[test]
    fn a_call_left_open_is_answered_when_its_turn_ends() {
        let status = |status| EventKind::Status {
            status,
            message: None,
        };
        let call = |id: &str| EventKind::ToolCall {
            id: id.into(),
            name: "bash".into(),
            input: json!({}),
        };
        // "a" was cut off by a restart; the next run (no new prompt: one
        // merged before) calls "b": "a" has its result before "b".
        let messages = rebuild(&events(vec![
            user("one"),
            status(SessionStatus::Running),
            call("a"),
            status(SessionStatus::Interrupted),
            status(SessionStatus::Running),
            EventKind::AssistantText {
                text: "Again.".into(),
            },
            call("b"),
            EventKind::ToolResult {
                id: "b".into(),
                output: "ok".into(),
                is_error: false,
                truncated: false,
            },
        ]));
        assert_eq!(
            shape(&messages),
            [
                (Role::User, 1),
                (Role::Assistant, 1),
                (Role::User, 1),
                (Role::Assistant, 2),
                (Role::User, 1)
            ]
        );
        assert!(matches!(
            &messages[2].content[0],
            ContentBlock::ToolResult { tool_use_id, is_error: true, .. } if tool_use_id == "a"
        ));
    }

    #[test]
    fn a_prompt_sent_while_this_run_works_is_the_next_runs() {
        let running = EventKind::Status {
            status: SessionStatus::Running,
            message: None,
        };
        // Stored as this run prepared its workspace, before it read the
        // log: the next run gives it, where the transcript shows it.
        let messages = rebuild(&events(vec![user("one"), running, user("two")]));
        assert_eq!(messages.len(), 1);
        assert!(matches!(&messages[0].content[..], [ContentBlock::Text { text }] if text == "one"));
    }

    #[test]
    fn a_prompt_sent_while_a_turn_ran_follows_that_turn() {
        let status = |status| EventKind::Status {
            status,
            message: None,
        };
        let call = EventKind::ToolCall {
            id: "t1".into(),
            name: "bash".into(),
            input: json!({}),
        };
        let asked = EventKind::PermissionRequest {
            request_id: "p1".into(),
            tool_use_id: "t1".into(),
            tool: "bash".into(),
            input: json!({}),
        };
        // Sent while t1 waited for a decision: the turn is not over, so
        // the call is still open (the server resumes it after a restart).
        let mut log = vec![
            user("one"),
            status(SessionStatus::Running),
            call,
            asked,
            status(SessionStatus::AwaitingPermission),
            user("two"),
        ];
        let open = unfinished(&events(log.clone()));
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].request.as_ref().map(|r| r.0.as_str()), Some("p1"));
        // Cut off instead (a restart, an error): the call is not run again,
        // and it gets one result, the interrupted one, before "two".
        let mut cut = log.clone();
        cut.extend([
            status(SessionStatus::Interrupted),
            status(SessionStatus::Running),
        ]);
        assert!(unfinished(&events(cut.clone())).is_empty());
        let messages = rebuild(&events(cut));
        assert_eq!(messages.len(), 3);
        assert!(matches!(
            messages[2].content.as_slice(),
            [ContentBlock::ToolResult { is_error: true, .. }, ContentBlock::Text { text }] if text == "two"
        ));
        // The turn then ended, and the next run began: "two" comes after
        // all of it, and t1 has its one result.
        log.extend([
            status(SessionStatus::Running),
            EventKind::ToolResult {
                id: "t1".into(),
                output: "ok".into(),
                is_error: false,
                truncated: false,
            },
            EventKind::AssistantText {
                text: "Done.".into(),
            },
            status(SessionStatus::Idle),
            status(SessionStatus::Running),
        ]);
        let messages = rebuild(&events(log));
        assert_eq!(
            shape(&messages),
            [
                (Role::User, 1),
                (Role::Assistant, 1),
                (Role::User, 1),
                (Role::Assistant, 1),
                (Role::User, 1)
            ]
        );
        assert!(matches!(
            &messages[2].content[0],
            ContentBlock::ToolResult { content, is_error: false, .. } if content == "ok"
        ));
        assert!(matches!(&messages[4].content[0], ContentBlock::Text { text } if text == "two"));
    }
}
