//! The credential-injecting LLM proxy: how an agent inside a closed sandbox
//! reaches the model without ever holding the API key (invariant 2).
//!
//! A claude-code run gets a random 256-bit token, stored only as its SHA-256,
//! bound to its session, expiring, and revoked when the run ends (Stop
//! included) or the session is deleted. The proxy listens on a Unix socket
//! per session, in a host folder mounted read-only into that session's
//! `--network none` container (and never inside its workspace); socat inside
//! the container relays a loopback port to it. A request must come in on its
//! own session's socket with a live token of that session, so one session's
//! token can never be charged to another. Only `POST /v1/messages` and
//! `POST /v1/messages/count_tokens` pass; the token is swapped for the real
//! credential and the request forwarded to `ANTHROPIC_BASE_URL`. The answer
//! streams back chunk by chunk as it arrives, while the usage in its SSE
//! events (`message_start`, `message_delta`) is read on the way past to meter
//! the session's tokens and cost, which is what its budget is checked against
//! before each call. The counts the CLI reports about itself are never used
//! for money: the sandbox is not trusted.

use crate::backend::Paddock;
use crate::engine::budget_refusal;
use crate::llm::cost_usd;
use crate::scripted::wire::error_body;
use app::model::{AppError, EventKind, SessionId};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Claude Code sends whole conversations; the real API takes up to 32 MB.
const BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Where the socket folder appears inside a sandbox.
pub const SOCKET_DIR: &str = "/run/paddock";
/// The socket's name, in its folder on the host and in the sandbox.
pub const SOCKET_NAME: &str = "llm.sock";
/// A non-streamed answer is read whole for its usage up to this size.
const JSON_USAGE_LIMIT: usize = 8 * 1024 * 1024;

/// Request headers never passed upstream: the sandbox's credential, and what
/// belongs to one hop of HTTP. `accept-encoding` too, so the answer comes
/// uncompressed and its usage can be read as it passes.
const DROP_REQUEST: &[&str] = &[
    "x-api-key",
    "authorization",
    "host",
    "content-length",
    "accept-encoding",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];
const DROP_RESPONSE: &[&str] = &[
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "trailer",
    "upgrade",
];

/// The proxy's state, shared by every clone of [`Paddock`].
pub struct CredentialProxy {
    client: reqwest::Client,
    upstream: String,
    /// The header carrying the real credential upstream.
    credential: Option<(HeaderName, HeaderValue)>,
    root: PathBuf,
    ttl: Duration,
    /// Sessions with a listening socket, and how to stop it.
    listening: Mutex<HashMap<SessionId, CancellationToken>>,
}

/// A run's access to the proxy: the token for the sandbox, and its hash.
pub struct Lease {
    pub token: String,
    sha256: String,
}

