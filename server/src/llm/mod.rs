//! Talking to the model: the Messages API types Paddock uses, a provider
//! trait so other endpoints (OpenAI-compatible servers such as Ollama or vLLM)
//! can be added beside Anthropic's, and the per-model price table.

mod anthropic;
mod pricing;

pub use anthropic::{Anthropic, AnthropicConfig, DEFAULT_BASE_URL};
pub use pricing::{
    budget_refusal, cost_usd, rough_tokens, CACHE_READ, CACHE_WRITE, CACHE_WRITE_HOUR,
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The Messages API's error body (`{"type": "error", "error": {..}}`), for
/// answers given in the API's own terms.
pub fn error_body(kind: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// A content block as the Messages API spells it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    pub model: String,
    pub max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDef>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
}

/// The model's complete answer to one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub id: String,
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `tool_use`, `max_tokens`, … or [`REFUSAL`] (then
    /// `content` is empty: a refused answer is not kept).
    pub stop_reason: Option<String>,
    /// A refusal's explanation, when the API gives one.
    pub explanation: Option<String>,
    pub usage: Usage,
    /// The tool call the answer's token limit (`max_tokens`) cut off in its
    /// input: in `content` with an empty input, and not to be run.
    pub cut_off: Option<String>,
}

/// The stop reason of an answer the model declined to go on with.
pub const REFUSAL: &str = "refusal";

/// What a streaming call reports while the answer is being generated.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamDelta {
    Text {
        block: usize,
        text: String,
    },
    Thinking {
        block: usize,
        text: String,
    },
    ToolInput {
        block: usize,
        partial_json: String,
    },
    /// The attempt failed and is being retried: discard partial blocks.
    Restart {
        attempt: u32,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("the model endpoint refused the API key (401): {0}")]
    Auth(String),
    #[error("the request was invalid (400): {0}")]
    InvalidRequest(String),
    #[error("rate limited (429): {message}")]
    RateLimited {
        message: String,
        retry_after: Option<u64>,
    },
    #[error("the model is overloaded: {0}")]
    Overloaded(String),
    #[error("the model endpoint failed ({status}): {message}")]
    Api { status: u16, message: String },
    #[error("the model endpoint said nothing for {0} s")]
    Timeout(u64),
    #[error("cannot reach the model endpoint: {0}")]
    Transport(String),
    #[error("the model's answer did not follow the protocol: {0}")]
    Protocol(String),
    #[error("cancelled")]
    Cancelled,
}

impl LlmError {
    /// What kind of failure it is, in one word (a metric's label).
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Auth(_) => "auth",
            LlmError::InvalidRequest(_) => "invalid_request",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Overloaded(_) => "overloaded",
            LlmError::Api { .. } => "api",
            LlmError::Timeout(_) => "timeout",
            LlmError::Transport(_) => "transport",
            LlmError::Protocol(_) => "protocol",
            LlmError::Cancelled => "cancelled",
        }
    }

    /// Worth another try: the server said "later" or dropped the connection.
    pub fn retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. } | LlmError::Overloaded(_) | LlmError::Transport(_) => true,
            LlmError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

pub type DeltaSink<'a> = &'a mut (dyn FnMut(StreamDelta) + Send);

/// What authenticates Paddock to the model endpoint (never a sandbox).
#[derive(Clone)]
pub enum LlmCredential {
    /// Sent as `x-api-key`.
    ApiKey(String),
    /// Sent as `Authorization: Bearer` (gateways that issue tokens).
    AuthToken(String),
}

impl std::fmt::Debug for LlmCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LlmCredential::ApiKey(_) => "ApiKey(…)",
            LlmCredential::AuthToken(_) => "AuthToken(…)",
        })
    }
}

impl LlmCredential {
    /// The request header that carries it; `None` if it cannot be sent as
    /// one (a value with a line break).
    pub fn header(&self) -> Option<(axum::http::HeaderName, axum::http::HeaderValue)> {
        let (name, value) = match self {
            LlmCredential::ApiKey(key) => (
                axum::http::HeaderName::from_static("x-api-key"),
                key.clone(),
            ),
            LlmCredential::AuthToken(token) => {
                (axum::http::header::AUTHORIZATION, format!("Bearer {token}"))
            }
        };
        let mut value = axum::http::HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some((name, value))
    }
}

#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Sends `request` and streams the answer; deltas go to `on_delta` as
    /// they arrive, the assembled response is returned at the end. What
    /// every call of it used (retries, and one cut off or stopped, count:
    /// they are billed) is added to `spent`, however it ends.
    async fn stream(
        &self,
        credential: Option<&LlmCredential>,
        request: &Request,
        cancel: &CancellationToken,
        on_delta: DeltaSink<'_>,
        spent: &mut Usage,
    ) -> Result<Response, LlmError>;
}
