//! What the transcript shows, derived from the stored events: the same pure
//! functions run on the server (the first render) and in the browser (each
//! live event), so both always agree.
//!
//! The log is in the order things happened, which is not always the order
//! that reads best: a prompt sent while the agent works is stored at once,
//! in the middle of the running turn. The transcript shows it where its run
//! starts (the next `running` status), and until then at the bottom, marked
//! queued. Tool results and permission decisions are shown inside the card
//! of their call or request; usage only moves the counters.

use crate::domain::{Decision, Event, EventKind, RunFollower, SessionStatus};
use std::collections::{HashMap, HashSet};

/// One tool call's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub output: String,
    pub is_error: bool,
    pub truncated: bool,
}

/// The events to show, in display order, and what their cards look up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcript {
    /// Shown in order; prompts waiting for their run are at the end.
    pub items: Vec<Item>,
    /// Tool results by tool-use id.
    pub outcomes: HashMap<String, Outcome>,
    /// Permission decisions by request id: the decision, why, and who
    /// decided.
    pub decisions: HashMap<String, (Decision, Option<String>, Option<String>)>,
    /// Tool calls whose run ended without a result (stopped, failed, or
    /// the server restarted).
    pub cut_off: HashSet<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub event: Event,
    /// A prompt stored while another ran, not started yet.
    pub queued: bool,
}

impl Transcript {
    pub fn build(events: &[Event]) -> Self {
        let mut t = Transcript::default();
        let mut waiting: Vec<&Event> = Vec::new();
        let mut open: Vec<&str> = Vec::new();
        let mut runs = RunFollower::default();
        let show = |t: &mut Transcript, event: &Event| {
            t.items.push(Item {
                event: event.clone(),
                queued: false,
            })
        };
        for event in events {
            match &event.kind {
                EventKind::UserMessage { .. } => waiting.push(event),
                EventKind::Status { status, message } => {
                    if matches!(
                        status,
                        SessionStatus::Idle | SessionStatus::Error | SessionStatus::Interrupted
                    ) {
                        t.cut_off.extend(open.drain(..).map(str::to_owned));
                    }
                    if shows_waiting(&mut runs, *status, message.is_some()) {
                        for prompt in waiting.drain(..) {
                            show(&mut t, prompt);
                        }
                    }
                    if message.is_some() {
                        show(&mut t, event);
                    }
                }
                EventKind::ToolResult {
                    id,
                    output,
                    is_error,
                    truncated,
                } => {
                    open.retain(|o| o != id);
                    t.outcomes.insert(
                        id.clone(),
                        Outcome {
                            output: output.clone(),
                            is_error: *is_error,
                            truncated: *truncated,
                        },
                    );
                }
                EventKind::PermissionDecision {
                    request_id,
                    decision,
                    reason,
                    by,
                } => {
                    t.decisions
                        .insert(request_id.clone(), (*decision, reason.clone(), by.clone()));
                }
                EventKind::Usage { .. } => {}
                EventKind::ToolCall { id, .. } => {
                    open.push(id);
                    show(&mut t, event);
                }
                _ => show(&mut t, event),
            }
        }
        t.items.extend(waiting.into_iter().map(|e| Item {
            event: e.clone(),
            queued: true,
        }));
        t
    }
}

/// Whether a status shows the prompts waiting so far, which is where the
/// transcript places them: a run starts (its `running` status outside a
/// run: the engines give it every prompt not given yet, as one turn), or a
/// run ended and its queue was dropped (Stop, a restart), whose prompts
/// still reached the conversation. Takes the status into `runs`.
fn shows_waiting(runs: &mut RunFollower, status: SessionStatus, has_message: bool) -> bool {
    let starts = runs.starts(status);
    let dropped = has_message && matches!(status, SessionStatus::Idle | SessionStatus::Interrupted);
    starts || dropped
}

/// Where a page may let go of the oldest of `events`: after the last run
/// among them that ended with no prompt left waiting (one sent while it
/// worked is shown where the next run starts), so that what it keeps
/// starts with a whole run and holds each prompt. `None` where there is no
/// such place.
pub fn cut_before(events: &[Event]) -> Option<usize> {
    let (mut runs, mut waiting, mut cut) = (RunFollower::default(), false, None);
    for (i, event) in events.iter().enumerate() {
        match &event.kind {
            EventKind::UserMessage { .. } => waiting = true,
            EventKind::Status { status, message } => {
                if shows_waiting(&mut runs, *status, message.is_some()) {
                    waiting = false;
                }
                if !status.is_busy() && !waiting {
                    cut = Some(i + 1);
                }
            }
            _ => {}
        }
    }
    cut
}

/// Truncates to `max` characters, with an ellipsis.
fn clip(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let more = line.len() < text.len();
    match crate::text::cut_chars(line, max) {
        Some(cut) => format!("{cut}…"),
        None if more => format!("{line} …"),
        None => line.to_owned(),
    }
}

