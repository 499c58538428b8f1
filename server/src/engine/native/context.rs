//! Keeping a conversation within the model's context: each call sends the
//! whole session, and a long one (tool outputs of 32 KB each, pasted logs)
//! would grow past what the model takes, to be refused (400 "prompt is too
//! long") at every prompt after, for good. Past its budget (a rough
//! count, a quarter of the characters: [`BUDGET_TOKENS`] less what the
//! system prompt and the tools take), the oldest tool outputs, then the
//! oldest tool inputs (a whole file written), then the oldest texts, then
//! prompts merged into the one answered (as after one refused as too
//! long), are replaced by a short note, until it fits. Never cut: the
//! prompt being answered (the last one), the texts after it, the last
//! message (the results the model answers now) and the calls it answers;
//! the conversation keeps its shape: every call still has its result.
//! Where the API still finds it too long (the rough count short of the
//! real one), it is fitted again within as much less.

use crate::llm::{ContentBlock, Message, Role};

/// What a request may hold, in rough tokens (the conversation, the system
/// prompt and the tools): below the 200k of the models' context, with room
/// for the answer and for the count being rough.
pub const BUDGET_TOKENS: usize = 150_000;

/// A text's rough size, in tokens.
pub fn rough_tokens(text: &str) -> usize {
    crate::llm::rough_tokens(text.len()) as usize
}

/// What stands for a tool's output let go of.
const OUTPUT_NOTE: &str =
    "[This output was removed to keep the conversation within the model's context.]";
/// What stands for a tool's input let go of (an input is an object).
const INPUT_NOTE: &str =
    "[This input was removed to keep the conversation within the model's context.]";
/// What stands for a text let go of.
const TEXT_NOTE: &str =
    "[This text was removed to keep the conversation within the model's context.]";

/// A block's rough size, in tokens.
fn tokens(block: &ContentBlock) -> usize {
    match block {
        ContentBlock::Text { text } => rough_tokens(text),
        ContentBlock::Thinking { thinking, .. } => rough_tokens(thinking),
        ContentBlock::ToolUse { input, .. } => rough_tokens(&input.to_string()),
        ContentBlock::ToolResult { content, .. } => rough_tokens(content),
    }
}

/// Fits `messages` within `budget` rough tokens, as the module says; what
/// it cannot cut (the latest exchange) is left as it is.
pub fn fit(messages: &mut [Message], budget: usize) {
    let total: usize = messages.iter().flat_map(|m| &m.content).map(tokens).sum();
    let Some(mut over) = total.checked_sub(budget).filter(|o| *o > 0) else {
        return;
    };
    let last = messages.len().saturating_sub(1);
    let prompt = messages
        .iter()
        .rposition(|m| {
            m.role == Role::User
                && m.content
                    .iter()
                    .any(|b| matches!(b, ContentBlock::Text { .. }))
        })
        .unwrap_or(last);
    // Outputs first (the bulk, and read once), then inputs before the
    // calls answered now, then texts before the prompt, oldest first.
    let answers_calls = messages.get(last).is_some_and(|m| {
        m.content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolResult { .. }))
    });
    let inputs_before = if answers_calls {
        last.saturating_sub(1)
    } else {
        last
    };
    // Last, the prompt's own earlier texts: prompts merged into it, as
    // after one the model refused as too long (the last is answered now).
    let merged = messages.get(prompt).map_or(0, |m| {
        m.content
            .iter()
            .rposition(|b| matches!(b, ContentBlock::Text { .. }))
            .unwrap_or(0)
    });
    for pass in [Pass::Outputs, Pass::Inputs, Pass::Texts, Pass::Merged] {
        let older = match pass {
            Pass::Outputs => last,
            Pass::Inputs => inputs_before,
            Pass::Texts | Pass::Merged => prompt.min(last),
        };
        let blocks: Box<dyn Iterator<Item = &mut ContentBlock>> = match pass {
            Pass::Merged => Box::new(messages[older].content[..merged].iter_mut()),
            _ => Box::new(messages[..older].iter_mut().flat_map(|m| &mut m.content)),
        };
        for block in blocks {
            if over == 0 {
                return;
            }
            let before = tokens(block);
            match (pass, &mut *block) {
                (Pass::Outputs, ContentBlock::ToolResult { content, .. })
                    if content.len() > OUTPUT_NOTE.len() =>
                {
                    *content = OUTPUT_NOTE.to_owned();
                }
                (Pass::Texts | Pass::Merged, ContentBlock::Text { text })
                    if text.len() > TEXT_NOTE.len() =>
                {
                    *text = TEXT_NOTE.to_owned();
                }
                (Pass::Inputs, ContentBlock::ToolUse { input, .. }) => {
                    let note = serde_json::json!({ "removed": INPUT_NOTE });
                    if input.to_string().len() <= note.to_string().len() {
                        continue;
                    }
                    *input = note;
                }
                _ => continue,
            }
            over = over.saturating_sub(before - tokens(block));
        }
    }
}

