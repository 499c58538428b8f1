//! A scripted, Anthropic-compatible model server.
//!
//! Why it exists: the real Messages API cannot be reached from the machines
//! Paddock is built and tested on, and even where it can, a real model is
//! neither free nor deterministic. Paddock's engine, the Claude Code CLI and
//! the SDKs only need *an* endpoint that speaks the Messages API exactly, so
//! this crate plays one from a script: every `POST /v1/messages` consumes the
//! next turn of a [`Scenario`] and answers with it, streamed byte for byte in
//! the real SSE format. It also checks requests the way the real API does
//! (alternating roles, every `tool_use` answered by a `tool_result`, tools
//! declared), so a client bug fails here as it would in production, and it
//! keeps every request it received so tests can assert what the client sent.
//!
//! Use it in-process ([`ScriptedModel::new`] + [`ScriptedModel::spawn`] or
//! [`serve`]) or as the `paddock-model` binary
//! (`paddock-model --addr 127.0.0.1:0 --scenario paddock-model/scenarios/hello.json`,
//! then point `ANTHROPIC_BASE_URL` at the printed address).
//!
//! # Scenario format
//!
//! A JSON array of turns, or `{"name": .., "description": .., "turns": [..]}`.
//! Unknown keys are errors. A turn is one of:
//!
//! * a **reply**: `{"reply": [blocks], "stop_reason"?, "usage"?, "delay_ms"?,
//!   "chunk"?, "stream_error"?, "expect"?}` where a block is
//!   `{"text": ".."}`, `{"thinking": ".."}` or
//!   `{"tool_use": {"name": "..", "input": {..}, "id"?: "toolu_..", "cut_at"?: N}}`
//!   (`cut_at`: only the first N characters of the input's JSON are
//!   streamed, as when `max_tokens` cuts a call off: for the last block of
//!   a reply whose `stop_reason` is `max_tokens`);
//!   `"reply": "some text"` is short for one text block.
//!   - `stop_reason` defaults to `tool_use` if a tool_use block is present,
//!     else `end_turn`.
//!   - `usage`: `{"input_tokens"?, "output_tokens"?}`, each defaulting to a
//!     rough count (characters / 4) of the request / the reply.
//!   - `delay_ms`: pause between two SSE events (default 0); a
//!     non-streamed answer comes after all of them.
//!   - `chunk`: characters per `text_delta` / `thinking_delta` /
//!     `input_json_delta` (default 16, so tool inputs arrive in pieces).
//!   - `stream_error`: `{"after"?: N, "type"?: "overloaded_error",
//!     "message"?: "Overloaded"}` sends the first N events (default half of
//!     them, counting `message_start` and `ping`), then `event: error`, and
//!     ends the stream without `message_stop`. A non-streamed request for such
//!     a turn gets the error as HTTP status (529 for `overloaded_error`).
//! * an **HTTP error**: `{"error": {"status": 429, "type"?: "rate_limit_error",
//!   "message"?: "..", "retry_after"?: secs}, "expect"?}`; `type` and
//!   `message` default from the status, and a 429 always carries a
//!   `retry-after` header (default 1).
//!
//! `expect` (any turn): `{"contains"?: [..], "tools"?: [..],
//! "system_contains"?: [..], "tool_result_contains"?: [..]}` (each also takes
//! a single string): text that must appear in some string of `messages`, tool
//! names the request must declare, text of the system prompt, text of the
//! `tool_result` blocks of the last user message. A reply turn's tool_use
//! names must also be declared by the request.
//!
//! # Answers
//!
//! * `POST /v1/messages` (any query, e.g. `?beta=true`): 400
//!   `invalid_request_error` for malformed JSON or a request the real API
//!   would refuse, for a failed expectation and when the scenario is
//!   exhausted; such rejections do not consume the turn. Otherwise the turn
//!   is consumed and answered, as SSE when `"stream": true`.
//! * `POST /v1/messages/count_tokens`: `{"input_tokens": <rough count>}`.
//! * `GET /_scripted`: `{"turns", "used", "requests"}`, for out-of-process
//!   tests.
//! * With an API key configured, requests without it (`x-api-key` or
//!   `Authorization: Bearer`) get 401 `authentication_error`.
//!
//! [`ScriptedModel::requests`] returns the JSON body of every
//! `/v1/messages` request that passed authentication and parsed, rejected
//! or not, in arrival order.

pub mod scenario;
pub mod validate;
pub mod wire;

pub use scenario::{Scenario, ScenarioError, Turn};

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use scenario::{Action, HttpError, Reply};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use wire::Resolved;

/// Claude Code sends whole conversations; the real API takes up to 32 MB.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// A scripted model: the scenario, its cursor and the requests received.
/// Clones share all of it, so a test can keep one while another serves.
#[derive(Clone)]
pub struct ScriptedModel {
    shared: Arc<Shared>,
    api_key: Option<Arc<str>>,
}

struct Shared {
    turns: Vec<Turn>,
    cursor: Mutex<usize>,
    requests: Mutex<Vec<Value>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them half-updated.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ScriptedModel {
    pub fn new(scenario: Scenario) -> Self {
        Self {
            shared: Arc::new(Shared {
                turns: scenario.turns,
                cursor: Mutex::new(0),
                requests: Mutex::new(Vec::new()),
            }),
            api_key: None,
        }
    }

    /// Requires `key` on every request (`x-api-key` or `Authorization:
    /// Bearer`); `None` accepts any.
    pub fn with_api_key(mut self, key: Option<String>) -> Self {
        self.api_key = key.map(Arc::from);
        self
    }

    /// The JSON bodies of the `/v1/messages` requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.requests).clone()
    }

