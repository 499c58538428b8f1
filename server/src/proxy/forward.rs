//! The routes of one session's socket: the token checked, the budget
//! checked, the request read and refused if it has Anthropic's servers
//! reach out (server-run tools, MCP servers), the credential swapped in,
//! the request forwarded, and the answer streamed back through the
//! [`Metered`] body.

use super::meter::{Meter, Metered};
use super::outreach::reaches_out;
use super::CredentialProxy;
use crate::llm::LlmCredential;
use crate::llm::{budget_refusal, error_body};
use crate::secret::sha256_hex;
use app::domain::SessionId;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// Claude Code sends whole conversations; the real API takes up to 32 MB.
const BODY_LIMIT: usize = 32 * 1024 * 1024;
/// KiB of request bodies the proxy holds at once, for all sessions, and for
/// one (one body of the largest): a sandbox sending 32 bodies of 32 MB
/// slowly held a GiB of the server's memory. A person's sandboxes (10 at
/// most, with sign-in on) cannot take all of it.
pub(super) const BODIES_KIB: usize = 512 * 1024;
const SESSION_BODIES_KIB: usize = BODY_LIMIT / 1024;
/// The longest refusal of a request quoted back and logged: it quotes what
/// the sandbox wrote.
const REFUSAL_MAX_CHARS: usize = 500;

/// Whether a request header of the sandbox's is passed upstream: the
/// Messages API's own (`anthropic-version`, `anthropic-beta`), the body's
/// type, and what says which client asks (its SDK's `x-stainless-*`).
/// Nothing else: not the sandbox's credential, nor what belongs to one hop
/// of HTTP, nor `accept-encoding` (the answer comes uncompressed, for its
/// usage to be read as it passes), nor any header a gateway in front of
/// the API would take an order from (which upstream to send the real
/// credential to). The body's length is the body's, read whole.
fn passed_upstream(name: &str) -> bool {
    matches!(name, "content-type" | "accept" | "user-agent" | "x-app")
        || name.starts_with("anthropic-")
        || name.starts_with("x-stainless-")
}
const DROP_RESPONSE: &[&str] = &[
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "trailer",
    "upgrade",
];

#[derive(Clone)]
struct Ctx {
    proxy: Arc<CredentialProxy>,
    session: SessionId,
    /// This session's share of the bodies held, in KiB.
    bodies: Arc<tokio::sync::Semaphore>,
}

