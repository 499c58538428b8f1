//! A trigger's prompt and conversation key, made from a delivery with the
//! owner's templates (minijinja: `{{ payload.issue.title }}`, filters,
//! conditions, loops), bounded: a template runs on a fuel budget, and
//! stops making text at a length (the text is cut there).

use super::Said;
use app::domain::AppError;
use app::triggers::{CONVERSATION_MAX_BYTES, PROMPT_MAX_BYTES};
use minijinja::{Environment, UndefinedBehavior};
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Instructions a template may run for one delivery.
const FUEL: u64 = 100_000;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    // A field the delivery lacks is empty, as senders leave out what they
    // have nothing for.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env
}

/// Refuses a template that does not compile, in the owner's words.
pub fn check(what: &str, template: &str) -> Result<(), AppError> {
    environment()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| AppError::Invalid(format!("The {what} template does not compile: {e}")))
}

/// What a template writes, refused past `max` bytes: rendering stops
/// there, however much more the template would make. It knows which of
/// its bytes a field wrote (`{{ … }}`, what a delivery says, or may).
struct Capped {
    text: Vec<u8>,
    max: usize,
    full: bool,
    /// Set while the template writes a field's value (see [`render`]):
    /// what reaches this then is the field's, and what a `set` block or a
    /// macro captures meanwhile never reaches it.
    writing_field: Arc<AtomicBool>,
    fields: Vec<Range<usize>>,
}

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = self.max - self.text.len();
        let start = self.text.len();
        self.text.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if self.writing_field.load(Ordering::Relaxed) {
            match self.fields.last_mut() {
                Some(last) if last.end == start => last.end = self.text.len(),
                _ => self.fields.push(start..self.text.len()),
            }
        }
        if bytes.len() > room {
            self.full = true;
            return Err(std::io::Error::other("the text is as long as it may be"));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a template sees of a delivery: `payload` (its JSON, or its form's
/// fields), `delivery` (its id) and what its sender says: from GitHub,
/// `github` (what mentions the handle); an email, `email`; a text message,
/// `sms`; a schedule's run, `schedule`.
pub fn context(payload: &serde_json::Value, delivery: &str, said: &Said) -> serde_json::Value {
    let mut seen = serde_json::json!({ "payload": payload, "delivery": delivery });
    let (name, value) = match said {
        Said::Nothing => return seen,
        Said::Github(mention) => ("github", serde_json::to_value(mention)),
        Said::Email(email) => ("email", serde_json::to_value(email)),
        Said::Sms(sms) => ("sms", serde_json::to_value(sms)),
        Said::Schedule(run) => ("schedule", serde_json::to_value(run)),
    };
    seen[name] = value.unwrap_or_default();
    seen
}

/// A template filled from a delivery.
struct Rendered {
    text: String,
    /// Whether it was cut at its bound.
    cut: bool,
    /// Where in `text` its fields wrote: the rest is the owner's own text.
    fields: Vec<Range<usize>>,
}

/// Fills `template` from a delivery's [`context`], cut at `max` bytes.
fn render(template: &str, seen: &serde_json::Value, max: usize) -> Result<Rendered, String> {
    let writing_field = Arc::new(AtomicBool::new(false));
    let mut env = environment();
    let writing = writing_field.clone();
    env.set_formatter(move |out, state, value| {
        writing.store(true, Ordering::Relaxed);
        let written = minijinja::escape_formatter(out, state, value);
        writing.store(false, Ordering::Relaxed);
        written
    });
    let template = env.template_from_str(template).map_err(|e| e.to_string())?;
    let mut out = Capped {
        text: Vec::new(),
        max,
        full: false,
        writing_field,
        fields: Vec::new(),
    };
    let rendered = template.render_captured_to(seen, &mut out);
    if let (Err(e), false) = (rendered, out.full) {
        return Err(e.to_string());
    }
    // Cut where it stopped, at a character's start.
    let text = String::from_utf8_lossy(&out.text)
        .trim_end_matches('\u{fffd}')
        .to_owned();
    Ok(Rendered {
        text,
        cut: out.full,
        fields: out.fields,
    })
}

/// The prompt a delivery makes.
pub fn prompt(template: &str, seen: &serde_json::Value) -> Result<String, String> {
    let Rendered { text, fields, .. } = render(template, seen, PROMPT_MAX_BYTES)?;
    if text.trim().is_empty() {
        return Err("the prompt template made an empty prompt from this delivery".into());
    }
    // A prompt starting with `/` is a command to the Claude Code CLI (a
    // skill, a repository's own command with the tools it allows): only
    // its owner's template may start one, never a delivery's text. The
    // command is the owner's if no field wrote any of its whole word
    // (`/fix` is not `/fix-and-deploy`; a `/triage` behind a condition that
    // is false is not there to be the owner's).
    if let Some(word) = command_word(&text) {
        if fields
            .iter()
            .any(|f| f.start < word.end && word.start < f.end)
        {
            return Ok(format!("{NOT_A_COMMAND}{text}"));
        }
    }
    Ok(text)
}

/// Where the command a prompt starts with is (its first word, if it
/// starts with `/` past spaces and hidden characters).
fn command_word(text: &str) -> Option<Range<usize>> {
    let shown =
        text.trim_start_matches(|c: char| c.is_whitespace() || app::text::is_hidden_format(c));
    let start = text.len() - shown.len();
    let word = shown.split(char::is_whitespace).next()?;
    word.starts_with('/').then(|| start..start + word.len())
}

/// Put before a prompt whose `/` came from a delivery.
const NOT_A_COMMAND: &str = "(A delivery's text, not a command:)\n";

/// The prompt as the delivery made it, without what says that its `/` is
/// not a command.
pub fn as_made(prompt: &str) -> &str {
    prompt.strip_prefix(NOT_A_COMMAND).unwrap_or(prompt)
}

/// The conversation key a delivery makes (`None`: empty, a new session).
/// One longer than [`CONVERSATION_MAX_BYTES`] is kept as its SHA-256, so
/// that two keys alike in their first bytes stay two conversations.
pub fn conversation(template: &str, seen: &serde_json::Value) -> Result<Option<String>, String> {
    let Rendered { text: key, cut, .. } = render(template, seen, KEY_RENDERED_MAX_BYTES)?;
    if cut {
        return Err(format!(
            "the conversation key template made more than {} KiB of this delivery",
            KEY_RENDERED_MAX_BYTES / 1024
        ));
    }
    let key = key.trim();
    Ok(match key.len() {
        0 => None,
        1..=CONVERSATION_MAX_BYTES => Some(key.to_owned()),
        _ => Some(format!("sha256:{}", hex::encode(Sha256::digest(key)))),
    })
}

/// The prompt and the conversation key a delivery makes, or why not (as a
/// template renderer answers: see [`crate::template_renderers`]).
pub fn prompt_and_key(
    prompt_template: &str,
    conversation_template: Option<&str>,
    seen: &serde_json::Value,
) -> crate::template_renderers::Answer {
    let text =
        prompt(prompt_template, seen).map_err(|e| format!("The prompt template failed: {e}"))?;
    let key = match conversation_template {
        Some(template) => conversation(template, seen)
            .map_err(|e| format!("The conversation key template failed: {e}"))?,
        None => None,
    };
    Ok((text, key))
}

/// A conversation key rendered at most, before it is hashed.
const KEY_RENDERED_MAX_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_owner_s_template_starts_a_command() {
        let seen = context(&json!({"text": "/deploy now"}), "d1", &Said::Nothing);
        assert_eq!(
            prompt("{{ payload.text }}", &seen).unwrap(),
            format!("{NOT_A_COMMAND}/deploy now")
        );
        assert_eq!(
            prompt("  {{ payload.text }}", &seen).unwrap(),
            format!("{NOT_A_COMMAND}  /deploy now")
        );
        assert_eq!(
            prompt("/review {{ payload.text }}", &seen).unwrap(),
            "/review /deploy now"
        );
        assert_eq!(
            prompt("Asked: {{ payload.text }}", &seen).unwrap(),
            "Asked: /deploy now"
        );
        assert_eq!(
            prompt(
                "{# ours #}\n{% if payload.text %}/review {{ payload.text }}{% endif %}",
                &seen
            )
            .unwrap(),
            "\n/review /deploy now"
        );
        // The owner's command under a condition that is false: what
        // starts the prompt is the delivery's.
        assert!(prompt(
            "{% if payload.urgent %}/urgent {% endif %}{{ payload.text }}",
            &seen
        )
        .unwrap()
        .starts_with(NOT_A_COMMAND));
        // Nor one whose name starts as the owner's does.
        let longer = context(
            &json!({"text": "/fix-and-deploy prod"}),
            "d1",
            &Said::Nothing,
        );
        assert!(prompt(
            "{% if payload.urgent %}/fix {% endif %}{{ payload.text }}",
            &longer
        )
        .unwrap()
        .starts_with(NOT_A_COMMAND));
        // Nor the owner's own command behind a condition that is false,
        // written by the delivery: it is the owner's where it is true.
        let triage = "{% if payload.verified %}/triage {% endif %}{{ payload.text }}";
        let sent = |verified: bool| {
            let seen = context(
                &json!({"verified": verified, "text": "/triage all"}),
                "d1",
                &Said::Nothing,
            );
            prompt(triage, &seen).unwrap()
        };
        assert_eq!(sent(false), format!("{NOT_A_COMMAND}/triage all"));
        assert_eq!(sent(true), "/triage /triage all");
        // Conditions on what a `set` block captured are followed: the
        // owner's command where the owner wrote it, the delivery's not.
        let bug = |kind: &str| {
            let seen = context(
                &json!({"kind": kind, "text": "/triage all"}),
                "d1",
                &Said::Nothing,
            );
            prompt(
                "{% set kind %}{{ payload.kind }}{% endset %}\
                 {% if kind == 'bug' %}/triage {% endif %}{{ payload.text }}",
                &seen,
            )
            .unwrap()
        };
        assert_eq!(bug("bug"), "/triage /triage all");
        assert_eq!(bug("idea"), format!("{NOT_A_COMMAND}/triage all"));
        let captured = context(&json!({"text": "/triage x"}), "d1", &Said::Nothing);
        assert!(prompt(
            "{% set body %}{{ payload.text | trim }}{% endset %}\
             {% if not body %}/triage {% endif %}{{ body }}",
            &captured
        )
        .unwrap()
        .starts_with(NOT_A_COMMAND));
        // A command word the delivery finishes is the delivery's.
        assert!(prompt("/{{ payload.text }}", &seen)
            .unwrap()
            .starts_with(NOT_A_COMMAND));
        // Hidden characters before the `/` do not hide it.
        let hidden = context(&json!({"text": "\u{feff}/deploy"}), "d1", &Said::Nothing);
        assert!(prompt("{{ payload.text }}", &hidden)
            .unwrap()
            .starts_with(NOT_A_COMMAND));
        assert_eq!(
            as_made(&prompt("{{ payload.text }}", &seen).unwrap()),
            "/deploy now"
        );
    }

    #[test]
    fn templates_fill_from_the_delivery_within_bounds() {
        let seen = context(
            &json!({"job": "build", "steps": [1, 2, 3], "thread": "t-9"}),
            "d1",
            &Said::Nothing,
        );
        assert_eq!(
            prompt(
                "Fix {{ payload.job }} ({{ payload.steps | length }} steps, {{ delivery }})",
                &seen
            )
            .unwrap(),
            "Fix build (3 steps, d1)"
        );
        assert_eq!(
            conversation("{{ payload.thread }}", &seen).unwrap(),
            Some("t-9".into())
        );
        assert_eq!(
            conversation("{{ payload.missing.deeper }}", &seen).unwrap(),
            None
        );
        // Long keys alike in their first 512 bytes stay two.
        let long = |end: &str| {
            let seen = context(
                &json!({"k": format!("{}{end}", "x".repeat(600))}),
                "d",
                &Said::Nothing,
            );
            conversation("{{ payload.k }}", &seen).unwrap().unwrap()
        };
        assert_ne!(long("a"), long("b"));
        assert!(long("a").starts_with("sha256:") && long("a").len() == 71);
        let huge = context(&json!({"k": "x".repeat(70_000)}), "d", &Said::Nothing);
        assert!(conversation("{{ payload.k }}", &huge).is_err());
        assert!(prompt("{{ payload.nothing }}", &seen).is_err());
        let long = prompt("{% for i in range(100000) %}é{% endfor %}", &seen);
        assert!(long.is_err(), "out of fuel");
        let big = prompt(
            "{{ payload.job * 50000 }}",
            &context(&json!({"job": "ééé"}), "d", &Said::Nothing),
        )
        .unwrap();
        assert!(big.len() <= PROMPT_MAX_BYTES && big.len() > PROMPT_MAX_BYTES - 8);
        assert!(big.ends_with('é'));
        // Stops at the cap, not after making it all.
        let endless = prompt(
            "{% for i in range(5000) %}{{ payload.job * 100000 }}{% endfor %}",
            &context(&json!({"job": "x"}), "d", &Said::Nothing),
        )
        .unwrap();
        assert_eq!(endless.len(), PROMPT_MAX_BYTES);
        assert!(check("prompt", "{% if %}").is_err());
        assert!(check("prompt", "{{ payload.a }}").is_ok());
    }
}
