//! Prices per million tokens, for the cost shown beside each session and
//! checked against its budget. Exact identifiers first, then by family, so
//! dated ids (`…-20250929`) and gateway aliases still get a price; unknown
//! models cost 0 and say so in the log once.

use app::domain::Session;

/// (model id prefix, input $/MTok, output $/MTok), most specific first.
const PRICES: &[(&str, f64, f64)] = &[
    ("claude-opus-4-5", 5.0, 25.0),
    ("claude-opus-4-1", 15.0, 75.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-haiku-4", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
];

/// Falls back on the family name anywhere in the id.
const FAMILIES: &[(&str, f64, f64)] = &[
    ("opus", 15.0, 75.0),
    ("sonnet", 3.0, 15.0),
    ("haiku", 1.0, 5.0),
];

pub fn cost_usd(model: &str, input_tokens: u64, output_tokens: u64) -> f64 {
    let price = PRICES
        .iter()
        .find(|(p, ..)| model.starts_with(p))
        .or_else(|| FAMILIES.iter().find(|(f, ..)| model.contains(f)));
    match price {
        Some((_, input, output)) => {
            (input_tokens as f64 * input + output_tokens as f64 * output) / 1e6
        }
        None => {
            tracing::debug!(model, "no price known for this model; counting it as free");
            0.0
        }
    }
}

/// Why no more model calls may be made for a session, if its budget is
/// spent: checked by the native loop and by the LLM proxy before each call.
pub fn budget_refusal(s: &Session) -> Option<String> {
    let budget = s.budget_usd.filter(|b| s.cost_usd >= *b)?;
    Some(format!(
        "This session reached its budget of ${budget:.2} (spent ${:.4}); \
         no more model calls will be made.",
        s.cost_usd
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_known_models_and_families() {
        assert!((cost_usd("claude-sonnet-4-5", 1_000_000, 1_000_000) - 18.0).abs() < 1e-9);
        assert!((cost_usd("claude-sonnet-4-5-20250929", 1_000_000, 0) - 3.0).abs() < 1e-9);
        assert!((cost_usd("claude-opus-4-5", 0, 1_000_000) - 25.0).abs() < 1e-9);
        assert!((cost_usd("anthropic/claude-haiku-latest", 1_000_000, 0) - 1.0).abs() < 1e-9);
        assert_eq!(cost_usd("llama3", 1000, 1000), 0.0);
    }
}
