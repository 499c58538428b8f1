//! `GET /metrics`: the server's metrics in the Prometheus text format
//! (`crate::metrics` lists them). Behind the door like every route but the
//! probes, and for admins only: with sign-in on, a scraper sends an admin's
//! API token (`Authorization: Bearer pdk_…`).

use super::error::ApiResult;
use super::routes::Routes;
use crate::auth::Identity;
use crate::paddock::Paddock;
use app::domain::AppError;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::sync::Arc;

pub(super) fn routes() -> Routes {
    Routes::default().get("/metrics", metrics)
}

async fn metrics(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
) -> ApiResult<impl IntoResponse> {
    identity.caller.require_admin()?;
    let counts = paddock
        .store
        .sessions_by_status()
        .await
        .map_err(AppError::from)?;
    crate::metrics::sessions(&counts);
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render(),
    ))
}