/// The budget to fit within again after the API refused a request as too
/// long (`prompt is too long: 215000 tokens > 200000 maximum`): the rough
/// count was short of the real one (text of few characters a token), so
/// the budget shrinks by as much, and a tenth more. `None` for any other
/// refusal.
pub fn budget_after_refusal(message: &str, budget: usize) -> Option<usize> {
    let said = &message[message.find("prompt is too long")?..];
    let mut numbers = said
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u64>().ok());
    let (real, most) = (numbers.next()?, numbers.next()?);
    (real > most).then(|| (budget as u64 * most / real * 9 / 10) as usize)
}

/// What [`fit`] lets go of, in turn.
#[derive(Clone, Copy)]
enum Pass {
    Outputs,
    Inputs,
    Texts,
    Merged,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, size: usize) -> Message {
        Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: id.into(),
                content: "x".repeat(size),
                is_error: false,
            }],
        }
    }

    fn call(id: &str) -> Message {
        Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: id.into(),
                name: "bash".into(),
                input: serde_json::json!({"command": "cat big.log"}),
            }],
        }
    }

    fn size(messages: &[Message]) -> usize {
        messages.iter().flat_map(|m| &m.content).map(tokens).sum()
    }

    #[test]
    fn a_conversation_within_the_budget_is_sent_whole() {
        let mut messages = vec![call("a"), result("a", 4000)];
        let before = messages.clone();
        fit(&mut messages, BUDGET_TOKENS);
        assert_eq!(messages, before);
    }

    #[test]
    fn the_oldest_outputs_go_first_and_the_latest_exchange_stays() {
        // 30 calls of 32 KB outputs: about 240k tokens.
        let mut messages = Vec::new();
        for i in 0..30 {
            messages.push(call(&i.to_string()));
            messages.push(result(&i.to_string(), 32 * 1024));
        }
        let shape: Vec<_> = messages.iter().map(|m| (m.role, m.content.len())).collect();
        fit(&mut messages, BUDGET_TOKENS);
        assert!(size(&messages) <= BUDGET_TOKENS, "{}", size(&messages));
        assert_eq!(
            messages
                .iter()
                .map(|m| (m.role, m.content.len()))
                .collect::<Vec<_>>(),
            shape,
            "every call keeps its result"
        );
        let output = |m: &Message| match &m.content[0] {
            ContentBlock::ToolResult { content, .. } => content.clone(),
            _ => unreachable!(),
        };
        assert_eq!(output(&messages[1]), OUTPUT_NOTE, "the oldest let go of");
        assert_eq!(output(&messages[59]).len(), 32 * 1024, "the latest kept");
    }

    #[test]
    fn whole_files_written_go_after_the_outputs_but_not_the_calls_answered_now() {
        let write = |id: &str| Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: id.into(),
                name: "write_file".into(),
                input: serde_json::json!({"path": "a.txt", "content": "w".repeat(64 * 1024)}),
            }],
        };
        // 12 files of 64 KB written, each answered "ok": about 200k tokens.
        let mut messages = Vec::new();
        for i in 0..12 {
            messages.push(write(&i.to_string()));
            messages.push(result(&i.to_string(), 2));
        }
        fit(&mut messages, BUDGET_TOKENS);
        assert!(size(&messages) <= BUDGET_TOKENS, "{}", size(&messages));
        let input = |m: &Message| match &m.content[0] {
            ContentBlock::ToolUse { input, .. } => input.clone(),
            _ => unreachable!(),
        };
        assert_eq!(
            input(&messages[0]),
            serde_json::json!({"removed": INPUT_NOTE})
        );
        assert_eq!(
            input(&messages[22]),
            input(&write("x")),
            "answered now: kept"
        );
        // Answered with the next prompt in the same message (a run cut
        // off, then a prompt): still the calls answered now.
        let big = Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: "big".into(),
                name: "write_file".into(),
                input: serde_json::json!({"path": "b.txt", "content": "b".repeat(700_000)}),
            }],
        };
        let mut messages = vec![write("0"), result("0", 2), big.clone(), result("big", 2)];
        messages[3].content.push(ContentBlock::Text {
            text: "go on".into(),
        });
        fit(&mut messages, BUDGET_TOKENS);
        assert_eq!(input(&messages[2]), input(&big), "answered with the prompt");
    }

    #[test]
    fn texts_go_when_there_are_no_outputs_but_never_the_prompt_answered() {
        let text = |role, size| Message {
            role,
            content: vec![ContentBlock::Text {
                text: "y".repeat(size),
            }],
        };
        let mut messages = vec![
            text(Role::User, 400_000),
            text(Role::Assistant, 400_000),
            text(Role::User, 500_000),
        ];
        fit(&mut messages, BUDGET_TOKENS);
        let texts: Vec<usize> = messages
            .iter()
            .map(|m| match &m.content[0] {
                ContentBlock::Text { text } => text.len(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(texts, [TEXT_NOTE.len(), TEXT_NOTE.len(), 500_000]);
    }

    #[test]
    fn a_prompt_refused_as_too_long_goes_from_the_next_one_it_merged_into() {
        let texts = |sizes: &[usize]| Message {
            role: Role::User,
            content: sizes
                .iter()
                .map(|n| ContentBlock::Text {
                    text: "p".repeat(*n),
                })
                .collect(),
        };
        let mut messages = vec![texts(&[1_000]), texts(&[900_000, 2_000])];
        messages[0].role = Role::Assistant;
        fit(&mut messages, BUDGET_TOKENS);
        let sizes: Vec<usize> = messages[1]
            .content
            .iter()
            .map(|b| match b {
                ContentBlock::Text { text } => text.len(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(sizes, [TEXT_NOTE.len(), 2_000]);
    }

    #[test]
    fn a_refusal_for_length_shrinks_the_budget_by_as_much() {
        let said = "prompt is too long: 250000 tokens > 200000 maximum";
        assert_eq!(budget_after_refusal(said, 150_000), Some(108_000));
        assert_eq!(budget_after_refusal("max_tokens: too large", 150_000), None);
        assert_eq!(
            budget_after_refusal("prompt is too long: 10 tokens > 20 maximum", 9),
            None
        );
    }

    #[test]
    fn the_prompt_answered_stays_through_the_calls_it_made() {
        let prompt = Message {
            role: Role::User,
            content: vec![ContentBlock::Text {
                text: "z".repeat(700_000),
            }],
        };
        let mut messages = vec![prompt, call("a"), result("a", 32 * 1024)];
        messages.extend([call("b"), result("b", 32 * 1024)]);
        fit(&mut messages, BUDGET_TOKENS);
        assert!(
            matches!(&messages[0].content[0], ContentBlock::Text { text } if text.len() == 700_000),
            "the prompt being answered is kept"
        );
        let output = |m: &Message| match &m.content[0] {
            ContentBlock::ToolResult { content, .. } => content.clone(),
            _ => unreachable!(),
        };
        assert_eq!(
            output(&messages[2]),
            OUTPUT_NOTE,
            "an earlier output of this run goes"
        );
        assert_eq!(
            output(&messages[4]).len(),
            32 * 1024,
            "the results answered now stay"
        );
    }
}
