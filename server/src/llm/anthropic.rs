//! The Anthropic Messages API over HTTP: streaming SSE parsed with
//! `eventsource-stream`, bounded retries with exponential backoff and jitter
//! on 429/529/`overloaded_error`, a per-request timeout, and errors a user can
//! act on (a refused key, a bad request). Works against any endpoint that
//! speaks the API (`ANTHROPIC_BASE_URL`: gateways, the scripted model server).

use super::{
    ContentBlock, DeltaSink, LlmCredential, LlmError, Provider, Request, Response, StreamDelta,
    Usage, REFUSAL,
};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use rand::Rng;
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";

#[derive(Clone, Debug)]
pub struct AnthropicConfig {
    pub base_url: String,
    /// How long a call may go without a byte: until its answer starts, and
    /// between the pieces of a streaming answer.
    pub timeout: Duration,
    /// Further attempts after a retryable failure.
    pub max_retries: u32,
    /// First backoff; doubles each retry, with ±50 % jitter.
    pub backoff: Duration,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            timeout: Duration::from_secs(120),
            max_retries: 4,
            backoff: Duration::from_millis(500),
        }
    }
}

pub struct Anthropic {
    http: reqwest::Client,
    config: AnthropicConfig,
}

impl Anthropic {
    pub fn new(config: AnthropicConfig) -> Result<Self, LlmError> {
        // No redirect followed: one to another host would carry the key
        // there (only `Authorization` is taken off on the way).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        Ok(Self { http, config })
    }

    fn backoff(&self, attempt: u32, error: &LlmError) -> Duration {
        if let LlmError::RateLimited {
            retry_after: Some(secs),
            ..
        } = error
        {
            return Duration::from_secs((*secs).min(60));
        }
        let base = self.config.backoff.as_secs_f64() * 2f64.powi(attempt as i32);
        let jitter = rand::rng().random_range(0.5..1.5);
        Duration::from_secs_f64((base * jitter).min(30.0))
    }

    /// One call; what the answer used so far is in `used` however the
    /// call ends (cut off, failed, or dropped when its run stopped).
    async fn attempt(
        &self,
        credential: Option<&LlmCredential>,
        request: &Request,
        on_delta: DeltaSink<'_>,
        used: &mut Usage,
    ) -> Result<Response, LlmError> {
        let url = format!("{}/v1/messages", self.config.base_url.trim_end_matches('/'));
        let mut body =
            serde_json::to_value(request).map_err(|e| LlmError::Protocol(e.to_string()))?;
        body["stream"] = Value::Bool(true);
        let mut req = self
            .http
            .post(url)
            .header("anthropic-version", API_VERSION)
            .header("accept", "text/event-stream")
            .json(&body);
        if let Some((name, value)) = credential.and_then(LlmCredential::header) {
            req = req.header(name, value);
        }
        // The timeout is of silence, not of the whole call: a long answer
        // streams for minutes, each piece soon after the last.
        let limit = self.config.timeout;
        let silent = || LlmError::Timeout(limit.as_secs());
        let res = tokio::time::timeout(limit, req.send())
            .await
            .map_err(|_| silent())?
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        let status = res.status().as_u16();
        if status != 200 {
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let text = tokio::time::timeout(limit, res.text())
                .await
                .map_err(|_| silent())?
                .unwrap_or_default();
            return Err(http_error(status, &text, retry_after));
        }
        let mut events = res.bytes_stream().eventsource();
        let mut assembly = Assembly::default();
        while let Some(event) = tokio::time::timeout(limit, events.next())
            .await
            .map_err(|_| silent())?
        {
            let event = event.map_err(|e| LlmError::Transport(e.to_string()))?;
            let data: Value = match serde_json::from_str(&event.data) {
                Ok(data) => data,
                // A `ping`, a gateway's keep-alive, a type added since:
                // nothing is read of them, so they need not be JSON.
                Err(_) if !Assembly::READ.contains(&event.event.as_str()) => continue,
                Err(e) => return Err(LlmError::Protocol(format!("{} event: {e}", event.event))),
            };
            let done = assembly.apply(&event.event, &data, on_delta);
            *used = assembly.usage;
            if done? {
                return assembly.finish();
            }
        }
        Err(LlmError::Transport(
            "the stream ended before message_stop".into(),
        ))
    }
}

