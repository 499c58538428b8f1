//! `/api/sessions…`: sessions as JSON resources for scripts, beside the
//! dashboard's server functions (at `/api/<function name>`, a different set
//! of paths). Input is checked completely before anything is written, so a
//! refused request leaves no trace (invariant 5).

use super::error::ApiResult;
use super::extract::SessionPath;
use super::routes::Routes;
use super::BODY_LIMIT;
use crate::auth::Identity;
use crate::paddock::Paddock;
use app::api::Backend;
use app::domain::{AppError, Decision, NewSession, Session, SessionSettings};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// The routes. They enforce the body limit themselves (the router's outer
/// limit answers in plain text), so an oversized body gets a JSON 413 like
/// every other error here.
pub fn routes() -> Routes {
    Routes::default()
        .get("/api/sessions", list_sessions)
        .post("/api/sessions", create_session)
        .get("/api/sessions/{id}", get_session)
        .delete("/api/sessions/{id}", delete_session)
        .put("/api/sessions/{id}/settings", change_settings)
        .post("/api/sessions/{id}/prompt", send_prompt)
        .post("/api/sessions/{id}/stop", stop)
        .post("/api/sessions/{id}/permissions/{request_id}", decide)
        .map(|r| r.layer(DefaultBodyLimit::max(BODY_LIMIT)))
}

async fn list_sessions(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
) -> ApiResult<Json<Vec<Session>>> {
    Ok(Json(paddock.list_sessions(&identity.caller).await?))
}

async fn create_session(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    body: Result<Json<NewSession>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(new) = body?;
    let session = paddock.create_session(&identity.caller, new).await?;
    let location = format!("/api/sessions/{}", session.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(session),
    ))
}

async fn get_session(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
) -> ApiResult<Json<Session>> {
    Ok(Json(paddock.get_session(&identity.caller, id).await?))
}

async fn change_settings(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    body: Result<Json<SessionSettings>, JsonRejection>,
) -> ApiResult<Json<Session>> {
    let Json(settings) = body?;
    Ok(Json(
        paddock
            .change_settings(&identity.caller, id, settings)
            .await?,
    ))
}

async fn delete_session(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
) -> ApiResult<StatusCode> {
    paddock.delete_session(&identity.caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Prompt {
    text: String,
}

/// Accepted at once (202): the prompt is stored, and runs now or after the
/// prompts queued before it.
async fn send_prompt(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    body: Result<Json<Prompt>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(prompt) = body?;
    paddock
        .send_prompt(&identity.caller, id, prompt.text)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

async fn stop(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
) -> ApiResult<StatusCode> {
    paddock.stop(&identity.caller, id).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: Decision,
    #[serde(default)]
    reason: Option<String>,
}

async fn decide(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let Path((_, request_id)) =
        path.map_err(|_| AppError::NotFound("Permission request".into()))?;
    let Json(body) = body?;
    paddock
        .decide(&identity.caller, id, request_id, body.decision, body.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