    /// How many turns have been consumed.
    pub fn turns_used(&self) -> usize {
        *lock(&self.shared.cursor)
    }

    /// How many turns are left.
    pub fn turns_left(&self) -> usize {
        self.shared.turns.len().saturating_sub(self.turns_used())
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/_scripted", get(inspect))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.clone())
    }

    /// Serves on `listener` until the process ends.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .context("scripted model server failed")
    }

    /// Binds `127.0.0.1:0`, serves in a background task and returns the
    /// address (base URL `http://{addr}`). The task ends with the runtime.
    pub async fn spawn(&self) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let model = self.clone();
        tokio::spawn(async move {
            if let Err(e) = model.serve(listener).await {
                tracing::error!("{e:#}");
            }
        });
        Ok(addr)
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.api_key else {
            return Ok(());
        };
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let bearer = header(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
        if header(header::HeaderName::from_static("x-api-key")) == Some(key) || bearer == Some(key)
        {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        ))
    }

    /// Takes the next turn if the request matches it; a mismatch leaves the
    /// cursor where it is.
    fn take_turn(&self, body: &Value) -> Result<(usize, Turn), String> {
        let mut cursor = lock(&self.shared.cursor);
        let index = *cursor;
        let turn = self.shared.turns.get(index).ok_or_else(|| {
            format!(
                "scenario exhausted: all {} turns were used",
                self.shared.turns.len()
            )
        })?;
        validate::turn_matches(turn, index, body)?;
        *cursor += 1;
        Ok((index, turn.clone()))
    }
}

/// Serves `scenario` on `listener` until the process ends, requiring
/// `api_key` when given.
pub async fn serve(
    listener: TcpListener,
    scenario: Scenario,
    api_key: Option<String>,
) -> anyhow::Result<()> {
    ScriptedModel::new(scenario)
        .with_api_key(api_key)
        .serve(listener)
        .await
}

/// An error answer with the Anthropic error body
/// `{"type":"error","error":{"type":..,"message":..}}`.
#[derive(Debug, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: String,
    pub message: String,
    /// Seconds for a `retry-after` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: kind.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_request_error`: what the real API answers a request it
    /// refuses.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    fn scripted(error: &HttpError) -> Self {
        Self {
            status: StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind: error.kind(),
            message: error.message(),
            retry_after: error.retry_after(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::warn!("{self}");
        }
        let body = wire::error_body(&self.kind, &self.message);
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("request-id", request_id());
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn request_id() -> HeaderValue {
    HeaderValue::from_str(&wire::new_id("req")).unwrap_or(HeaderValue::from_static("req_scripted"))
}

fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))
}

async fn messages(
    State(model): State<ScriptedModel>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    model.authorize(&headers)?;
    let body = parse(&body)?;
    lock(&model.shared.requests).push(body.clone());
    validate::messages_request(&body).map_err(ApiError::invalid)?;
    let (index, turn) = model.take_turn(&body).map_err(ApiError::invalid)?;
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    match turn.action {
        Action::Error(error) => {
            tracing::info!(turn = index, status = error.status, "scripted HTTP error");
            Err(ApiError::scripted(&error))
        }
        Action::Reply(reply) => {
            tracing::info!(turn = index, stream, "scripted reply");
            let resolved = Resolved::new(&reply, &body);
            if stream {
                Ok(sse(&reply, &resolved))
            } else if let Some(e) = &reply.stream_error {
                Err(ApiError::new(status_for(&e.kind), &e.kind, &e.message))
            } else {
                // Made whole before it is sent: as long as its stream
                // would have taken.
                let events = resolved.events().len().saturating_sub(1) as u32;
                tokio::time::sleep(Duration::from_millis(reply.delay_ms) * events).await;
                let mut response = Json(resolved.message()).into_response();
                response.headers_mut().insert("request-id", request_id());
                Ok(response)
            }
        }
    }
}

/// The HTTP status the real API uses for an error type.
fn status_for(kind: &str) -> StatusCode {
    let code = match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
fn sse(reply: &Reply, resolved: &Resolved) -> Response {
    let mut events = resolved.events();
    if let Some(e) = &reply.stream_error {
        // Keep at least message_start, and never reach message_stop.
        let last = events.len().saturating_sub(1).max(1);
        let after = e.after.unwrap_or(events.len() / 2).clamp(1, last);
        events.truncate(after);
        events.push(wire::error_body(&e.kind, &e.message));
    }
    let delay = Duration::from_millis(reply.delay_ms);
    let frames = futures_util::stream::iter(events.into_iter().enumerate()).then(
        move |(i, event)| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(wire::frame(&event))
        },
    );
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("request-id", request_id());
    response
}

async fn count_tokens(
    State(model): State<ScriptedModel>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    model.authorize(&headers)?;
    let body = parse(&body)?;
    validate::count_tokens_request(&body).map_err(ApiError::invalid)?;
    Ok(Json(json!({"input_tokens": wire::request_tokens(&body)})))
}

async fn inspect(State(model): State<ScriptedModel>) -> Json<Value> {
    Json(json!({
        "turns": model.shared.turns.len(),
        "used": model.turns_used(),
        "requests": model.requests(),
    }))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found_error", "Not found")
}
