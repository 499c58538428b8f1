//! The HTTP surface: health probes, the server-rendered dashboard and its
//! server functions, static files, and the JSON API with the live event
//! stream ([`crate::api`]), all behind the [`request_guard`].

pub mod request_guard;

use crate::backend::Paddock;
use crate::config::Config;
use app::api::SharedBackend;
use app::{shell, App};
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use request_guard::RequestGuard;
use std::sync::{Arc, OnceLock};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

/// Largest request body accepted (a prompt may be up to 1 MiB).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos: LeptosOptions,
    pub paddock: Arc<Paddock>,
}

impl AppState {
    /// Builds the state from configuration; Leptos' own settings (site root,
    /// output name) come from the `LEPTOS_*` environment that cargo-leptos
    /// sets, falling back to the workspace's metadata.
    pub async fn new(config: &Config) -> anyhow::Result<Self> {
        let leptos = leptos::config::get_configuration(None)?.leptos_options;
        Self::with_options(config, leptos).await
    }

    /// Opens Paddock's services and recovers from the previous run before
    /// any request is served.
    pub async fn with_options(config: &Config, leptos: LeptosOptions) -> anyhow::Result<Self> {
        let paddock = Paddock::open(config.clone()).await?;
        paddock.recover().await?;
        Ok(Self {
            leptos,
            paddock: Arc::new(paddock),
        })
    }
}

pub fn router(state: AppState) -> Router {
    let backend: SharedBackend = state.paddock.clone();
    Router::new()
        .leptos_routes_with_context(
            &state,
            route_list(),
            move || provide_context(backend.clone()),
            {
                let options = state.leptos.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        // The JSON API and event stream, after the limit layer so that it
        // enforces the same limit itself and answers in JSON.
        .merge(crate::api::router())
        // Every route above, and the fallback, behind the host and origin
        // checks; the probes below are not, as platforms probe with hosts
        // of their own.
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(RequestGuard::new(&state.paddock.config)),
            request_guard::check,
        ))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The dashboard's routes, discovered once per process. Discovery renders the
/// app with resource loading suppressed process-wide (leptos issue 4773), so
/// it must never overlap a real render: every router is built from this one
/// list, and no render can start before the first router exists.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// Liveness: the process is up and serving.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the dependencies a request needs answer. The body names each,
/// and carries the sandbox backend's isolation warning when it has one.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let paddock = &state.paddock;
    let database = paddock.store.ping().await.map_err(|e| e.to_string());
    let sandbox = paddock.sandbox.check().await.map_err(|e| e.to_string());
    let info = paddock.sandbox.info();
    let ready = database.is_ok() && sandbox.is_ok();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": database.err().unwrap_or_else(|| "ok".into()),
        "sandbox": {
            "backend": info.kind,
            "state": sandbox.err().unwrap_or_else(|| "ok".into()),
            "warning": info.warning,
        },
    });
    if !ready {
        tracing::warn!("not ready: {body}");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
