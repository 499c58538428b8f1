//! `/api/templates/{id}/notifications`, `/api/sessions/{id}/notifications`
//! and `/api/notifications/{id}…`: notification endpoints, for a template's
//! owner or whoever may operate a session: list and make them (the secret
//! is in the answer this once), delete one, read its messages, and send
//! one again.

use super::error::ApiResult;
use super::extract::{EndpointPath, SessionPath, TemplatePath};
use super::routes::Routes;
use crate::auth::Identity;
use crate::paddock::Paddock;
use app::api::Backend;
use app::domain::AppError;
use app::notifications::{Endpoint, EndpointDraft, Message, Scope};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, RawPathParams, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use std::sync::Arc;

/// Largest request body (an endpoint's URL and events).
const BODY_MAX_BYTES: usize = 16 * 1024;

pub fn routes() -> Routes {
    Routes::default()
        .get("/api/templates/{id}/notifications", list_of_template)
        .post("/api/templates/{id}/notifications", create_for_template)
        .get("/api/sessions/{id}/notifications", list_of_session)
        .post("/api/sessions/{id}/notifications", create_for_session)
        .delete("/api/notifications/{id}", delete)
        .get("/api/notifications/{id}/messages", messages)
        .post(
            "/api/notifications/{id}/messages/{message}/redeliver",
            redeliver,
        )
        .map(|r| r.layer(DefaultBodyLimit::max(BODY_MAX_BYTES)))
}

async fn list(
    paddock: &Paddock,
    identity: &Identity,
    scope: Scope,
) -> ApiResult<Json<Vec<Endpoint>>> {
    Ok(Json(paddock.list_endpoints(&identity.caller, scope).await?))
}

async fn create(
    paddock: &Paddock,
    identity: &Identity,
    scope: Scope,
    body: Result<Json<EndpointDraft>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(draft) = body?;
    let made = paddock
        .create_endpoint(&identity.caller, scope, draft)
        .await?;
    let location = format!("/api/notifications/{}", made.endpoint.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(made),
    ))
}

async fn list_of_template(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
) -> ApiResult<Json<Vec<Endpoint>>> {
    list(&paddock, &identity, Scope::Template(id)).await
}

async fn create_for_template(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
    body: Result<Json<EndpointDraft>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    create(&paddock, &identity, Scope::Template(id), body).await
}

async fn list_of_session(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
) -> ApiResult<Json<Vec<Endpoint>>> {
    list(&paddock, &identity, Scope::Session(id)).await
}

async fn create_for_session(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    body: Result<Json<EndpointDraft>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    create(&paddock, &identity, Scope::Session(id), body).await
}

async fn delete(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    EndpointPath(id): EndpointPath,
) -> ApiResult<StatusCode> {
    paddock.delete_endpoint(&identity.caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn messages(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    EndpointPath(id): EndpointPath,
) -> ApiResult<Json<Vec<Message>>> {
    Ok(Json(
        paddock.notification_messages(&identity.caller, id).await?,
    ))
}

async fn redeliver(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    EndpointPath(id): EndpointPath,
    params: RawPathParams,
) -> ApiResult<StatusCode> {
    let message = params
        .iter()
        .find_map(|(name, value)| (name == "message").then_some(value))
        .ok_or_else(|| AppError::NotFound("Message".into()))?;
    paddock
        .redeliver_notification(&identity.caller, id, message.to_owned())
        .await?;
    Ok(StatusCode::ACCEPTED)
}
