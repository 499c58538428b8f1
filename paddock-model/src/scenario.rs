//! The scenario file format: what the scripted model answers, turn by turn.
//!
//! Files are parsed strictly (unknown keys are errors) because a typo in a
//! scenario would otherwise silently turn into a default and make a test pass
//! or fail for the wrong reason. See the [module docs](super) for the format.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scenario is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("scenario turn {index}: {message}")]
    Turn { index: usize, message: String },
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// An ordered list of turns; each `POST /v1/messages` consumes the next one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    pub turns: Vec<Turn>,
}

impl Scenario {
    /// Reads and parses a scenario file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Parses a scenario: either a JSON array of turns or an object with a
    /// `turns` array (and optionally `name` / `description`, ignored).
    pub fn from_json(text: &str) -> Result<Self, ScenarioError> {
        let value: Value = serde_json::from_str(text)?;
        let turns = match value {
            Value::Array(turns) => turns,
            Value::Object(mut map) => {
                for key in map.keys() {
                    if !matches!(key.as_str(), "turns" | "name" | "description") {
                        return Err(ScenarioError::Invalid(format!(
                            "unknown key `{key}` (expected `turns`, `name`, `description`)"
                        )));
                    }
                }
                match map.remove("turns") {
                    Some(Value::Array(turns)) => turns,
                    _ => {
                        return Err(ScenarioError::Invalid(
                            "`turns` must be an array of turns".into(),
                        ))
                    }
                }
            }
            _ => {
                return Err(ScenarioError::Invalid(
                    "expected an array of turns or an object with `turns`".into(),
                ))
            }
        };
        let turns = turns
            .into_iter()
            .enumerate()
            .map(|(index, turn)| {
                serde_json::from_value(turn).map_err(|e| ScenarioError::Turn {
                    index,
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<Turn>, _>>()?;
        Ok(Self { turns })
    }
}

/// One scripted answer, and what the request that gets it must look like.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawTurn")]
pub struct Turn {
    pub expect: Expect,
    pub action: Action,
}

/// What the server does with the request that consumes a turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Reply(Reply),
    Error(HttpError),
}

/// A successful assistant message, streamed or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub content: Vec<Block>,
    /// Defaults to `tool_use` when a tool_use block is present, else `end_turn`.
    pub stop_reason: Option<String>,
    pub usage: Option<Usage>,
    /// Pause between two SSE events.
    pub delay_ms: u64,
    /// Size (in characters) of each text / thinking / partial_json delta.
    pub chunk: usize,
    /// Break the stream with an `error` event part-way through.
    pub stream_error: Option<StreamError>,
}

/// Default delta size: small enough that every non-trivial tool input is
/// split into several `partial_json` pieces, as the real API does.
pub const DEFAULT_CHUNK: usize = 16;

/// One content block of a reply, written `{"text": ".."}`, `{"thinking": ".."}`
/// or `{"tool_use": {"name": .., "input": {..}, "id": ..}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Block {
    Text(String),
    Thinking(String),
    ToolUse(ToolUse),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolUse {
    pub name: String,
    #[serde(default = "empty_object")]
    pub input: Value,
    /// Generated (`toolu_…`) when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Streams only this many characters of the input's JSON, as an answer
    /// its token limit cut off mid-call does (the turn's `stop_reason` must
    /// then be `max_tokens`, and the block the last).
    #[serde(default)]
    pub cut_at: Option<usize>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Token counts to report; each defaults to a rough count (characters / 4).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// An `event: error` sent after `after` SSE events (counting `message_start`
/// and `ping`); the stream then ends without `message_stop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamError {
    /// Defaults to half of the reply's events.
    #[serde(default)]
    pub after: Option<usize>,
    #[serde(rename = "type", default = "overloaded")]
    pub kind: String,
    #[serde(default = "overloaded_message")]
    pub message: String,
}

fn overloaded() -> String {
    "overloaded_error".into()
}

fn overloaded_message() -> String {
    "Overloaded".into()
}

/// An HTTP error answer with the Anthropic error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpError {
    pub status: u16,
    /// Defaults from the status (429 → `rate_limit_error`, 529 →
    /// `overloaded_error`, …).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// Seconds for the `retry-after` header; a 429 always gets one (default 1).
    #[serde(default)]
    pub retry_after: Option<u64>,
}

impl HttpError {
    /// The error `type` for the body.
    pub fn kind(&self) -> String {
        self.kind
            .clone()
            .unwrap_or_else(|| default_error_type(self.status).to_owned())
    }

    pub fn message(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| default_error_message(&self.kind()).to_owned())
    }

    /// The `retry-after` header value, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
            .or(if self.status == 429 { Some(1) } else { None })
    }
}

/// The error type the real API uses for a status.
pub fn default_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn default_error_message(kind: &str) -> &'static str {
    match kind {
        "invalid_request_error" => "Invalid request",
        "authentication_error" => "invalid x-api-key",
        "permission_error" => "Permission denied",
        "not_found_error" => "Not found",
        "request_too_large" => "Request exceeds the maximum allowed number of bytes.",
        "rate_limit_error" => "Number of request tokens has exceeded your rate limit.",
        "overloaded_error" => "Overloaded",
        _ => "Internal server error",
    }
}