/// The proxy's routes for one session's socket: a server of its own, reached
/// only through that socket, so not one of the door's routes.
#[allow(clippy::disallowed_methods)]
pub(super) fn router(proxy: Arc<CredentialProxy>, session: SessionId) -> Router {
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
        .layer(RequestBodyTimeoutLayer::new(proxy.stall))
        .with_state(Ctx {
            proxy,
            session,
            bodies: Arc::new(tokio::sync::Semaphore::new(SESSION_BODIES_KIB)),
        })
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

async fn forward(State(ctx): State<Ctx>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let response = relay(ctx, uri, headers, body).await;
    crate::metrics::proxy_request(response.status().as_u16());
    response
}

/// Checks the token and the budget, reads the body whole (at most
/// [`BODY_LIMIT`]) and what it asks the API to do ([`reaches_out`]), then
/// relays it to the model endpoint and streams the answer back.
async fn relay(ctx: Ctx, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let Ctx {
        proxy,
        session,
        bodies,
    } = ctx;
    let valid = match presented_token(&headers) {
        Some(token) => proxy
            .store
            .proxy_token_valid(&sha256_hex(token), session)
            .await
            .map_err(|e| tracing::error!(%session, "cannot check a proxy token: {e}")),
        None => Ok(false),
    };
    match valid {
        Ok(true) => {}
        Ok(false) => {
            // A few a minute: a process of the sandbox may send them in a loop.
            if proxy.refused.told(&session.to_string()) {
                tracing::warn!(%session, "LLM proxy: refused a missing, wrong, expired or revoked token");
            }
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
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|size| size > BODY_LIMIT as u64) {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        );
    }
    let metered = uri.path() == "/v1/messages";
    let owner = match proxy.store.get_session(session).await {
        Ok(Some(s)) => {
            if let Some(refusal) = budget_refusal(&s).filter(|_| metered) {
                return api_error(StatusCode::PAYMENT_REQUIRED, "billing_error", &refusal);
            }
            s.owner
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
    };
    let credential = match proxy.vault.llm_credential(owner).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%session, "LLM proxy: cannot read the credential: {e}");
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "Internal error",
            );
        }
    };
    let target = format!(
        "{}{}",
        proxy.upstream,
        uri.path_and_query().map_or(uri.path(), |p| p.as_str())
    );
    // Room for it (its declared size, else the most it may be), in this
    // session's share and in all sessions', held until its answer begins.
    let kib = (declared.unwrap_or(BODY_LIMIT as u64) as usize)
        .div_ceil(1024)
        .max(1) as u32;
    let room = async {
        let mine = bodies.clone().acquire_many_owned(kib).await;
        let all = proxy.bodies.clone().acquire_many_owned(kib).await;
        mine.ok().zip(all.ok())
    };
    let Ok(Some((mut mine, mut all))) = tokio::time::timeout(proxy.stall, room).await else {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded_error",
            "Paddock's proxy holds as many request bodies as it takes: try again shortly.",
        );
    };
    // Read whole (too long, cut off or stalled, it is refused) to be read,
    // within twice the stall all told (so a body holds its room longer
    // than the next request waits for it): over a local socket a body
    // comes at once, and one sent a byte at a time would hold its room
    // for as long as the sandbox liked.
    let whole = http_body_util::Limited::new(body, BODY_LIMIT).collect();
    let Ok(Ok(body)) = tokio::time::timeout(proxy.stall * 2, whole).await else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "The request's body could not be read whole (at most 32 MB, in time).",
        );
    };
    let body = body.to_bytes();
    // Read: the room it holds on until its answer begins is its own size
    // (one sent without a length took the most a body may be).
    let used = body.len().div_ceil(1024).max(1) as u32;
    if used < kib {
        let _given_back = (
            mine.split((kib - used) as usize),
            all.split((kib - used) as usize),
        );
    }
    let _room = (mine, all);
    if let Some(refusal) = reaches_out(&body) {
        // What it quotes is the sandbox's to write, as often as it likes:
        // cut, and logged a few times a minute.
        let refusal = app::text::elided(&refusal, REFUSAL_MAX_CHARS);
        if proxy.refused.told(&session.to_string()) {
            tracing::warn!(%session, "LLM proxy: {refusal}");
        }
        return api_error(StatusCode::BAD_REQUEST, "invalid_request_error", &refusal);
    }
    // Charged from here on: a call whose answer has not begun when it is
    // dropped (the sandbox hung up, the run's connections were cut) was
    // made upstream all the same, and a whole answer's is made whole
    // there before it begins. The meter reads the request's model.
    let meter = metered.then(|| Meter::new(proxy.journal.clone(), session, &body));
    let mut request = proxy.client.post(target).body(body);
    for (name, value) in &headers {
        if passed_upstream(name.as_str()) {
            request = request.header(name, value);
        }
    }
    if let Some((name, value)) = credential.as_ref().and_then(LlmCredential::header) {
        request = request.header(name, value);
    }
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            if let Some(meter) = meter {
                meter.void();
            }
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
    let body = match meter {
        Some(mut meter) if status.is_success() => {
            meter.answered(json);
            Body::from_stream(Metered {
                inner: bytes,
                meter,
            })
        }
        // Refused upstream: nothing to charge.
        Some(meter) => {
            meter.void();
            Body::from_stream(bytes)
        }
        None => Body::from_stream(bytes),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_apis_own_headers_go_upstream() {
        for passed in [
            "content-type",
            "anthropic-version",
            "anthropic-beta",
            "x-stainless-lang",
            "user-agent",
        ] {
            assert!(passed_upstream(passed), "{passed}");
        }
        for dropped in [
            "x-api-key",
            "authorization",
            "host",
            "accept-encoding",
            "transfer-encoding",
            "content-length",
            // A gateway's orders: where it sends the real credential.
            "x-portkey-custom-host",
            "x-forwarded-host",
            "cf-aig-authorization",
        ] {
            assert!(!passed_upstream(dropped), "{dropped}");
        }
    }
}
