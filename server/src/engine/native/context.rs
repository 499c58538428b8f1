//! Keeping a conversation within the model's context: each call sends the
//! whole session, and a long one (tool outputs of 32 KB each, pasted logs)
//! would grow past what the model takes, to be refused (400 "prompt is too
//! long") at every prompt after, for good. Past its budget (a rough
//! count, a quarter of the characters: [`BUDGET_TOKENS`] less what the
//! system prompt and the tools take), the oldest tool outputs, then the
//! oldest tool inputs (a whole file written), then the oldest texts, then
//! prompts merged into the one answered (as after one refused as too
//! long), are replaced by a short note, until it fits. Notes add up too
//! (a session of thousands of calls): then the oldest exchanges go whole,
//! from the start to a prompt, and a note says so. Last, the results the
//! model answers now, largest first (dozens of calls at once, or results
//! a run left when it failed, merged with the next prompt). Never cut: the
//! prompt being answered (the last one), the texts after it, and the calls
//! the last message answers; the conversation keeps its shape: every call
//! still has its result. Where the API still finds it too long (the rough
//! count short of the real one), it is fitted again within as much less.

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
/// What opens a conversation whose oldest exchanges were let go of.
const EARLIER_NOTE: &str = "[The earlier part of this conversation was removed to keep it \
     within the model's context.]";
/// What a call or a result takes besides its input or output: its id,
/// its tool's name and the request's framing (more than the rough count
/// of a few dozen characters; a session of thousands of calls adds up).
const CALL_TOKENS: usize = 40;

/// A block's rough size, in tokens.
fn tokens(block: &ContentBlock) -> usize {
    match block {
        ContentBlock::Text { text } => rough_tokens(text),
        ContentBlock::Thinking { thinking, .. } => rough_tokens(thinking),
        ContentBlock::ToolUse { input, name, .. } => {
            CALL_TOKENS + rough_tokens(name) + rough_tokens(&input.to_string())
        }
        ContentBlock::ToolResult { content, .. } => CALL_TOKENS + rough_tokens(content),
    }
}

/// A message's rough size, in tokens.
fn message_tokens(message: &Message) -> usize {
    message.content.iter().map(tokens).sum()
}

/// Fits `messages` within `budget` rough tokens, as the module says; what
/// it cannot cut (the prompt answered, and the calls answered now) is left
/// as it is.
pub fn fit(messages: &mut Vec<Message>, budget: usize) {
    let Some(over) = notes_for_blocks(messages, budget) else {
        return;
    };
    let over = drop_oldest_exchanges(messages, over);
    if over > 0 {
        cut_results_answered_now(messages, over);
    }
}

/// Lets the oldest exchanges go whole, from the start to a prompt (a user
/// message with a text; results merged into it go with the calls they
/// answer, in what goes), no further than the prompt answered, and never
/// the calls the last message answers; how much is still over the budget.
fn drop_oldest_exchanges(messages: &mut Vec<Message>, over: usize) -> usize {
    let prompt = answered_prompt(messages);
    let note = ContentBlock::Text {
        text: EARLIER_NOTE.to_owned(),
    };
    let results = |m: &Message| -> usize {
        m.content
            .iter()
            .filter(|b| matches!(b, ContentBlock::ToolResult { .. }))
            .map(tokens)
            .sum()
    };
    let last = messages.len().saturating_sub(1);
    let furthest = match prompt == last && results(&messages[last]) > 0 {
        true => prompt.saturating_sub(1),
        false => prompt,
    };
    let mut cut = None;
    let mut before = 0;
    for (i, message) in messages.iter().enumerate().take(furthest + 1).skip(1) {
        before += message_tokens(&messages[i - 1]);
        let opens = message.role == Role::User
            && message
                .content
                .iter()
                .any(|b| matches!(b, ContentBlock::Text { .. }));
        if opens {
            let gone = before + results(message);
            cut = Some((i, gone));
            if gone >= over + tokens(&note) {
                break;
            }
        }
    }
    let Some((cut, gone)) = cut else {
        return over;
    };
    messages.drain(..cut);
    messages[0]
        .content
        .retain(|b| !matches!(b, ContentBlock::ToolResult { .. }));
    messages[0].content.insert(0, note.clone());
    (over + tokens(&note)).saturating_sub(gone)
}

