//! Health probes for process managers and platforms: `/healthz` while the
//! process is up, `/readyz` when what a request needs answers.

use super::routes::Routes;
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

/// The probes, served outside the door.
pub(super) fn routes() -> Routes {
    Routes::default()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
}

/// Liveness: the process is up and serving.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the dependencies a request needs answer. The body names each
/// (`ok` or `unavailable`: why is logged, as it can name a database user or
/// a socket, and anyone may ask), and carries the sandbox backend's
/// isolation warning when it has one.
pub(super) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let paddock = &state.paddock;
    let database = paddock.store.ping().await.map_err(|e| e.to_string());
    let sandbox = paddock.sandbox.check().await.map_err(|e| e.to_string());
    let info = paddock.sandbox.info();
    let ready = database.is_ok() && sandbox.is_ok();
    if !ready {
        tracing::warn!(
            database = database.as_ref().err(),
            sandbox = sandbox.as_ref().err(),
            "not ready"
        );
    }
    let state = |answer: &Result<(), String>| match answer {
        Ok(()) => "ok",
        Err(_) => "unavailable",
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": state(&database),
        "sandbox": {
            "backend": info.kind,
            "runtime": info.runtime,
            "state": state(&sandbox),
            "warning": info.warning,
            "agent": info.agent,
            // Why not is in the log: its words name this host's paths.
            "disk_limits": if info.no_disk_limits.is_none() { "on" } else { "off" },
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