#[async_trait::async_trait]
impl Provider for Anthropic {
    #[tracing::instrument(skip_all, fields(model = %request.model))]
    async fn stream(
        &self,
        credential: Option<&LlmCredential>,
        request: &Request,
        cancel: &CancellationToken,
        on_delta: DeltaSink<'_>,
        spent: &mut Usage,
    ) -> Result<Response, LlmError> {
        let mut attempt = 0;
        loop {
            let started = std::time::Instant::now();
            let mut used = Usage::default();
            let result = tokio::select! {
                () = cancel.cancelled() => None,
                r = self.attempt(credential, request, &mut *on_delta, &mut used) => Some(r),
            };
            // Billed whatever came of it: a failed or cut call too.
            spent.input_tokens += used.input_tokens;
            spent.output_tokens += used.output_tokens;
            let Some(result) = result else {
                return Err(LlmError::Cancelled);
            };
            let failure = result.as_ref().err().map(LlmError::kind);
            crate::metrics::model_call(&request.model, started.elapsed(), failure);
            match result {
                Err(e) if e.retryable() && attempt < self.config.max_retries => {
                    let wait = self.backoff(attempt, &e);
                    attempt += 1;
                    tracing::warn!("model call failed ({e}); retry {attempt} in {wait:?}");
                    on_delta(StreamDelta::Restart {
                        attempt,
                        reason: e.to_string(),
                    });
                    tokio::select! {
                        () = cancel.cancelled() => return Err(LlmError::Cancelled),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                other => return other,
            }
        }
    }
}

/// Maps an HTTP error answer (Anthropic's `{"type":"error","error":{…}}`).
fn http_error(status: u16, body: &str, retry_after: Option<u64>) -> LlmError {
    let parsed: Option<(String, String)> = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let e = v.get("error")?;
        Some((
            e.get("type")?.as_str()?.to_owned(),
            e.get("message")?.as_str()?.to_owned(),
        ))
    });
    let (kind, message) =
        parsed.unwrap_or_else(|| (String::new(), body.chars().take(500).collect()));
    match (status, kind.as_str()) {
        (401, _) | (_, "authentication_error") => LlmError::Auth(message),
        (429, _) | (_, "rate_limit_error") => LlmError::RateLimited {
            message,
            retry_after,
        },
        (529, _) | (_, "overloaded_error") => LlmError::Overloaded(message),
        (400, _) | (_, "invalid_request_error") => LlmError::InvalidRequest(message),
        _ => LlmError::Api { status, message },
    }
}

/// Builds the response from stream events, in the order the API sends them.
#[derive(Default)]
struct Assembly {
    id: String,
    blocks: Vec<Option<Block>>,
    stop_reason: Option<String>,
    /// A refusal's explanation (`stop_details`), when the API gives one.
    explanation: Option<String>,
    usage: Usage,
    /// Bytes the model wrote so far (text, thinking, tool input; not a
    /// signature): the output counted until the answer says its own (a
    /// cut answer never does).
    streamed: usize,
}

enum Block {
    Text(String),
    Thinking {
        text: String,
        signature: String,
    },
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
    /// A block type Paddock does not use (e.g. server tools): kept out.
    Other,
}

fn field<'a>(data: &'a Value, name: &str) -> Result<&'a Value, LlmError> {
    data.get(name)
        .ok_or_else(|| LlmError::Protocol(format!("missing {name:?} in {data}")))
}

fn index(data: &Value) -> Result<usize, LlmError> {
    field(data, "index")?
        .as_u64()
        .map(|i| i as usize)
        .ok_or_else(|| LlmError::Protocol("bad block index".into()))
}