/// Replaces the results the last message holds, largest first, by a note
/// while the conversation is over the budget by `over`; not when that
/// cannot bring it within (a prompt too long by itself, which the API
/// says).
fn cut_results_answered_now(messages: &mut [Message], mut over: usize) {
    let Some(last) = messages.last_mut() else {
        return;
    };
    let note = tokens(&ContentBlock::ToolResult {
        tool_use_id: String::new(),
        content: OUTPUT_NOTE.to_owned(),
        is_error: false,
    });
    let mut results: Vec<(usize, usize)> = last
        .content
        .iter()
        .enumerate()
        .filter(|(_, b)| matches!(b, ContentBlock::ToolResult { .. }))
        .map(|(i, b)| (tokens(b), i))
        .collect();
    let savings: usize = results.iter().map(|(t, _)| t.saturating_sub(note)).sum();
    if savings < over {
        return;
    }
    results.sort_unstable_by(|a, b| b.cmp(a));
    for (before, i) in results {
        if over == 0 {
            return;
        }
        if let ContentBlock::ToolResult { content, .. } = &mut last.content[i] {
            if content.len() > OUTPUT_NOTE.len() {
                *content = OUTPUT_NOTE.to_owned();
                over = over.saturating_sub(before - tokens(&last.content[i]));
            }
        }
    }
}

/// The prompt being answered: the last user message with a text.
fn answered_prompt(messages: &[Message]) -> usize {
    let last = messages.len().saturating_sub(1);
    messages
        .iter()
        .rposition(|m| {
            m.role == Role::User
                && m.content
                    .iter()
                    .any(|b| matches!(b, ContentBlock::Text { .. }))
        })
        .unwrap_or(last)
}

