//! Prices per million tokens, for the cost shown beside each session and
//! checked against its budget. Exact identifiers first, then by family, so
//! dated ids (`…-20250929`) and gateway aliases still get a price; a model
//! of no known family is counted at the highest price (a budget must not
//! run free on an alias), and says so in the log.

use app::domain::Session;

/// (model id prefix, input $/MTok, output $/MTok), most specific first.
const PRICES: &[(&str, f64, f64)] = &[
    ("claude-fable-5", 10.0, 50.0),
    ("claude-opus-5-5", 4.0, 20.0),
    ("claude-opus-5", 5.0, 25.0),
    // Opus 4 and 4.1 (`claude-opus-4-0`, `claude-opus-4-20250514`,
    // `claude-opus-4-1…`); from 4.5 on, a third of that.
    ("claude-opus-4-0", 15.0, 75.0),
    ("claude-opus-4-1", 15.0, 75.0),
    ("claude-opus-4-2", 15.0, 75.0),
    ("claude-opus-4-", 5.0, 25.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-5", 2.0, 10.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-haiku-4", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
];

/// Falls back on the family name anywhere in the id.
const FAMILIES: &[(&str, f64, f64)] = &[
    ("fable", 10.0, 50.0),
    ("opus", 15.0, 75.0),
    ("sonnet", 3.0, 15.0),
    ("haiku", 1.0, 5.0),
];

/// A cache write's price, as a multiple of the input price (five minutes'
/// cache; an hour's is twice the input price), and a cache read's.
pub const CACHE_WRITE: f64 = 1.25;
pub const CACHE_WRITE_HOUR: f64 = 2.0;
pub const CACHE_READ: f64 = 0.1;

/// A model's (input, output) price in $/MTok; its id may carry a
/// provider's prefix (`anthropic/…`, Bedrock's `anthropic.…`).
fn price(model: &str) -> (f64, f64) {
    let id = model.find("claude-").map_or(model, |at| &model[at..]);
    let known = PRICES
        .iter()
        .find(|(p, ..)| id.starts_with(p))
        .or_else(|| FAMILIES.iter().find(|(f, ..)| model.contains(f)));
    match known {
        Some((_, input, output)) => (*input, *output),
        None => {
            tracing::debug!(
                model,
                "no price known for this model; counting it at the highest"
            );
            PRICES
                .iter()
                .map(|(_, input, output)| (*input, *output))
                .fold((0.0, 0.0), |(i, o), (input, output)| {
                    (i.max(input), o.max(output))
                })
        }
    }
}

/// A rough count of the tokens in `bytes` of text: a quarter of them.
pub fn rough_tokens(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64
}

/// The cost of a call: `input` in tokens at the input price (weighted for
/// cache writes and reads by the caller), `output` at the output price.
pub fn cost_usd(model: &str, input: f64, output: u64) -> f64 {
    let (input_price, output_price) = price(model);
    (input * input_price + output as f64 * output_price) / 1e6
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
        let cost = |model, input: u64, output| cost_usd(model, input as f64, output);
        assert!((cost("claude-sonnet-4-5", 1_000_000, 1_000_000) - 18.0).abs() < 1e-9);
        assert!((cost("claude-sonnet-4-5-20250929", 1_000_000, 0) - 3.0).abs() < 1e-9);
        assert!((cost("claude-opus-4-5", 0, 1_000_000) - 25.0).abs() < 1e-9);
        assert!((cost("claude-opus-4-6", 0, 1_000_000) - 25.0).abs() < 1e-9);
        assert!((cost("claude-opus-4-1-20250805", 0, 1_000_000) - 75.0).abs() < 1e-9);
        assert!((cost("claude-opus-4-20250514", 0, 1_000_000) - 75.0).abs() < 1e-9);
        assert!((cost("claude-opus-5-5", 1_000_000, 0) - 4.0).abs() < 1e-9);
        assert!((cost("claude-sonnet-5-5", 1_000_000, 0) - 2.0).abs() < 1e-9);
        assert!((cost("anthropic/claude-haiku-latest", 1_000_000, 0) - 1.0).abs() < 1e-9);
        assert!((cost("anthropic.claude-opus-4-6-v1", 0, 1_000_000) - 25.0).abs() < 1e-9);
        assert!((cost("anthropic/claude-opus-4-6", 0, 1_000_000) - 25.0).abs() < 1e-9);
        assert!((cost("llama3", 1_000_000, 0) - 15.0).abs() < 1e-9);
    }
}