/// Why a lease could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot prepare the proxy socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    App(#[from] AppError),
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl CredentialProxy {
    pub fn new(
        upstream: &str,
        api_key: Option<&str>,
        auth_token: Option<&str>,
        root: PathBuf,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let credential = match (api_key, auth_token) {
            (Some(key), _) => Some((
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_str(key)?,
            )),
            (None, Some(token)) => Some((
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            )),
            (None, None) => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(Self {
            client,
            upstream: upstream.trim_end_matches('/').to_owned(),
            credential,
            root,
            ttl,
            listening: Mutex::new(HashMap::new()),
        })
    }

    /// The host folder of a session's socket (mounted at [`SOCKET_DIR`]).
    pub fn socket_dir(&self, session: SessionId) -> PathBuf {
        self.session_dir(session).join("proxy")
    }

    /// Everything the claude-code engine keeps on the host for a session.
    pub fn session_dir(&self, session: SessionId) -> PathBuf {
        self.root.join(session.to_string())
    }

    fn stop_listening(&self, session: SessionId) {
        if let Some(cancel) = lock(&self.listening).remove(&session) {
            cancel.cancel();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates a folder the sandbox user can enter but not write to.
fn create_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl Paddock {
    /// Opens the session's socket (if it is not open yet) and issues a new
    /// token for one run.
    pub async fn open_proxy(&self, session: SessionId) -> Result<Lease, ProxyError> {
        self.listen(session)?;
        let token = hex::encode(rand::random::<[u8; 32]>());
        let sha256 = sha256_hex(&token);
        let ttl = chrono::Duration::from_std(self.proxy.ttl).unwrap_or(chrono::Duration::MAX);
        let expires = chrono::Utc::now()
            .checked_add_signed(ttl)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        self.store
            .insert_proxy_token(&sha256, session, expires)
            .await
            .map_err(AppError::from)?;
        Ok(Lease { token, sha256 })
    }

    /// Ends a run's access: its token is revoked and the socket closed.
    pub async fn close_proxy(&self, session: SessionId, lease: Lease) {
        if let Err(e) = self
            .store
            .revoke_proxy_tokens(session, Some(&lease.sha256))
            .await
        {
            tracing::error!(%session, "cannot revoke a proxy token: {e}");
        }
        self.proxy.stop_listening(session);
    }

    /// For a deleted session: every token revoked, the socket closed, its
    /// home and socket folder removed.
    pub async fn forget_proxy(&self, session: SessionId) -> std::io::Result<()> {
        if let Err(e) = self.store.revoke_proxy_tokens(session, None).await {
            tracing::error!(%session, "cannot revoke proxy tokens: {e}");
        }
        self.proxy.stop_listening(session);
        match std::fs::remove_dir_all(self.proxy.session_dir(session)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn listen(&self, session: SessionId) -> Result<(), ProxyError> {
        let mut listening = lock(&self.proxy.listening);
        if listening.contains_key(&session) {
            return Ok(());
        }
        let dir = self.proxy.socket_dir(session);
        let path = dir.join(SOCKET_NAME);
        let socket_error = |source| ProxyError::Socket {
            path: path.clone(),
            source,
        };
        create_dir(&self.proxy.session_dir(session), 0o755).map_err(socket_error)?;
        create_dir(&dir, 0o755).map_err(socket_error)?;
        // A socket left by an earlier run or server: ours to replace.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(socket_error(e)),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path).map_err(socket_error)?;
        // The sandbox user must be able to connect; the token is the lock.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(socket_error)?;
        let cancel = CancellationToken::new();
        listening.insert(session, cancel.clone());
        let app = router(self.clone(), session);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
            {
                tracing::error!(%session, "the LLM proxy stopped: {e}");
            }
        });
        Ok(())
    }
}

#[derive(Clone)]
struct Ctx {
    paddock: Paddock,
    session: SessionId,
}

/// The proxy's routes for one session's socket.
fn router(paddock: Paddock, session: SessionId) -> Router {
    Router::new()
        .route("/v1/messages", post(forward))
        .route("/v1/messages/count_tokens", post(forward))
        .fallback(|| async {
            api_error(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "Not found: this proxy serves only POST /v1/messages and /v1/messages/count_tokens.",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(Ctx { paddock, session })
}

/// An answer with the Anthropic error body, so the CLI shows it as it would
/// one from the API.
fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(error_body(kind, message))).into_response()
}

/// The token the sandbox sent, as `x-api-key` or `Authorization: Bearer`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    get(HeaderName::from_static("x-api-key"))
        .or_else(|| get(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ")))
}

async fn forward(State(ctx): State<Ctx>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Ctx { paddock, session } = ctx;
    let valid = match presented_token(&headers) {
        Some(token) => paddock
            .store
            .proxy_token_valid(&sha256_hex(token), session)
            .await
            .map_err(|e| tracing::error!(%session, "cannot check a proxy token: {e}")),
        None => Ok(false),
    };
    match valid {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(%session, "LLM proxy: refused a missing, wrong, expired or revoked token");
            return api_error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
            );
        }
        Err(()) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "Internal error",
            )
        }
    }
    let metered = uri.path() == "/v1/messages";
    if metered {
        match paddock.store.get_session(session).await {
            Ok(Some(s)) => {
                if let Some(refusal) = budget_refusal(&s) {
                    return api_error(StatusCode::PAYMENT_REQUIRED, "billing_error", &refusal);
                }
            }
            Ok(None) => {
                return api_error(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "invalid x-api-key",
                )
            }
            Err(e) => {
                tracing::error!(%session, "LLM proxy: {e}");
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "Internal error",
                );
            }
        }
    }

    let proxy = &paddock.proxy;
    let target = format!(
        "{}{}",
        proxy.upstream,
        uri.path_and_query().map_or(uri.path(), |p| p.as_str())
    );
    let mut request = proxy.client.post(target).body(body);
    for (name, value) in &headers {
        if !DROP_REQUEST.contains(&name.as_str()) {
            request = request.header(name, value);
        }
    }
    if let Some((name, value)) = &proxy.credential {
        request = request.header(name, value);
    }
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%session, "LLM proxy: upstream unreachable: {e}");
            return api_error(
                StatusCode::BAD_GATEWAY,
                "api_error",
                "Paddock's proxy could not reach the model endpoint (ANTHROPIC_BASE_URL).",
            );
        }
    };
    let status = upstream.status();
    let mut response_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !DROP_RESPONSE.contains(&name.as_str()) {
            response_headers.append(name, value.clone());
        }
    }
    let json = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = upstream.bytes_stream();
    let body = if metered && status.is_success() {
        Body::from_stream(Metered {
            inner: bytes,
            meter: Meter::new(paddock.clone(), session, json),
        })
    } else {
        Body::from_stream(bytes)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

/// The upstream answer passed through untouched, with its usage read on
/// the way.
struct Metered<S> {
    inner: S,
    meter: Meter,
}

impl<S> Stream for Metered<S>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    type Item = reqwest::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.meter.feed(chunk);
        }
        polled
    }
}