/// Replaces the oldest outputs, inputs and texts by notes, as the module
/// says; what is still over the budget, if anything.
fn notes_for_blocks(messages: &mut [Message], budget: usize) -> Option<usize> {
    let total: usize = messages.iter().map(message_tokens).sum();
    let mut over = total.checked_sub(budget).filter(|o| *o > 0)?;
    let last = messages.len().saturating_sub(1);
    let prompt = answered_prompt(messages);
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
                return None;
            }
            let before = tokens(block);
            match (pass, &mut *block) {
                (Pass::Outputs, ContentBlock::ToolResult { content, .. })
                    if content.len() > OUTPUT_NOTE.len() =>
                {
                    *content = OUTPUT_NOTE.to_owned();
                }
                // (The note that the earlier conversation went says more.)
                (Pass::Texts | Pass::Merged, ContentBlock::Text { text })
                    if text.len() > TEXT_NOTE.len() && text != EARLIER_NOTE =>
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
    (over > 0).then_some(over)
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

    /// Every call answered in the next message, and the conversation
    /// opening with a prompt.
    fn well_formed(messages: &[Message]) -> bool {
        let opens = messages.first().is_some_and(|m| {
            m.role == Role::User
                && !m
                    .content
                    .iter()
                    .any(|b| matches!(b, ContentBlock::ToolResult { .. }))
        });
        opens
            && messages.windows(2).all(|pair| {
                pair[0].content.iter().all(|b| match b {
                    ContentBlock::ToolUse { id, .. } => pair[1].content.iter().any(
                        |r| matches!(r, ContentBlock::ToolResult { tool_use_id, .. } if tool_use_id == id),
                    ),
                    _ => true,
                })
            })
    }

    #[test]
    fn thousands_of_small_calls_let_the_oldest_exchanges_go_whole() {
        let prompt = |n: usize| Message {
            role: Role::User,
            content: vec![ContentBlock::Text {
                text: format!("task {n}"),
            }],
        };
        let mut messages = Vec::new();
        // 5,000 calls of small outputs, a prompt every ten: the notes
        // alone would be over the budget.
        for n in 0..500 {
            messages.push(prompt(n));
            for i in 0..10 {
                let id = format!("{n}-{i}");
                messages.push(call(&id));
                messages.push(result(&id, 200));
            }
            messages.push(Message {
                role: Role::Assistant,
                content: vec![ContentBlock::Text {
                    text: "done".into(),
                }],
            });
        }
        messages.push(prompt(500));
        fit(&mut messages, BUDGET_TOKENS);
        assert!(size(&messages) <= BUDGET_TOKENS, "{}", size(&messages));
        assert!(well_formed(&messages));
        assert!(
            matches!(&messages[0].content[0], ContentBlock::Text { text } if text == EARLIER_NOTE),
            "{:?}",
            messages[0]
        );
        assert!(
            matches!(&messages.last().unwrap().content[0], ContentBlock::Text { text } if text == "task 500")
        );
        assert!(messages.len() > 100, "only as much as needed goes");
    }

    #[test]
    fn prompts_merged_into_results_are_where_exchanges_go_from() {
        // Runs that each ended after their results (their turns used up),
        // each prompt after merged into them: 3,000 of them.
        let mut messages = vec![Message {
            role: Role::User,
            content: vec![ContentBlock::Text { text: "go".into() }],
        }];
        for i in 0..3000 {
            let id = i.to_string();
            messages.push(call(&id));
            let mut answered = result(&id, 100);
            answered.content.push(ContentBlock::Text {
                text: "continue".into(),
            });
            messages.push(answered);
        }
        fit(&mut messages, BUDGET_TOKENS);
        assert!(size(&messages) <= BUDGET_TOKENS, "{}", size(&messages));
        assert!(well_formed(&messages), "{:?}", &messages[..2]);
        assert!(
            matches!(&messages[0].content[0], ContentBlock::Text { text } if text == EARLIER_NOTE)
        );
        let last = messages.last().unwrap();
        assert!(
            matches!(&last.content[0], ContentBlock::ToolResult { tool_use_id, content, .. } if tool_use_id == "2999" && content.len() == 100),
            "the results answered now stay: {last:?}"
        );
    }

    #[test]
    fn results_left_by_a_failed_run_are_cut_largest_first_with_the_next_prompt() {
        // Thirty calls at once, each of 32 KiB: the results (about 250k
        // tokens) are the last message, with the prompt sent after the run
        // failed on them merged in.
        let calls: Vec<ContentBlock> = (0..30)
            .map(|i| ContentBlock::ToolUse {
                id: i.to_string(),
                name: "read_file".into(),
                input: serde_json::json!({"path": format!("{i}.txt")}),
            })
            .collect();
        let mut results: Vec<ContentBlock> = (0..30)
            .map(|i| ContentBlock::ToolResult {
                tool_use_id: i.to_string(),
                content: "r".repeat(if i == 7 { 40 * 1024 } else { 32 * 1024 }),
                is_error: false,
            })
            .collect();
        results.push(ContentBlock::Text {
            text: "try again with less".into(),
        });
        let mut messages = vec![
            Message {
                role: Role::User,
                content: vec![ContentBlock::Text {
                    text: "read them all".into(),
                }],
            },
            Message {
                role: Role::Assistant,
                content: calls,
            },
            Message {
                role: Role::User,
                content: results,
            },
        ];
        fit(&mut messages, BUDGET_TOKENS);
        assert!(size(&messages) <= BUDGET_TOKENS, "{}", size(&messages));
        assert!(well_formed(&messages));
        let outputs: Vec<usize> = messages[2]
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolResult { content, .. } => Some(content.len()),
                _ => None,
            })
            .collect();
        assert_eq!(outputs[7], OUTPUT_NOTE.len(), "the largest went first");
        assert!(outputs.contains(&(32 * 1024)), "only as many as needed");
        assert!(
            matches!(messages[2].content.last(), Some(ContentBlock::Text { text }) if text == "try again with less")
        );
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
