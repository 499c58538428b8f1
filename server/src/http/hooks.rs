//! `POST /hooks/{id}`: deliveries to triggers, from anyone on the internet.
//! No sign-in: the sender's signature is what proves it
//! ([`Paddock::deliver`]); the body is capped, and every answer is JSON.

use super::extract::ClientAddress;
use super::routes::Routes;
use crate::paddock::Paddock;
use crate::triggers::Answer;
use app::domain::AppError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawPathParams, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// Largest delivery.
pub const DELIVERY_MAX_BYTES: usize = 1024 * 1024;

pub fn routes() -> Routes {
    Routes::default()
        .post("/hooks/{id}", deliver)
        .map(|r| r.layer(DefaultBodyLimit::max(DELIVERY_MAX_BYTES)))
}

async fn deliver(
    State(paddock): State<Arc<Paddock>>,
    ClientAddress(from): ClientAddress,
    params: RawPathParams,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let id = params
        .iter()
        .find_map(|(name, value)| (name == "id").then_some(value))
        .and_then(|id| id.parse().ok());
    let answer = match (id, body) {
        (None, _) => Answer::refused(AppError::NotFound("Trigger".into())),
        (Some(_), Err(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Answer::refused(AppError::TooLarge(format!(
                "A delivery is at most {} KiB.",
                DELIVERY_MAX_BYTES / 1024
            )))
        }
        (Some(_), Err(e)) => Answer::refused(AppError::Invalid(e.body_text())),
        (Some(id), Ok(body)) => paddock.deliver(id, &headers, &body, from).await,
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, Json(answer.body)).into_response();
    if let Some(wait) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, wait.into());
    }
    response
}
