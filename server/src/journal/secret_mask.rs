//! Hides the values of a session's secrets in everything the journal
//! stores or sends: events, status messages and the live fragments of a
//! block being generated. What the transcript, its event stream and its
//! download show is what went through here, so a secret's value never
//! reaches them; it becomes `••••`.
//!
//! A value is found as itself, as it reads inside a JSON string (a tool
//! call's input as it streams), and line by line when it has several lines
//! (a command's output may carry one line of it). Fragments are masked with
//! what came before them in the same block: a value split across two
//! fragments is held back until it is known whether it completes, and the
//! completed block, stored masked, replaces the fragments in every viewer.
//!
//! The masks are process-wide ([`SecretMasks::global`]) because the log is:
//! every line the server logs passes [`SecretMasks::in_log`], so a value
//! in a library's debug output (a Docker request's environment) or in a
//! command the model wrote is masked there too.

use crate::sandbox::{CUT_SHORT_MARK, TRUNCATION_MARK, TRUNCATION_MARK_END};
use crate::sync::lock;
use app::accounts::SECRET_MIN_CHARS;
use app::domain::{Delta, DeltaKind, EventKind, SessionId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// What a secret's value is replaced with.
pub const MASK: &str = "••••";

/// The strings one session's secrets are found as, longest first (so a
/// value that holds another is masked whole).
#[derive(Debug)]
struct Patterns(Vec<String>);

impl Patterns {
    fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns = Vec::new();
        // A string as it reads inside a JSON string.
        fn in_json(text: &str) -> String {
            let json = serde_json::to_string(text).unwrap_or_default();
            json[1..json.len() - 1].to_owned()
        }
        for value in values {
            patterns.push(value.to_owned());
            patterns.push(in_json(value));
            if value.contains('\n') {
                for line in value
                    .lines()
                    .map(str::trim)
                    .filter(|line| line.chars().count() >= SECRET_MIN_CHARS)
                {
                    patterns.push(line.to_owned());
                    patterns.push(in_json(line));
                }
            }
        }
        patterns.retain(|p| !p.is_empty());
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Self(patterns)
    }

    fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for p in &self.0 {
            if out.contains(p.as_str()) {
                out = Cow::Owned(out.replace(p.as_str(), MASK));
            }
        }
        out
    }

    /// The length of the longest end of `text` that is the start of a
    /// pattern (and so may be a value the next fragment completes).
    fn open_end(&self, text: &str) -> usize {
        self.0
            .iter()
            .filter_map(|p| {
                (1..p.len().min(text.len() + 1))
                    .rev()
                    .find(|&k| p.is_char_boundary(k) && text.ends_with(&p[..k]))
            })
            .max()
            .unwrap_or(0)
    }

    /// The length of the longest start of `text` that is the end of a
    /// pattern (a value whose start was cut off before it).
    fn open_start(&self, text: &str) -> usize {
        self.0
            .iter()
            .filter_map(|p| {
                (1..p.len().min(text.len() + 1)).rev().find(|&k| {
                    p.is_char_boundary(p.len() - k) && text.starts_with(&p[p.len() - k..])
                })
            })
            .max()
            .unwrap_or(0)
    }

    /// A command's captured output: masked like any text, and where its
    /// middle was cut ([`CappedOutput`](crate::sandbox::CappedOutput)), the
    /// part of a value on either side of the cut is masked too.
    fn apply_output(&self, text: &str) -> String {
        let mut out = self.apply(text).into_owned();
        if let Some(at) = out.rfind(CUT_SHORT_MARK) {
            let kept = out[..at].strip_suffix('\n').unwrap_or(&out[..at]);
            let cut = self.open_end(kept);
            if cut > 0 {
                out.replace_range(kept.len() - cut..kept.len(), MASK);
            }
        }
        if let Some((head, tail)) = out.split_once(TRUNCATION_MARK) {
            let tail = tail
                .split_once(TRUNCATION_MARK_END)
                .map_or(tail, |(_, rest)| rest);
            let (cut_head, cut_tail) = (self.open_end(head), self.open_start(tail));
            if cut_head > 0 || cut_tail > 0 {
                let marker = &out[head.len()..out.len() - tail.len()];
                let mut masked = head[..head.len() - cut_head].to_owned();
                if cut_head > 0 {
                    masked.push_str(MASK);
                }
                masked.push_str(marker);
                if cut_tail > 0 {
                    masked.push_str(MASK);
                }
                masked.push_str(&tail[cut_tail..]);
                out = masked;
            }
        }
        out
    }

    fn apply_in(&self, text: &mut String) {
        if let Cow::Owned(masked) = self.apply(text) {
            *text = masked;
        }
    }

    /// Masks the free text of an event: what a person, the model or a tool
    /// wrote (identifiers, tool names and numbers are Paddock's or the
    /// model's own).
    fn apply_event(&self, mut kind: EventKind) -> EventKind {
        match &mut kind {
            EventKind::UserMessage { text }
            | EventKind::AssistantText { text }
            | EventKind::Thinking { text }
            | EventKind::Error { message: text }
            | EventKind::Workspace { message: text }
            // A host name the agent chose may spell a secret; a sender
            // chose a delivery's id.
            | EventKind::Egress { host: text, .. }
            | EventKind::Delivery { id: text, .. } => self.apply_in(text),
            EventKind::ToolResult { output, .. } => *output = self.apply_output(output),
            EventKind::ToolCall { input, .. } | EventKind::PermissionRequest { input, .. } => {
                self.apply_value(input)
            }
            EventKind::Status { message: text, .. }
            | EventKind::PermissionDecision { reason: text, .. }
            | EventKind::Refused { explanation: text } => {
                if let Some(text) = text {
                    self.apply_in(text);
                }
            }
            // Paddock's own words, and a person's name.
            EventKind::Usage { .. } | EventKind::Terminal { .. } => {}
        }
        kind
    }

    fn apply_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => self.apply_in(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.apply_value(v)),
            Value::Object(fields) => {
                *fields = std::mem::take(fields)
                    .into_iter()
                    .map(|(key, mut v)| {
                        self.apply_value(&mut v);
                        (self.apply(&key).into_owned(), v)
                    })
                    .collect();
            }
            // A secret of digits, written as a number.
            Value::Number(n) => {
                if let Cow::Owned(masked) = self.apply(&n.to_string()) {
                    *value = Value::String(masked);
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }
}

