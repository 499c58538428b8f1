//! The HTTP surface: the server-rendered dashboard and its server functions,
//! static files, the JSON API (`sessions.rs`), the two event streams
//! (`events.rs`, `updates.rs`) and the health probes (`probes.rs`), every route
//! but the probes behind the [`request_guard`]. Handlers take what they
//! need through the [`extract`]ors and fail with the one [`error`] type.

pub mod error;
mod events;
pub mod extract;
mod probes;
pub mod request_guard;
mod sessions;
mod updates;

use crate::config::Config;
use crate::paddock::Paddock;
use app::api::SharedBackend;
use app::{shell, App};
use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
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
        // The JSON API, after the limit layer so that it enforces the same
        // limit itself and answers in JSON.
        .merge(sessions::router())
        .merge(events::router())
        .merge(updates::router())
        // Every route above, and the fallback, behind the host and origin
        // checks; the probes below are not, as platforms probe with hosts
        // of their own.
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(RequestGuard::new(&state.paddock.config)),
            request_guard::check,
        ))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
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
