//! Prometheus metrics, served at `GET /metrics` (`http/metrics.rs`) in the
//! text format: recorded with the `metrics` crate where things happen,
//! rendered by its Prometheus exporter. Every metric's name, labels and
//! help are here, so the list is one place:
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `paddock_sessions` | gauge (read from the store when scraped) | `status` |
//! | `paddock_runs_started_total` | counter | |
//! | `paddock_runs_finished_total` | counter | `outcome`: completed, stopped, failed, handed_off (this replica shut down), taken_over (another took the session) |
//! | `paddock_model_call_duration_seconds` | histogram | `model` (a suggested one, else `other`), `outcome`: ok, error |
//! | `paddock_model_call_errors_total` | counter | `kind` |
//! | `paddock_tokens_total` | counter | `direction`: input, output |
//! | `paddock_cost_usd` | gauge (only grows) | |
//! | `paddock_tool_call_duration_seconds` | histogram | `tool` (MCP tools as `mcp`) |
//! | `paddock_tool_call_errors_total` | counter | `tool` |
//! | `paddock_sandbox_start_duration_seconds` | histogram | `backend` (Docker's: local sandboxes are a folder) |
//! | `paddock_viewers` | gauge | `stream`: events, updates |
//! | `paddock_proxy_requests_total` | counter | `status` |
//! | `paddock_session_leases` | gauge | |
//! | `paddock_sessions_taken_over_total` | counter | `found`: interrupted, awaiting_permission, queued |
//!
//! Labels take values from small fixed sets (a model a session may name
//! freely is `other` unless it is one the dashboard suggests), so the
//! series stay few whatever people type. Model calls are the native
//! engine's; the claude-code engine's go through the LLM proxy, counted by
//! status there, and their tokens and cost are counted with the others.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Upper bounds of the duration histograms, in seconds: a fast tool call
/// to a slow model turn.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// How often recorded histogram samples are folded in.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process's recorder (once; later calls reuse it). `None`
/// when another recorder was installed first, which only an embedding
/// program would do: then there is nothing to render.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .inspect_err(|e| tracing::error!("metrics: {e}"))
                .ok()?;
            let handle = builder
                .install_recorder()
                .inspect_err(|e| tracing::warn!("metrics are not recorded: {e}"))
                .ok()?;
            describe();
            // Histogram samples wait in buckets until upkeep (or a scrape)
            // drains them: a thread of its own, whatever runtime is current.
            let kept = handle.clone();
            if let Err(e) = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    kept.run_upkeep();
                })
            {
                tracing::warn!("metrics upkeep thread (scrapes still drain): {e}");
            }
            Some(handle)
        })
        .as_ref()
}

/// Everything recorded, in the Prometheus text format.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

fn describe() {
    describe_gauge!("paddock_sessions", "Sessions by status.");
    describe_counter!("paddock_runs_started_total", "Prompt runs started.");
    describe_counter!(
        "paddock_runs_finished_total",
        "Prompt runs finished, by outcome."
    );
    describe_histogram!(
        "paddock_model_call_duration_seconds",
        metrics::Unit::Seconds,
        "One model call (one attempt), from request to the end of its stream."
    );
    describe_counter!(
        "paddock_model_call_errors_total",
        "Model calls (attempts) that failed, by kind."
    );
    describe_counter!("paddock_tokens_total", "Model tokens, input and output.");
    describe_gauge!(
        "paddock_cost_usd",
        "Model cost in USD since the server started."
    );
    describe_histogram!(
        "paddock_tool_call_duration_seconds",
        metrics::Unit::Seconds,
        "Native tool calls, once allowed, to their result."
    );
    describe_counter!(
        "paddock_tool_call_errors_total",
        "Native tool calls whose result is an error."
    );
    describe_histogram!(
        "paddock_sandbox_start_duration_seconds",
        metrics::Unit::Seconds,
        "Sandboxes created (or started again) and ready."
    );
    describe_gauge!("paddock_viewers", "Open event streams, by kind.");
    describe_counter!(
        "paddock_proxy_requests_total",
        "Requests of claude-code sessions through the LLM proxy, by answer status."
    );
    describe_gauge!(
        "paddock_session_leases",
        "Sessions this replica runs (holds the lease of)."
    );
    describe_counter!(
        "paddock_sessions_taken_over_total",
        "Sessions this replica took over from one that stopped, by what it found."
    );
}

/// Sets the sessions-by-status gauge (every status, zeros included).
pub fn sessions(counts: &[(app::domain::SessionStatus, i64)]) {
    for &status in app::domain::SessionStatus::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        gauge!("paddock_sessions", "status" => status.as_str()).set(n as f64);
    }
}

pub fn run_started() {
    counter!("paddock_runs_started_total").increment(1);
}

/// How a run ended: `completed`, `stopped` or `failed`.
pub fn run_finished(outcome: &'static str) {
    counter!("paddock_runs_finished_total", "outcome" => outcome).increment(1);
}

/// One model call; `error` names the kind of failure when it failed.
pub fn model_call(model: &str, took: Duration, error: Option<&'static str>) {
    let model = app::domain::SUGGESTED_MODELS
        .iter()
        .copied()
        .find(|m| *m == model)
        .unwrap_or("other");
    let outcome = if error.is_some() { "error" } else { "ok" };
    histogram!("paddock_model_call_duration_seconds", "model" => model, "outcome" => outcome)
        .record(took.as_secs_f64());
    if let Some(kind) = error {
        counter!("paddock_model_call_errors_total", "kind" => kind).increment(1);
    }
}

pub fn usage(input_tokens: i64, output_tokens: i64, cost_usd: f64) {
    counter!("paddock_tokens_total", "direction" => "input")
        .increment(input_tokens.max(0).unsigned_abs());
    counter!("paddock_tokens_total", "direction" => "output")
        .increment(output_tokens.max(0).unsigned_abs());
    // The crate's counters count whole units: the cost, a fraction of a
    // dollar, is a gauge that only grows.
    gauge!("paddock_cost_usd").increment(cost_usd.max(0.0));
}

pub fn tool_call(tool: &'static str, took: Duration, is_error: bool) {
    histogram!("paddock_tool_call_duration_seconds", "tool" => tool).record(took.as_secs_f64());
    if is_error {
        counter!("paddock_tool_call_errors_total", "tool" => tool).increment(1);
    }
}

pub fn sandbox_started(backend: &'static str, took: Duration) {
    histogram!("paddock_sandbox_start_duration_seconds", "backend" => backend)
        .record(took.as_secs_f64());
}

pub fn proxy_request(status: u16) {
    counter!("paddock_proxy_requests_total", "status" => status.to_string()).increment(1);
}

pub fn session_leases(held: usize) {
    gauge!("paddock_session_leases").set(held as f64);
}

pub fn taken_over(how: &'static str) {
    counter!("paddock_sessions_taken_over_total", "found" => how).increment(1);
}

/// Counts an open event stream of `stream` kind while it lives.
pub struct Viewer(&'static str);

impl Viewer {
    pub fn open(stream: &'static str) -> Self {
        gauge!("paddock_viewers", "stream" => stream).increment(1.0);
        Self(stream)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        gauge!("paddock_viewers", "stream" => self.0).decrement(1.0);
    }
}