/// A one-line summary of a tool call's input: the command, the path, the
/// pattern; otherwise the input as compact JSON.
pub fn summary(input: &serde_json::Value) -> String {
    const MAX: usize = 120;
    for key in [
        "command",
        "path",
        "file_path",
        "pattern",
        "url",
        "query",
        "description",
    ] {
        if let Some(v) = input.get(key).and_then(|v| v.as_str()) {
            return clip(v, MAX);
        }
    }
    match input {
        serde_json::Value::Object(o) if o.is_empty() => String::new(),
        other => clip(&other.to_string(), MAX),
    }
}

/// One line of a diff.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffLine {
    /// `+`, `-` or ` `.
    pub sign: char,
    pub text: String,
}

/// Lines of an edit's old and new text, together, that are diffed.
pub const DIFF_MAX_LINES: usize = 2000;

/// The change a file-writing tool call makes, as a line diff: an edit's old
/// and new text, or a written file's content (all new). `None` for other
/// tools.
///
/// One algorithm on line slices: `TextDiff` dispatches over every algorithm
/// at run time, which instantiates all of them into the browser bundle.
/// Past [`DIFF_MAX_LINES`] on both sides together, the old lines then the
/// new, undiffed: the exact search takes time of the square of the lines,
/// on the server's page render and in every viewer's tab.
pub fn file_diff(tool: &str, input: &serde_json::Value) -> Option<Vec<DiffLine>> {
    let field = |k: &str| input.get(k).and_then(|v| v.as_str());
    let line = |sign, text: &str| DiffLine {
        sign,
        text: text.to_owned(),
    };
    let (old, new) = match tool {
        "edit_file" | "Edit" => (field("old_string")?, field("new_string")?),
        "write_file" | "Write" => {
            return Some(field("content")?.lines().map(|l| line('+', l)).collect())
        }
        _ => return None,
    };
    let (old, new): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    if old.len() + new.len() > DIFF_MAX_LINES {
        let removed = old.iter().map(|l| line('-', l));
        return Some(removed.chain(new.iter().map(|l| line('+', l))).collect());
    }
    // `Replace` turns an interleaved insert/delete pair into one replacement,
    // listed as the old lines then the new ones, the way diffs are read.
    let mut ops = similar::algorithms::Replace::new(similar::algorithms::Capture::new());
    let Ok(()) = similar::algorithms::myers::diff_deadline_raw(
        &mut ops,
        &old,
        0..old.len(),
        &new,
        0..new.len(),
        None,
    );
    Some(
        ops.into_inner()
            .into_ops()
            .iter()
            .flat_map(|op| op.iter_changes(&old, &new))
            .map(|change| {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                line(sign, change.value())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log(kinds: Vec<EventKind>) -> Vec<Event> {
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                session_id: uuid::Uuid::nil(),
                seq: i as i64 + 1,
                at: chrono::DateTime::UNIX_EPOCH,
                kind,
            })
            .collect()
    }
    fn user(t: &str) -> EventKind {
        EventKind::UserMessage { text: t.into() }
    }
    fn status(s: SessionStatus, m: Option<&str>) -> EventKind {
        EventKind::Status {
            status: s,
            message: m.map(Into::into),
        }
    }
    fn text(t: &str) -> EventKind {
        EventKind::AssistantText { text: t.into() }
    }
    fn seqs(t: &Transcript) -> Vec<(i64, bool)> {
        t.items.iter().map(|i| (i.event.seq, i.queued)).collect()
    }

    #[test]
    fn a_queued_prompt_waits_at_the_bottom_then_moves_to_its_run() {
        use SessionStatus::*;
        let events = log(vec![
            user("one"),           // 1
            status(Running, None), // 2
            text("part"),          // 3
            user("two"),           // 4: sent while one runs
            text("rest"),          // 5
            status(Idle, None),    // 6
            status(Running, None), // 7: two's run
            text("answer two"),    // 8
        ]);
        assert_eq!(
            seqs(&Transcript::build(&events[..5])),
            [(1, false), (3, false), (5, false), (4, true)]
        );
        assert_eq!(
            seqs(&Transcript::build(&events)),
            [(1, false), (3, false), (5, false), (4, false), (8, false)]
        );
    }

    #[test]
    fn prompts_queued_together_start_together_and_not_at_a_decision() {
        use SessionStatus::*;
        let events = log(vec![
            user("one"),                      // 1
            status(Running, None),            // 2
            status(AwaitingPermission, None), // 3
            user("two"),                      // 4: sent while one waits
            user("three"),                    // 5
            status(Running, None),            // 6: one's call was allowed
            text("done one"),                 // 7
            status(Idle, None),               // 8
            status(Running, None),            // 9: two and three, as one turn
            text("done both"),                // 10
        ]);
        assert_eq!(
            seqs(&Transcript::build(&events[..7])),
            [(1, false), (7, false), (4, true), (5, true)]
        );
        assert_eq!(
            seqs(&Transcript::build(&events)),
            [(1, false), (7, false), (4, false), (5, false), (10, false)]
        );
    }

    #[test]
    fn the_oldest_runs_go_whole_and_a_prompt_queued_in_the_last_stays() {
        use SessionStatus::*;
        let events = log(vec![
            user("one"),           // 0
            status(Running, None), // 1
            text("first"),         // 2
            status(Idle, None),    // 3
            user("two"),           // 4
            status(Running, None), // 5
            text("second"),        // 6
            status(Idle, None),    // 7
            text("unfinished"),    // 8: no run ended after it
        ]);
        assert_eq!(cut_before(&events), Some(8));
        assert_eq!(cut_before(&events[..3]), None);
        // "three" was sent while "two" ran: it waits for a run that has
        // not started yet, so the end of "two" is no place to cut, even
        // once that run starts (it is shown there); the end of "one" is.
        let mut queued = log(vec![
            user("one"),           // 0
            status(Running, None), // 1
            text("first"),         // 2
            status(Idle, None),    // 3
            user("two"),           // 4
            status(Running, None), // 5
            user("three"),         // 6: sent while two ran
            text("second"),        // 7
            status(Idle, None),    // 8
        ]);
        assert_eq!(cut_before(&queued), Some(4));
        queued.extend(log(vec![status(Running, None)]).into_iter().map(|mut e| {
            e.seq = 10;
            e
        }));
        assert_eq!(cut_before(&queued), Some(4));
    }

    #[test]
    fn stopped_runs_release_their_queue_and_plain_statuses_are_hidden() {
        use SessionStatus::*;
        let events = log(vec![
            user("one"),
            status(Running, None),
            user("two"),
            status(Idle, Some("Stopped.")),
        ]);
        let t = Transcript::build(&events);
        assert_eq!(seqs(&t), [(1, false), (3, false), (4, false)]);
    }

    #[test]
    fn calls_without_a_result_are_cut_off_when_the_run_ends() {
        let call = |id: &str| EventKind::ToolCall {
            id: id.into(),
            name: "bash".into(),
            input: json!({}),
        };
        let events = log(vec![call("a"), call("b")]);
        let running = Transcript::build(&events);
        assert!(running.cut_off.is_empty(), "still running");
        let mut stopped = events.clone();
        stopped.extend(
            log(vec![status(SessionStatus::Idle, Some("Stopped."))])
                .into_iter()
                .map(|mut e| {
                    e.seq = 3;
                    e
                }),
        );
        let t = Transcript::build(&stopped);
        assert_eq!(t.cut_off.len(), 2);
    }

    #[test]
    fn results_and_decisions_are_looked_up_not_listed() {
        let events = log(vec![
            EventKind::ToolCall {
                id: "t".into(),
                name: "bash".into(),
                input: json!({"command": "ls"}),
            },
            EventKind::PermissionRequest {
                request_id: "p".into(),
                tool_use_id: "t".into(),
                tool: "bash".into(),
                input: json!({"command": "ls"}),
            },
            EventKind::PermissionDecision {
                request_id: "p".into(),
                decision: Decision::Deny,
                reason: Some("no".into()),
                by: Some("ada".into()),
            },
            EventKind::ToolResult {
                id: "t".into(),
                output: "denied".into(),
                is_error: true,
                truncated: false,
            },
            EventKind::Usage {
                input_tokens: 1,
                output_tokens: 1,
                cost_usd: 0.1,
            },
        ]);
        let t = Transcript::build(&events);
        assert_eq!(seqs(&t), [(1, false), (2, false)]);
        assert!(t.outcomes["t"].is_error);
        assert_eq!(t.decisions["p"].0, Decision::Deny);
    }

    #[test]
    fn summaries() {
        assert_eq!(
            summary(&json!({"command": "cargo test\nmore"})),
            "cargo test …"
        );
        assert_eq!(
            summary(&json!({"path": "src/main.rs", "content": "x"})),
            "src/main.rs"
        );
        assert_eq!(summary(&json!({})), "");
        assert_eq!(summary(&json!({"a": 1})), "{\"a\":1}");
        assert_eq!(
            summary(&json!({"command": "x".repeat(500)}))
                .chars()
                .count(),
            121
        );
    }

    #[test]
    fn diffs_of_edits_and_writes() {
        let d = file_diff(
            "edit_file",
            &json!({"path": "a", "old_string": "a\nb\n", "new_string": "a\nc\n"}),
        )
        .unwrap();
        let signs: String = d.iter().map(|l| l.sign).collect();
        assert_eq!(signs, " -+");
        let d = file_diff("write_file", &json!({"path": "a", "content": "x\ny"})).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|l| l.sign == '+'));
        assert!(file_diff("bash", &json!({"command": "ls"})).is_none());
        // Past the bound, the old lines then the new, undiffed.
        let text = |tag: &str| {
            (0..DIFF_MAX_LINES / 2 + 1)
                .map(|i| format!("{tag}{i}\n"))
                .collect::<String>()
        };
        let same = format!("kept\n{}", text("old"));
        let d = file_diff(
            "Edit",
            &json!({"old_string": same, "new_string": format!("kept\n{}", text("new"))}),
        )
        .unwrap();
        assert_eq!(d.len(), DIFF_MAX_LINES + 4);
        assert_eq!((d[0].sign, d[0].text.as_str()), ('-', "kept"));
        assert!(d[..d.len() / 2].iter().all(|l| l.sign == '-'));
        assert!(d[d.len() / 2..].iter().all(|l| l.sign == '+'));
    }
}
