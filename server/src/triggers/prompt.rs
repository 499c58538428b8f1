//! A trigger's prompt and conversation key, made from a delivery with the
//! owner's templates (minijinja: `{{ payload.issue.title }}`, filters,
//! conditions, loops), bounded: a template runs on a fuel budget, and what
//! it makes is cut at a length.

use app::domain::AppError;
use app::triggers::{CONVERSATION_MAX_BYTES, PROMPT_MAX_BYTES};
use minijinja::{context, Environment, UndefinedBehavior};

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

/// Fills `template` from a delivery, cut at `max` bytes.
fn render(
    template: &str,
    payload: &serde_json::Value,
    delivery: &str,
    max: usize,
) -> Result<String, String> {
    let env = environment();
    let text = env
        .template_from_str(template)
        .and_then(|t| t.render(context! { payload => payload, delivery => delivery }))
        .map_err(|e| e.to_string())?;
    Ok(cut(text, max))
}

fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The prompt a delivery makes.
pub fn prompt(
    template: &str,
    payload: &serde_json::Value,
    delivery: &str,
) -> Result<String, String> {
    let text = render(template, payload, delivery, PROMPT_MAX_BYTES)?;
    if text.trim().is_empty() {
        return Err("the prompt template made an empty prompt from this delivery".into());
    }
    Ok(text)
}

/// The conversation key a delivery makes (`None`: empty, a new session).
pub fn conversation(
    template: &str,
    payload: &serde_json::Value,
    delivery: &str,
) -> Result<Option<String>, String> {
    let key = render(template, payload, delivery, CONVERSATION_MAX_BYTES)?;
    let key = key.trim();
    Ok((!key.is_empty()).then(|| key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_fill_from_the_delivery_within_bounds() {
        let payload = json!({"job": "build", "steps": [1, 2, 3], "thread": "t-9"});
        assert_eq!(
            prompt(
                "Fix {{ payload.job }} ({{ payload.steps | length }} steps, {{ delivery }})",
                &payload,
                "d1"
            )
            .unwrap(),
            "Fix build (3 steps, d1)"
        );
        assert_eq!(
            conversation("{{ payload.thread }}", &payload, "d1").unwrap(),
            Some("t-9".into())
        );
        assert_eq!(
            conversation("{{ payload.missing.deeper }}", &payload, "d1").unwrap(),
            None
        );
        assert!(prompt("{{ payload.nothing }}", &payload, "d1").is_err());
        let long = prompt("{% for i in range(100000) %}é{% endfor %}", &payload, "d1");
        assert!(long.is_err(), "out of fuel");
        let big = prompt("{{ payload.job * 50000 }}", &json!({"job": "ééé"}), "d").unwrap();
        assert!(big.len() <= PROMPT_MAX_BYTES);
        assert!(check("prompt", "{% if %}").is_err());
        assert!(check("prompt", "{{ payload.a }}").is_ok());
    }
}
