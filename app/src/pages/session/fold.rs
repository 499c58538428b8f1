//! The live session, folded from what its event stream brings: each stored
//! event updates the session's counters and settles the block it completes;
//! each delta grows a block still being generated. Pure functions, so that
//! the page (on the server and in the browser) and the tests fold alike.

use crate::domain::{Delta, DeltaKind, Event, EventKind, Session};

/// Bytes of a tool call's input shown while it streams (one line of it).
const TOOL_INPUT_SHOWN: usize = 256;

/// A block the model is still generating.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveBlock {
    /// The newest stored event when it began (its fragments' `seq_hint`).
    pub after: i64,
    pub block: usize,
    pub kind: DeltaKind,
    pub text: String,
}

/// The blocks still being generated, and the newest stored block (text,
/// thinking or a tool call): a fragment from before it belongs to a block
/// stored already (a catch-up sends what it reads from the store before
/// the fragments queued meanwhile), so it is dropped rather than shown
/// again as a block of its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Live {
    pub blocks: Vec<LiveBlock>,
    settled: i64,
}

impl Live {
    /// Nothing streaming, after the stored `events` a page holds.
    pub fn after(events: &[Event]) -> Live {
        let settled = events
            .iter()
            .rev()
            .find(|e| is_block(&e.kind))
            .map_or(0, |e| e.seq);
        Live {
            blocks: Vec::new(),
            settled,
        }
    }

    /// Settles the blocks for a stored event: a stored block takes the
    /// place of the blocks that began before it (a message's blocks are
    /// stored once it is whole, or each as it ends), and a run that ended
    /// clears them all. `true` when the blocks changed.
    pub fn settle(&mut self, event: &Event) -> bool {
        let before = self.blocks.len();
        if is_block(&event.kind) {
            self.settled = self.settled.max(event.seq);
            self.blocks.retain(|b| b.after >= event.seq);
        } else if matches!(&event.kind, EventKind::Status { status, .. } if !status.is_busy()) {
            self.blocks.clear();
        }
        self.blocks.len() != before
    }

    /// Grows the block a fragment belongs to, or starts it in order; a
    /// fragment of a block stored already is dropped.
    pub fn stream(&mut self, delta: Delta) {
        if delta.seq_hint < self.settled {
            return;
        }
        let key = (delta.seq_hint, delta.block);
        match self.blocks.iter_mut().find(|b| (b.after, b.block) == key) {
            // A tool call's input shows as one line: past its first few
            // hundred characters, nothing more is kept or drawn again (a
            // file being written streams whole into it).
            Some(b) if b.kind == DeltaKind::ToolInput && b.text.len() >= TOOL_INPUT_SHOWN => {}
            Some(b) => b.text.push_str(&delta.text),
            None => {
                let at = self.blocks.partition_point(|b| (b.after, b.block) < key);
                self.blocks.insert(
                    at,
                    LiveBlock {
                        after: delta.seq_hint,
                        block: delta.block,
                        kind: delta.kind,
                        text: delta.text,
                    },
                );
            }
        }
    }
}

fn is_block(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::AssistantText { .. } | EventKind::Thinking { .. } | EventKind::ToolCall { .. }
    )
}

/// Counts a stored event into the session: its newest `seq` and activity,
/// its status, and its tokens, cost and turns. `false` for an event the
/// session already holds, which changes nothing.
pub fn count(session: &mut Session, event: &Event) -> bool {
    if event.seq <= session.last_seq {
        return false;
    }
    session.last_seq = event.seq;
    // As the store counts activity: not the sandbox's own traffic.
    if !matches!(event.kind, EventKind::Egress { .. }) {
        session.updated_at = event.at;
    }
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

    fn delta(seq_hint: i64, block: usize, text: &str) -> Delta {
        Delta {
            session_id: uuid::Uuid::nil(),
            seq_hint,
            block,
            kind: DeltaKind::Text,
            text: text.into(),
        }
    }

    fn texts(live: &Live) -> Vec<(usize, &str)> {
        live.blocks
            .iter()
            .map(|b| (b.block, b.text.as_str()))
            .collect()
    }

    fn text(seq: i64, text: &str) -> Event {
        event(seq, EventKind::AssistantText { text: text.into() })
    }

    #[test]
    fn a_tool_inputs_stream_is_kept_only_as_far_as_it_shows() {
        let mut live = Live::default();
        let piece = |text: &str| Delta {
            session_id: uuid::Uuid::nil(),
            seq_hint: 3,
            block: 0,
            kind: DeltaKind::ToolInput,
            text: text.into(),
        };
        for _ in 0..1000 {
            live.stream(piece("{\"content\": \"é"));
        }
        let shown = &live.blocks[0].text;
        assert!(shown.len() < TOOL_INPUT_SHOWN + 20, "{}", shown.len());
        assert!(shown.starts_with("{\"content\": \"é{"));
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
        let mut live = Live::default();
        live.stream(delta(0, 1, "tool"));
        live.stream(delta(0, 0, "Hel"));
        live.stream(delta(0, 0, "lo"));
        live.stream(delta(0, 1, " input"));
        assert_eq!(texts(&live), [(0, "Hello"), (1, "tool input")]);
    }

    #[test]
    fn stored_blocks_replace_those_begun_before_and_a_finished_run_clears_them() {
        // A message stored once whole (Paddock's loop): its first block
        // stored takes the place of all of it, a blank block included.
        let mut live = Live::default();
        live.stream(delta(2, 0, "Hello"));
        live.stream(delta(2, 1, "  "));
        assert!(live.settle(&text(3, "Hello")));
        assert!(live.blocks.is_empty());
        // Blocks stored each as it ends (Claude Code): the next began
        // after the one stored.
        live.stream(delta(3, 0, "{\"path\""));
        let usage = event(
            4,
            EventKind::Usage {
                input_tokens: 1,
                output_tokens: 1,
                cost_usd: 0.0,
            },
        );
        assert!(!live.settle(&usage), "usage settles nothing");
        let waiting = event(
            5,
            EventKind::Status {
                status: SessionStatus::AwaitingPermission,
                message: None,
            },
        );
        assert!(!live.settle(&waiting), "still working");
        assert_eq!(texts(&live), [(0, "{\"path\"")]);
        let idle = event(
            6,
            EventKind::Status {
                status: SessionStatus::Idle,
                message: None,
            },
        );
        assert!(live.settle(&idle));
        assert!(live.blocks.is_empty());
        assert!(!live.settle(&idle), "nothing left to clear");
    }

    /// A catch-up sends the stored block before the fragments queued for
    /// it: they are not shown again, and the next message's first block
    /// (numbered 0 again) is a block of its own.
    #[test]
    fn fragments_of_a_block_stored_already_are_dropped() {
        let mut live = Live::after(&[text(7, "Earlier")]);
        live.stream(delta(6, 0, "Earl"));
        assert!(live.blocks.is_empty());
        live.stream(delta(7, 0, "Ne"));
        live.stream(delta(7, 0, "xt"));
        assert_eq!(texts(&live), [(0, "Next")]);
        assert!(live.settle(&text(8, "Next")));
        live.stream(delta(7, 0, " late"));
        live.stream(delta(8, 0, "Then"));
        assert_eq!(texts(&live), [(0, "Then")]);
    }
}
