//! The bytes on the wire: the Message JSON, the SSE event sequence and the
//! error bodies, shaped exactly like the Messages API's so that clients (the
//! Claude Code CLI, the SDKs, Paddock's own engine) cannot tell the
//! difference.

use super::scenario::{Block, Reply};
use super::validate::collect_strings;
use bytes::Bytes;
use serde_json::{json, Value};

/// A reply with everything the script left open decided: ids, signatures and
/// token counts. Streamed and non-streamed answers are both rendered from it,
/// so they always agree.
pub struct Resolved {
    pub id: String,
    pub model: String,
    /// Full content blocks, as in a non-streamed Message.
    pub blocks: Vec<Value>,
    pub stop_reason: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub chunk: usize,
    /// Characters of the last block's input JSON streamed before the answer
    /// stops, when its token limit cut it off there.
    pub cut_at: Option<usize>,
}

/// Generated ids look like the real ones (`msg_…`, `toolu_…`, `req_…`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A rough token count: a quarter of the characters of every string in the
/// values, at least 1.
pub fn rough_tokens<'a>(values: impl IntoIterator<Item = &'a Value>) -> u64 {
    let mut text = String::new();
    for value in values {
        collect_strings(value, &mut text);
    }
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// The request parts that count as input: system prompt, messages, tools.
pub fn request_tokens(body: &Value) -> u64 {
    rough_tokens(
        ["system", "messages", "tools"]
            .iter()
            .filter_map(|k| body.get(*k)),
    )
}

impl Resolved {
    pub fn new(reply: &Reply, request: &Value) -> Self {
        let blocks: Vec<Value> = reply
            .content
            .iter()
            .map(|block| match block {
                Block::Text(text) => json!({"type": "text", "text": text}),
                Block::Thinking(thinking) => json!({
                    "type": "thinking",
                    "thinking": thinking,
                    "signature": format!("scripted-signature-{}", uuid::Uuid::now_v7().simple()),
                }),
                Block::ToolUse(tool) => json!({
                    "type": "tool_use",
                    "id": tool.id.clone().unwrap_or_else(|| new_id("toolu")),
                    "name": tool.name,
                    "input": tool.input,
                }),
            })
            .collect();
        let usage = reply.usage.unwrap_or_default();
        let output_tokens = usage.output_tokens.unwrap_or_else(|| {
            // Tool inputs count as their JSON text, as the model writes them.
            let texts: Vec<Value> = blocks
                .iter()
                .map(|b| match b["type"].as_str() {
                    Some("tool_use") => Value::String(b["input"].to_string()),
                    Some("thinking") => b["thinking"].clone(),
                    _ => b["text"].clone(),
                })
                .collect();
            rough_tokens(&texts)
        });
        Self {
            id: new_id("msg"),
            model: request["model"].as_str().unwrap_or_default().to_owned(),
            blocks,
            stop_reason: reply.stop_reason().to_owned(),
            input_tokens: usage
                .input_tokens
                .unwrap_or_else(|| request_tokens(request)),
            output_tokens,
            chunk: reply.chunk,
            cut_at: reply.tool_uses().find_map(|t| t.cut_at),
        }
    }

    fn usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        })
    }

    /// The non-streamed answer.
    pub fn message(&self) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.blocks,
            "stop_reason": self.stop_reason,
            "stop_sequence": null,
            "usage": self.usage(self.output_tokens),
        })
    }

    /// The streamed answer, one JSON object per SSE event, in order.
    pub fn events(&self) -> Vec<Value> {
        let mut events = vec![
            json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": self.usage(1),
                },
            }),
            json!({"type": "ping"}),
        ];
        for (index, block) in self.blocks.iter().enumerate() {
            let (start, deltas) = match block["type"].as_str() {
                Some("thinking") => {
                    let text = block["thinking"].as_str().unwrap_or_default();
                    let mut deltas: Vec<Value> = chunks(text, self.chunk)
                        .into_iter()
                        .map(|t| json!({"type": "thinking_delta", "thinking": t}))
                        .collect();
                    deltas.push(json!({
                        "type": "signature_delta",
                        "signature": block["signature"],
                    }));
                    (
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        deltas,
                    )
                }
                Some("tool_use") => {
                    let mut input = block["input"].to_string();
                    if let Some(cut) = self.cut_at.filter(|_| index + 1 == self.blocks.len()) {
                        input = input.chars().take(cut).collect();
                    }
                    let deltas = chunks(&input, self.chunk)
                        .into_iter()
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                        .collect();
                    (
                        json!({
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        }),
                        deltas,
                    )
                }
                _ => {
                    let text = block["text"].as_str().unwrap_or_default();
                    let deltas = chunks(text, self.chunk)
                        .into_iter()
                        .map(|t| json!({"type": "text_delta", "text": t}))
                        .collect();
                    (json!({"type": "text", "text": ""}), deltas)
                }
            };
            events.push(json!({
                "type": "content_block_start",
                "index": index,
                "content_block": start,
            }));
            for delta in deltas {
                events.push(json!({
                    "type": "content_block_delta",
                    "index": index,
                    "delta": delta,
                }));
            }
            events.push(json!({"type": "content_block_stop", "index": index}));
        }
        events.push(json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": self.output_tokens},
        }));
        events.push(json!({"type": "message_stop"}));
        events
    }
}

/// Splits `text` into pieces of at most `size` characters (never inside a
/// character); an empty text is one empty piece, so every block gets a delta.
pub fn chunks(text: &str, size: usize) -> Vec<String> {
    let size = size.max(1);
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// One SSE frame: `event: <type>\ndata: <json>\n\n`, the event name taken
/// from the JSON `type` so the two can never disagree.
pub fn frame(event: &Value) -> Bytes {
    let name = event["type"].as_str().unwrap_or("message");
    Bytes::from(format!("event: {name}\ndata: {event}\n\n"))
}

/// The Anthropic error body.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}