/// Reads a Messages API answer's usage as it passes: SSE line by line (the
/// `message_start` and `message_delta` events), or a whole JSON message.
/// What it counted is charged when the answer ends or is dropped half-way
/// (tokens already generated are billed either way).
struct Meter {
    paddock: Paddock,
    session: SessionId,
    json: bool,
    pending: Vec<u8>,
    model: String,
    input_tokens: u64,
    output_tokens: u64,
}

impl Meter {
    fn new(paddock: Paddock, session: SessionId, json: bool) -> Self {
        Self {
            paddock,
            session,
            json,
            pending: Vec::new(),
            model: String::new(),
            input_tokens: 0,
            output_tokens: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if self.json {
            if self.pending.len() + chunk.len() <= JSON_USAGE_LIMIT {
                self.pending.extend_from_slice(chunk);
            }
            return;
        }
        // Only the unfinished last line is kept between chunks.
        let mut start = 0;
        for (i, b) in chunk.iter().enumerate() {
            if *b == b'\n' {
                if self.pending.is_empty() {
                    self.line(&chunk[start..i]);
                } else {
                    self.pending.extend_from_slice(&chunk[start..i]);
                    let line = std::mem::take(&mut self.pending);
                    self.line(&line);
                }
                start = i + 1;
            }
        }
        self.pending.extend_from_slice(&chunk[start..]);
    }

    fn line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        // Deltas of text are most of the stream: skip them unparsed.
        let wanted = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
        if !wanted(b"\"message_start\"") && !wanted(b"\"message_delta\"") {
            return;
        }
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) else {
            return;
        };
        match event["type"].as_str() {
            Some("message_start") => self.message(&event["message"]),
            // Cumulative: the last one holds the totals.
            Some("message_delta") => self.usage(&event["usage"]),
            _ => {}
        }
    }

    fn message(&mut self, message: &serde_json::Value) {
        if let Some(model) = message["model"].as_str() {
            self.model = model.to_owned();
        }
        self.usage(&message["usage"]);
    }

    fn usage(&mut self, usage: &serde_json::Value) {
        // Cache writes and reads are input too; counting them at the input
        // price errs on the side of the budget.
        let input: u64 = [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ]
        .iter()
        .filter_map(|k| usage[k].as_u64())
        .sum();
        if input > 0 {
            self.input_tokens = input;
        }
        if let Some(output) = usage["output_tokens"].as_u64() {
            self.output_tokens = output;
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.json {
            let pending = std::mem::take(&mut self.pending);
            if let Ok(message) = serde_json::from_slice::<serde_json::Value>(&pending) {
                self.message(&message);
            }
        }
        if self.input_tokens == 0 && self.output_tokens == 0 {
            return;
        }
        let (paddock, session) = (self.paddock.clone(), self.session);
        let (model, input, output) = (
            std::mem::take(&mut self.model),
            self.input_tokens,
            self.output_tokens,
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let cost = cost_usd(&model, input, output);
            let (input, output) = (input as i64, output as i64);
            if let Err(e) = paddock.store.add_usage(session, input, output, cost).await {
                tracing::error!(%session, "cannot meter a model call: {e}");
                return;
            }
            let usage = EventKind::Usage {
                input_tokens: input,
                output_tokens: output,
                cost_usd: cost,
            };
            // The session may have been deleted meanwhile: nothing to record.
            let _ = paddock.record(session, usage).await;
        });
    }
}
