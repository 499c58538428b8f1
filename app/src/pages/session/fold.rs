//! The live session, folded from what its event stream brings: each stored
//! event updates the session's counters and settles the block it completes;
//! each delta grows a block still being generated. Pure functions, so that
//! the page (on the server and in the browser) and the tests fold alike.

use crate::domain::{Delta, DeltaKind, Event, EventKind, Session};

/// A block the model is still generating.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveBlock {
    pub block: usize,
    pub kind: DeltaKind,
    pub text: String,
}

/// Counts a stored event into the session: its newest `seq` and activity,
/// its status, and its tokens, cost and turns. `false` for an event the
/// session already holds, which changes nothing.
pub fn count(session: &mut Session, event: &Event) -> bool {
    if event.seq <= session.last_seq {
        return false;
    }
    session.last_seq = event.seq;
    session.updated_at = event.at;
    match &event.kind {
        EventKind::Status { status, .. } => session.status = *status,
        EventKind::Usage {
            input_tokens,
            output_tokens,
            cost_usd,
        } => {
            session.input_tokens += input_tokens;
            session.output_tokens += output_tokens;
            session.cost_usd += cost_usd;
            session.turns += 1;
        }
        _ => {}
    }
    true
}

/// Settles the live blocks for a stored event: a completed block replaces
/// the oldest one still streaming, and a run that ended clears them all.
/// `true` when the blocks changed.
pub fn settle(blocks: &mut Vec<LiveBlock>, event: &Event) -> bool {
    match &event.kind {
        EventKind::AssistantText { .. }
        | EventKind::Thinking { .. }
        | EventKind::ToolCall { .. }
            if !blocks.is_empty() =>
        {
            blocks.remove(0);
            true
        }
        EventKind::Status { status, .. } if !status.is_busy() && !blocks.is_empty() => {
            blocks.clear();
            true
        }
        _ => false,
    }
}

/// Grows the block a delta belongs to, or starts it in block order.
pub fn stream(blocks: &mut Vec<LiveBlock>, delta: Delta) {
    match blocks.iter_mut().find(|b| b.block == delta.block) {
        Some(b) => b.text.push_str(&delta.text),
        None => {
            let at = blocks.partition_point(|b| b.block < delta.block);
            blocks.insert(
                at,
                LiveBlock {
                    block: delta.block,
                    kind: delta.kind,
                    text: delta.text,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NewSession, SandboxLimits, SessionStatus};
    use chrono::{DateTime, Utc};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn session() -> Session {
        let spec = NewSession {
            name: "fold".into(),
            ..Default::default()
        }
        .validate()
        .unwrap();
        Session {
            id: uuid::Uuid::nil(),
            name: spec.name,
            engine: spec.engine,
            model: spec.model,
            system_prompt: spec.system_prompt,
            permission_mode: spec.permission_mode,
            status: SessionStatus::Idle,
            cost_usd: 0.0,
            turns: 0,
            input_tokens: 0,
            output_tokens: 0,
            last_seq: 0,
            limits: SandboxLimits::default(),
            budget_usd: None,
            mounts: Vec::new(),
            env: Vec::new(),
            secrets: Vec::new(),
            max_turns: None,
            allowed_tools: Vec::new(),
            image: None,
            source: Default::default(),
            skills: Vec::new(),
            mcp_servers: Vec::new(),
            egress: Vec::new(),
            workspace: None,
            template: None,
            trigger: None,
            owner: None,
            created_at: at(0),
            updated_at: at(0),
        }
    }

    fn event(seq: i64, kind: EventKind) -> Event {
        Event {
            session_id: uuid::Uuid::nil(),
            seq,
            at: at(seq),
            kind,
        }
    }

    fn delta(block: usize, text: &str) -> Delta {
        Delta {
            session_id: uuid::Uuid::nil(),
            seq_hint: 0,
            block,
            kind: DeltaKind::Text,
            text: text.into(),
        }
    }

    fn texts(blocks: &[LiveBlock]) -> Vec<(usize, &str)> {
        blocks.iter().map(|b| (b.block, b.text.as_str())).collect()
    }

    #[test]
    fn events_count_once_and_in_order() {
        let mut s = session();
        let running = event(
            1,
            EventKind::Status {
                status: SessionStatus::Running,
                message: None,
            },
        );
        assert!(count(&mut s, &running));
        assert_eq!((s.last_seq, s.status), (1, SessionStatus::Running));
        let usage = event(
            2,
            EventKind::Usage {
                input_tokens: 10,
                output_tokens: 5,
                cost_usd: 0.25,
            },
        );
        assert!(count(&mut s, &usage));
        // A replayed event (a reconnect resending it) changes nothing.
        assert!(!count(&mut s, &usage));
        assert!(!count(&mut s, &running));
        assert_eq!(
            (s.last_seq, s.input_tokens, s.output_tokens, s.turns),
            (2, 10, 5, 1)
        );
        assert!((s.cost_usd - 0.25).abs() < 1e-12);
        assert_eq!(s.status, SessionStatus::Running);
    }

    #[test]
    fn deltas_grow_their_blocks_in_block_order() {
        let mut blocks = Vec::new();
        stream(&mut blocks, delta(1, "tool"));
        stream(&mut blocks, delta(0, "Hel"));
        stream(&mut blocks, delta(0, "lo"));
        stream(&mut blocks, delta(1, " input"));
        assert_eq!(texts(&blocks), [(0, "Hello"), (1, "tool input")]);
    }

    #[test]
    fn stored_blocks_replace_the_oldest_streaming_one_and_a_finished_run_clears_them() {
        let mut blocks = Vec::new();
        stream(&mut blocks, delta(0, "Hello"));
        stream(&mut blocks, delta(1, "{\"path\""));
        let text = event(
            3,
            EventKind::AssistantText {
                text: "Hello".into(),
            },
        );
        assert!(settle(&mut blocks, &text));
        assert_eq!(texts(&blocks), [(1, "{\"path\"")]);
        let usage = event(
            4,
            EventKind::Usage {
                input_tokens: 1,
                output_tokens: 1,
                cost_usd: 0.0,
            },
        );
        assert!(!settle(&mut blocks, &usage), "usage settles nothing");
        let waiting = event(
            5,
            EventKind::Status {
                status: SessionStatus::AwaitingPermission,
                message: None,
            },
        );
        assert!(!settle(&mut blocks, &waiting), "still working");
        let idle = event(
            6,
            EventKind::Status {
                status: SessionStatus::Idle,
                message: None,
            },
        );
        assert!(settle(&mut blocks, &idle));
        assert!(blocks.is_empty());
        assert!(!settle(&mut blocks, &idle), "nothing left to clear");
    }
}