/// A session's patterns and the held-back ends of its blocks in progress.
struct SessionMask {
    patterns: Patterns,
    values: Vec<String>,
    /// Keyed by the fragment's `seq_hint`, block and kind.
    held: HashMap<(i64, usize, DeltaKind), String>,
}

/// The masks of the sessions whose secrets are known (set when a run
/// starts). Sessions without secrets pass through untouched.
#[derive(Default)]
pub struct SecretMasks(Mutex<Masks>);

#[derive(Default)]
struct Masks {
    sessions: HashMap<SessionId, SessionMask>,
    /// Every session's values, each once, for log lines: sessions made
    /// from one template hold the same ones, and a line is masked with
    /// each value once, not once per session (which grew with every
    /// session a process had run since it started).
    log: Option<Patterns>,
}

impl Masks {
    fn changed(&mut self) {
        let mut values: Vec<&str> = self
            .sessions
            .values()
            .flat_map(|m| m.values.iter().map(String::as_str))
            .collect();
        values.sort_unstable();
        values.dedup();
        self.log = (!values.is_empty()).then(|| Patterns::new(values));
    }
}

static GLOBAL: LazyLock<SecretMasks> = LazyLock::new(SecretMasks::default);

impl SecretMasks {
    /// The masks of every session this process runs.
    pub fn global() -> &'static Self {
        &GLOBAL
    }

    /// A log line with the secrets of every session masked.
    pub fn in_log<'a>(&self, line: &'a str) -> Cow<'a, str> {
        match &lock(&self.0).log {
            Some(patterns) => Cow::Owned(patterns.apply(line).into_owned()),
            None => Cow::Borrowed(line),
        }
    }

    /// Adds the session's secret values: masked from now on, with those
    /// set before (a command started earlier, or a file, may still hold a
    /// value since replaced), until the session is forgotten.
    pub fn set(&self, session: SessionId, values: &[&str]) {
        let mut masks = lock(&self.0);
        let mut known = masks
            .sessions
            .get(&session)
            .map(|m| m.values.clone())
            .unwrap_or_default();
        let before = known.len();
        for v in values {
            if !v.is_empty() && !known.iter().any(|k| k == v) {
                known.push((*v).to_owned());
            }
        }
        // Nothing new (a run starting again with the same values): the
        // patterns stand.
        if known.len() == before {
            return;
        }
        let patterns = Patterns::new(known.iter().map(String::as_str));
        match masks.sessions.get_mut(&session) {
            Some(m) => {
                m.patterns = patterns;
                m.values = known;
            }
            None => {
                masks.sessions.insert(
                    session,
                    SessionMask {
                        patterns,
                        values: known,
                        held: HashMap::new(),
                    },
                );
            }
        }
        masks.changed();
    }

    pub fn forget(&self, session: SessionId) {
        let mut masks = lock(&self.0);
        if masks.sessions.remove(&session).is_some() {
            masks.changed();
        }
    }

    pub fn text<'a>(&self, session: SessionId, text: &'a str) -> Cow<'a, str> {
        match lock(&self.0).sessions.get(&session) {
            Some(m) => Cow::Owned(m.patterns.apply(text).into_owned()),
            None => Cow::Borrowed(text),
        }
    }

    /// A command's captured output, masked across the cut of a truncated
    /// one too.
    pub fn output<'a>(&self, session: SessionId, text: &'a str) -> Cow<'a, str> {
        match lock(&self.0).sessions.get(&session) {
            Some(m) => Cow::Owned(m.patterns.apply_output(text)),
            None => Cow::Borrowed(text),
        }
    }

    /// Drops the held-back ends of the session's blocks in progress: the
    /// model call that streamed them is being made again from the start.
    pub fn restart(&self, session: SessionId) {
        if let Some(m) = lock(&self.0).sessions.get_mut(&session) {
            m.held.clear();
        }
    }

    pub fn event(&self, session: SessionId, kind: EventKind) -> EventKind {
        match lock(&self.0).sessions.get(&session) {
            Some(m) => m.patterns.apply_event(kind),
            None => kind,
        }
    }

    /// The fragment as it may be shown: masked, without an end that may be
    /// the start of a value (kept for the next fragment of the block);
    /// `None` when nothing of it can be shown yet.
    pub fn delta(&self, mut delta: Delta) -> Option<Delta> {
        let mut masks = lock(&self.0);
        let Some(m) = masks.sessions.get_mut(&delta.session_id) else {
            return Some(delta);
        };
        // A newer seq_hint means the blocks before it were stored whole.
        m.held
            .retain(|(seq_hint, ..), _| *seq_hint >= delta.seq_hint);
        let key = (delta.seq_hint, delta.block, delta.kind);
        let mut text = m.held.remove(&key).unwrap_or_default();
        text.push_str(&delta.text);
        let mut text = m.patterns.apply(&text).into_owned();
        let open = m.patterns.open_end(&text);
        if open > 0 {
            m.held.insert(key, text.split_off(text.len() - open));
        }
        if text.is_empty() {
            return None;
        }
        delta.text = text;
        Some(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masks(values: &[&str]) -> (SecretMasks, SessionId) {
        let masks = SecretMasks::default();
        let session = SessionId::now_v7();
        masks.set(session, values);
        (masks, session)
    }

    #[test]
    fn values_are_masked_as_themselves_in_json_and_by_line() {
        let (m, s) = masks(&["s3cr3t-value", "line one\nsecond \"line\""]);
        assert_eq!(m.text(s, "x s3cr3t-value y"), "x •••• y");
        assert_eq!(
            m.text(s, r#"{"a":"line one\nsecond \"line\""}"#),
            r#"{"a":"••••"}"#
        );
        assert_eq!(
            m.text(s, "1\tline one\n2\tsecond \"line\""),
            "1\t••••\n2\t••••"
        );
        assert_eq!(m.text(SessionId::now_v7(), "s3cr3t-value"), "s3cr3t-value");
        assert_eq!(m.in_log("a s3cr3t-value b"), "a •••• b");
        // A value saved again adds to the old one, which stays masked.
        m.set(s, &["n3w-value"]);
        assert_eq!(m.text(s, "s3cr3t-value n3w-value"), "•••• ••••");
        assert_eq!(m.in_log("s3cr3t-value n3w-value"), "•••• ••••");
        // Log lines: masked with every session's values, until the last
        // session holding one is forgotten.
        let other = SessionId::now_v7();
        m.set(other, &["n3w-value", "0ther-value"]);
        m.forget(s);
        assert_eq!(
            m.in_log("s3cr3t-value n3w-value 0ther-value"),
            "s3cr3t-value •••• ••••"
        );
        m.forget(other);
        assert_eq!(m.in_log("n3w-value"), "n3w-value");
    }

    #[test]
    fn every_string_of_an_event_is_masked() {
        let (m, s) = masks(&["hunter22"]);
        let call = m.event(
            s,
            EventKind::ToolCall {
                id: "t1".into(),
                name: "bash".into(),
                input: serde_json::json!({"command": ["echo hunter22"], "n": 1}),
            },
        );
        assert_eq!(
            call,
            EventKind::ToolCall {
                id: "t1".into(),
                name: "bash".into(),
                input: serde_json::json!({"command": ["echo ••••"], "n": 1}),
            }
        );
        // A secret of digits, passed as a number.
        let (m, s) = masks(&["48151623"]);
        let call = m.event(
            s,
            EventKind::ToolCall {
                id: "t2".into(),
                name: "pay".into(),
                input: serde_json::json!({"account": 48151623, "amount": 5}),
            },
        );
        assert!(matches!(call, EventKind::ToolCall { input, .. }
            if input == serde_json::json!({"account": "••••", "amount": 5})));
    }

    #[test]
    fn free_text_of_every_event_is_masked() {
        let (m, s) = masks(&["hunter22"]);
        let said = m.event(
            s,
            EventKind::ToolResult {
                id: "t1".into(),
                output: "hunter22\n".into(),
                is_error: false,
                truncated: false,
            },
        );
        assert!(matches!(said, EventKind::ToolResult { output, .. } if output == "••••\n"));
        let status = m.event(
            s,
            EventKind::Status {
                status: app::domain::SessionStatus::Error,
                message: Some("failed: hunter22".into()),
            },
        );
        assert!(
            matches!(status, EventKind::Status { message: Some(m), .. } if m == "failed: ••••")
        );
    }

    #[test]
    fn a_value_cut_by_truncation_is_masked_on_both_sides_of_the_cut() {
        use crate::sandbox::CappedOutput;
        let (m, s) = masks(&["abcdef123456"]);
        // The cap's head ends inside one copy, its tail starts inside another.
        let mut out = CappedOutput::new(20);
        out.push(b"0123456abcdef");
        out.push(&[b'x'; 100]);
        out.push(b"cdef123456 ok.");
        let out = out.finish();
        assert!(out.contains("abc") && out.contains("123456"), "{out}");
        let masked = m.output(s, &out);
        assert!(
            masked.starts_with("0123456••••\n[… output truncated"),
            "{masked}"
        );
        assert!(masked.ends_with("…]\n•••• ok."), "{masked}");
        // A tool's answer cut short at its end.
        let cut = format!(
            "found abcde\n{}1 of 9 bytes omitted; read on]",
            crate::sandbox::CUT_SHORT_MARK
        );
        assert!(m
            .output(s, &cut)
            .starts_with("found ••••\n[output truncated"));
        // Without a secret, nothing changes.
        assert_eq!(m.output(SessionId::now_v7(), &out), out);
    }

    #[test]
    fn keys_of_a_tool_input_and_escaped_lines_are_masked() {
        let (m, s) = masks(&["first \"line\" here\nsecond-line-x"]);
        let call = m.event(
            s,
            EventKind::ToolCall {
                id: "t1".into(),
                name: "write".into(),
                input: serde_json::json!({"second-line-x": 1}),
            },
        );
        assert!(
            matches!(call, EventKind::ToolCall { input, .. } if input == serde_json::json!({"••••": 1}))
        );
        // One line of the value, as a streamed tool input shows it.
        assert_eq!(
            m.text(s, r#"{"content":"first \"line\" here"#),
            r#"{"content":"••••"#
        );
    }

    #[test]
    fn a_value_split_across_fragments_is_held_back_then_masked() {
        let (m, s) = masks(&["abcdef123"]);
        let frag = |seq_hint, text: &str| Delta {
            session_id: s,
            seq_hint,
            block: 0,
            kind: DeltaKind::Text,
            text: text.into(),
        };
        let shown = |d: Option<Delta>| d.map(|d| d.text).unwrap_or_default();
        let mut out = String::new();
        for piece in ["the key is a", "bc", "def1", "23 and ab", "c. done"] {
            out += &shown(m.delta(frag(5, piece)));
        }
        assert_eq!(out, "the key is •••• and abc. done");
        // A fragment of a later block does not see an older one's end.
        assert_eq!(shown(m.delta(frag(5, "xx abcdef"))), "xx ");
        assert_eq!(shown(m.delta(frag(7, "123"))), "123");
    }
}