/// Checks made against the request before the turn answers it; a mismatch is
/// a 400 `invalid_request_error` naming what was missing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Each must appear in some string of the request's `messages`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub contains: Vec<String>,
    /// Each must be the name of a tool the request declares.
    #[serde(default, deserialize_with = "one_or_many")]
    pub tools: Vec<String>,
    /// Each must appear in the request's `system` prompt.
    #[serde(default, deserialize_with = "one_or_many")]
    pub system_contains: Vec<String>,
    /// Each must appear in a `tool_result` block of the last user message.
    #[serde(default, deserialize_with = "one_or_many")]
    pub tool_result_contains: Vec<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    // Not an untagged enum: its "did not match any variant" says nothing.
    match Value::deserialize(d)? {
        Value::String(s) => Ok(vec![s]),
        other => serde_json::from_value(other)
            .map_err(|_| serde::de::Error::custom("expected a string or an array of strings")),
    }
}

/// The turn as written; [`Turn`] is what it means once checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTurn {
    /// A string (one text block) or an array of blocks.
    reply: Option<Value>,
    error: Option<HttpError>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
    delay_ms: Option<u64>,
    chunk: Option<usize>,
    stream_error: Option<StreamError>,
    #[serde(default)]
    expect: Expect,
}

const STOP_REASONS: &[&str] = &[
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "pause_turn",
    "refusal",
];

impl TryFrom<RawTurn> for Turn {
    type Error = String;

    fn try_from(raw: RawTurn) -> Result<Self, String> {
        let action = match (raw.reply, raw.error) {
            (Some(_), Some(_)) => {
                return Err("a turn has either `reply` or `error`, not both".into())
            }
            (None, None) => return Err("a turn needs `reply` or `error`".into()),
            (None, Some(error)) => {
                if raw.stop_reason.is_some()
                    || raw.usage.is_some()
                    || raw.delay_ms.is_some()
                    || raw.chunk.is_some()
                    || raw.stream_error.is_some()
                {
                    return Err("an `error` turn takes only `error` and `expect`".into());
                }
                if !(400..=599).contains(&error.status) {
                    return Err(format!(
                        "error status {} is not an HTTP error (400-599)",
                        error.status
                    ));
                }
                Action::Error(error)
            }
            (Some(content), None) => {
                let content = match content {
                    Value::String(text) => vec![Block::Text(text)],
                    blocks @ Value::Array(_) => serde_json::from_value::<Vec<Block>>(blocks)
                        .map_err(|e| format!("reply: {e}"))?,
                    _ => return Err("`reply` must be a string or an array of blocks".into()),
                };
                for (i, block) in content.iter().enumerate() {
                    if let Block::ToolUse(tool) = block {
                        if tool.name.is_empty() {
                            return Err("a tool_use block needs a `name`".into());
                        }
                        let cut_short = raw.stop_reason.as_deref() == Some("max_tokens")
                            && i + 1 == content.len();
                        if tool.cut_at.is_some() && !cut_short {
                            return Err(format!(
                                "tool_use `{}`: `cut_at` is for the last block of a reply whose \
                                 stop_reason is max_tokens",
                                tool.name
                            ));
                        }
                        if !tool.input.is_object() {
                            return Err(format!(
                                "tool_use `{}`: `input` must be a JSON object",
                                tool.name
                            ));
                        }
                    }
                }
                if let Some(reason) = &raw.stop_reason {
                    if !STOP_REASONS.contains(&reason.as_str()) {
                        return Err(format!(
                            "unknown stop_reason `{reason}` (one of {})",
                            STOP_REASONS.join(", ")
                        ));
                    }
                }
                let chunk = raw.chunk.unwrap_or(DEFAULT_CHUNK);
                if chunk == 0 {
                    return Err("`chunk` must be at least 1".into());
                }
                Action::Reply(Reply {
                    content,
                    stop_reason: raw.stop_reason,
                    usage: raw.usage,
                    delay_ms: raw.delay_ms.unwrap_or(0),
                    chunk,
                    stream_error: raw.stream_error,
                })
            }
        };
        Ok(Turn {
            expect: raw.expect,
            action,
        })
    }
}

impl Reply {
    /// The stop reason sent: the scripted one, else `tool_use` when the reply
    /// uses a tool, else `end_turn`.
    pub fn stop_reason(&self) -> &str {
        match &self.stop_reason {
            Some(reason) => reason,
            None if self.tool_uses().next().is_some() => "tool_use",
            None => "end_turn",
        }
    }

    pub fn tool_uses(&self) -> impl Iterator<Item = &ToolUse> {
        self.content.iter().filter_map(|b| match b {
            Block::ToolUse(t) => Some(t),
            _ => None,
        })
    }
}
