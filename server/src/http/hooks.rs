//! `POST /hooks/{id}`: deliveries to triggers, from anyone on the internet.
//! No sign-in: the sender's signature is what proves it
//! ([`Paddock::deliver`]); the body is capped by the trigger's kind, and
//! every answer is JSON (to Twilio, an empty TwiML document when taken).

use super::client_address::ClientAddress;
use super::routes::Routes;
use crate::paddock::Paddock;
use crate::triggers::{Answer, Arrival};
use app::domain::AppError;
use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{OriginalUri, RawPathParams, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// What Twilio is answered when nothing is sent back.
const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

pub fn routes() -> Routes {
    Routes::default().post("/hooks/{id}", deliver)
}

async fn deliver(
    State(paddock): State<Arc<Paddock>>,
    ClientAddress(from): ClientAddress,
    OriginalUri(uri): OriginalUri,
    // Not UTF-8 (`/hooks/%FF`): no trigger's id either.
    params: Result<RawPathParams, RawPathParamsRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = params.ok().and_then(|params| {
        params
            .iter()
            .find_map(|(name, value)| (name == "id").then_some(value))
            .and_then(|id| id.parse().ok())
    });
    let answer = match id {
        None => Answer::refused(AppError::NotFound("Trigger".into())),
        Some(id) => {
            let target = uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), ToString::to_string);
            let arrival = Arrival {
                headers,
                target,
                body,
                from,
            };
            paddock.deliver(id, arrival).await
        }
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = match answer.twiml {
        true => (status, [(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response(),
        false => (status, Json(answer.body)).into_response(),
    };
    if let Some(wait) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, wait.into());
    }
    response
}