fn text(v: &Value, name: &str) -> String {
    v.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Blocks an answer may open past the ones it has: its blocks come in
/// order, and an index far ahead would have room made for it.
const BLOCKS_AHEAD_MAX: usize = 64;

impl Assembly {
    /// The events [`Self::apply`] reads.
    const READ: [&'static str; 7] = [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    ];

    /// Applies one event; `true` once the message is complete.
    fn apply(
        &mut self,
        event: &str,
        data: &Value,
        on_delta: DeltaSink<'_>,
    ) -> Result<bool, LlmError> {
        match event {
            "message_start" => {
                let message = field(data, "message")?;
                self.id = text(message, "id");
                if let Some(u) = message.get("usage") {
                    self.usage.input_tokens =
                        u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0);
                    self.usage.output_tokens =
                        u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
                }
            }
            "content_block_start" => {
                let i = index(data)?;
                if i >= self.blocks.len() + BLOCKS_AHEAD_MAX {
                    return Err(LlmError::Protocol(format!(
                        "block {i} opened after {} blocks",
                        self.blocks.len()
                    )));
                }
                let block = field(data, "content_block")?;
                let b = match block.get("type").and_then(Value::as_str) {
                    Some("text") => Block::Text(text(block, "text")),
                    Some("thinking") => Block::Thinking {
                        text: text(block, "thinking"),
                        signature: text(block, "signature"),
                    },
                    Some("tool_use") => Block::ToolUse {
                        id: text(block, "id"),
                        name: text(block, "name"),
                        json: String::new(),
                    },
                    _ => Block::Other,
                };
                if self.blocks.len() <= i {
                    self.blocks.resize_with(i + 1, || None);
                }
                self.blocks[i] = Some(b);
            }
            "content_block_delta" => {
                let i = index(data)?;
                let delta = field(data, "delta")?;
                let block = self
                    .blocks
                    .get_mut(i)
                    .and_then(Option::as_mut)
                    .ok_or_else(|| LlmError::Protocol(format!("delta for unknown block {i}")))?;
                match (delta.get("type").and_then(Value::as_str), block) {
                    (Some("text_delta"), Block::Text(t)) => {
                        let piece = text(delta, "text");
                        self.streamed += piece.len();
                        t.push_str(&piece);
                        on_delta(StreamDelta::Text {
                            block: i,
                            text: piece,
                        });
                    }
                    (Some("thinking_delta"), Block::Thinking { text: t, .. }) => {
                        let piece = text(delta, "thinking");
                        self.streamed += piece.len();
                        t.push_str(&piece);
                        on_delta(StreamDelta::Thinking {
                            block: i,
                            text: piece,
                        });
                    }
                    (Some("signature_delta"), Block::Thinking { signature, .. }) => {
                        signature.push_str(&text(delta, "signature"));
                    }
                    (Some("input_json_delta"), Block::ToolUse { json, .. }) => {
                        let piece = text(delta, "partial_json");
                        self.streamed += piece.len();
                        json.push_str(&piece);
                        on_delta(StreamDelta::ToolInput {
                            block: i,
                            partial_json: piece,
                        });
                    }
                    // citations and future delta kinds: nothing to assemble.
                    _ => {}
                }
                self.usage.output_tokens = self
                    .usage
                    .output_tokens
                    .max(super::rough_tokens(self.streamed));
            }
            "content_block_stop" => {
                index(data)?;
            }
            "message_delta" => {
                if let Some(reason) = data
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(explanation) = data
                    .get("delta")
                    .and_then(|d| d.get("stop_details"))
                    .and_then(|d| d.get("explanation"))
                    .and_then(Value::as_str)
                {
                    self.explanation = Some(explanation.to_owned());
                }
                // Usage here is cumulative: take it as it is. (A count of
                // 0 says nothing new: a gateway may send it in the last
                // usage for what the first one counted, as the credential
                // proxy's meter reads it too.)
                if let Some(u) = data.get("usage") {
                    let said = |name| u.get(name).and_then(Value::as_u64).filter(|n| *n > 0);
                    if let Some(n) = said("output_tokens") {
                        self.usage.output_tokens = n;
                    }
                    if let Some(n) = said("input_tokens") {
                        self.usage.input_tokens = n;
                    }
                }
            }
            "message_stop" => return Ok(true),
            "error" => {
                let e = data.get("error").unwrap_or(data);
                let message = text(e, "message");
                return Err(match e.get("type").and_then(Value::as_str) {
                    Some("overloaded_error") => LlmError::Overloaded(message),
                    Some("rate_limit_error") => LlmError::RateLimited {
                        message,
                        retry_after: None,
                    },
                    Some("invalid_request_error") => LlmError::InvalidRequest(message),
                    Some("authentication_error") => LlmError::Auth(message),
                    _ => LlmError::Api {
                        status: 500,
                        message,
                    },
                });
            }
            // `ping` and event types added after this was written.
            _ => {}
        }
        Ok(false)
    }

    fn finish(self) -> Result<Response, LlmError> {
        let mut content = Vec::new();
        let mut cut_off = None;
        // A refused answer is not kept (nor its last block read: it may
        // stop in the middle of a tool call's input).
        if self.stop_reason.as_deref() == Some(REFUSAL) {
            return Ok(Response {
                id: self.id,
                content,
                stop_reason: self.stop_reason,
                explanation: self.explanation,
                usage: self.usage,
                cut_off,
            });
        }
        // The block the answer's token limit stopped in (or the context
        // window's, which newer models fill rather than refuse): a tool
        // call there is kept, to be answered, not run, whatever its input
        // reads like so far.
        let stopped_in = match self.stop_reason.as_deref() {
            Some("max_tokens" | "model_context_window_exceeded") => {
                self.blocks.iter().flatten().count().checked_sub(1)
            }
            _ => None,
        };
        for (i, block) in self.blocks.into_iter().flatten().enumerate() {
            content.push(match block {
                Block::Text(text) => ContentBlock::Text { text },
                Block::Thinking { text, signature } => ContentBlock::Thinking {
                    thinking: text,
                    signature,
                },
                Block::ToolUse { id, name, .. } if stopped_in == Some(i) => {
                    cut_off = Some(id.clone());
                    let input = Value::Object(Default::default());
                    ContentBlock::ToolUse { id, name, input }
                }
                Block::ToolUse { id, name, json } => {
                    // A tool without input may stream nothing at all.
                    let input = if json.trim().is_empty() {
                        Value::Object(Default::default())
                    } else {
                        serde_json::from_str(&json).map_err(|e| {
                            LlmError::Protocol(format!("tool input of {name} is not JSON: {e}"))
                        })?
                    };
                    if depth(&input) > TOOL_INPUT_DEPTH_MAX {
                        return Err(LlmError::Protocol(format!(
                            "tool input of {name} is nested deeper than {TOOL_INPUT_DEPTH_MAX} \
                             levels"
                        )));
                    }
                    ContentBlock::ToolUse { id, name, input }
                }
                Block::Other => continue,
            });
        }
        Ok(Response {
            id: self.id,
            content,
            stop_reason: self.stop_reason,
            explanation: None,
            usage: self.usage,
            cut_off,
        })
    }
}

/// How deep a tool's input may nest. The transcript stores it inside an
/// event, a level or two deeper, and JSON is read back at most 128 levels
/// deep: an input that nested as deep as it could be read here (a model
/// led on by what it read) would leave an event no one could read, and
/// with it the session's transcript.
const TOOL_INPUT_DEPTH_MAX: usize = 64;

/// How deep `value` nests: 0 for a scalar, 1 for a flat array or object.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_input_nested_past_what_a_transcript_reads_back_is_refused() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let input = |levels: usize| format!(r#"{{"path": {}}}"#, nested(levels - 1));
        assert!(answer(vec![call("t1", &input(TOOL_INPUT_DEPTH_MAX))], "tool_use").is_ok());
        let deep = answer(vec![call("t1", &input(127))], "tool_use");
        assert!(
            matches!(&deep, Err(LlmError::Protocol(m)) if m.contains("nested deeper")),
            "{deep:?}"
        );
    }

    fn answer(blocks: Vec<Block>, stop_reason: &str) -> Result<Response, LlmError> {
        Assembly {
            id: "msg_1".into(),
            blocks: blocks.into_iter().map(Some).collect(),
            stop_reason: Some(stop_reason.into()),
            ..Default::default()
        }
        .finish()
    }

    fn call(id: &str, json: &str) -> Block {
        Block::ToolUse {
            id: id.into(),
            name: "write_file".into(),
            json: json.into(),
        }
    }

    #[test]
    fn a_final_usage_of_zero_keeps_what_was_counted() {
        let mut answer = Assembly::default();
        let sink = &mut |_| {};
        let start = serde_json::json!({"message": {"id": "msg_1", "usage": {"input_tokens": 1200, "output_tokens": 1}}});
        answer.apply("message_start", &start, sink).unwrap();
        let end = serde_json::json!({"delta": {"stop_reason": "end_turn"}, "usage": {"input_tokens": 0, "output_tokens": 40}});
        answer.apply("message_delta", &end, sink).unwrap();
        assert_eq!(
            answer.usage,
            Usage {
                input_tokens: 1200,
                output_tokens: 40
            }
        );
    }

    #[test]
    fn a_block_far_past_the_others_is_refused() {
        for index in [BLOCKS_AHEAD_MAX as u64, 1 << 40, u64::MAX] {
            let mut answer = Assembly::default();
            let block =
                serde_json::json!({"index": index, "content_block": {"type": "text", "text": ""}});
            let opened = answer.apply("content_block_start", &block, &mut |_| {});
            assert!(matches!(opened, Err(LlmError::Protocol(_))), "{index}");
        }
        let mut answer = Assembly::default();
        let block = serde_json::json!({"index": 3, "content_block": {"type": "text", "text": ""}});
        assert!(answer
            .apply("content_block_start", &block, &mut |_| {})
            .is_ok());
    }

    #[test]
    fn the_call_the_output_limit_stopped_in_is_cut_off_whatever_it_reads_like() {
        let stops = ["max_tokens", "model_context_window_exceeded"];
        for (json, stop) in ["", "{}", r#"{"path": "a"}"#, r#"{"path": "a", "cont"#]
            .into_iter()
            .flat_map(|json| stops.map(|stop| (json, stop)))
        {
            let done =
                answer(vec![call("t1", r#"{"path": "x"}"#), call("t2", json)], stop).unwrap();
            assert_eq!(done.cut_off.as_deref(), Some("t2"), "{json} {stop}");
            assert!(
                matches!(&done.content[1], ContentBlock::ToolUse { input, .. } if input == &serde_json::json!({}))
            );
            assert!(
                matches!(&done.content[0], ContentBlock::ToolUse { input, .. } if input["path"] == "x")
            );
        }
        // Stopped in a text: no call is cut.
        let text = answer(
            vec![call("t1", "{}"), Block::Text("and".into())],
            "max_tokens",
        )
        .unwrap();
        assert_eq!(text.cut_off, None);
        // A broken input before it is still a broken answer.
        assert!(answer(vec![call("t1", "{"), call("t2", "{}")], "max_tokens").is_err());
        assert!(answer(vec![call("t1", "{")], "tool_use").is_err());
        // A refusal in the middle of a call: nothing of it kept.
        let refused = answer(
            vec![Block::Text("Sure, here".into()), call("t1", "{\"co")],
            "refusal",
        )
        .unwrap();
        assert!(refused.content.is_empty());
    }
}
