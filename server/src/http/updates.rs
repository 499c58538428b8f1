//! `GET /api/updates`: the sessions list as Server-Sent Events, so statuses
//! and costs change on the page without a reload.

use super::AppState;
use crate::hub::SessionUpdate;
use crate::paddock::Paddock;
use axum::extract::State;
use axum::http::HeaderName;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/updates", get(updates))
}

/// `GET /api/updates`: session summaries as they change, for the sessions
/// list: `event: session` (the session as JSON), `event: deleted` (its id),
/// and `event: resync` when this viewer fell behind and should reload.
async fn updates(State(paddock): State<Arc<Paddock>>) -> impl IntoResponse {
    let rx = paddock.hub.subscribe_sessions();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let frame = match rx.recv().await {
            Ok(SessionUpdate::Changed(s)) => sse::Event::default()
                .event("session")
                .json_data(&*s)
                .unwrap_or_else(|_| sse::Event::default().event("resync").data("")),
            Ok(SessionUpdate::Deleted(id)) => {
                sse::Event::default().event("deleted").data(id.to_string())
            }
            Err(RecvError::Lagged(_)) => sse::Event::default().event("resync").data(""),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(frame), rx))
    })
    .take_until(paddock.hub.shutting_down());
    (
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    )
}
