//! What handlers need from every request, extracted once: who the caller
//! is ([`Identity`], which the door put in the request), where they are
//! ([`ClientAddress`]) and the session or template a path names
//! ([`SessionPath`], [`TemplatePath`], [`TriggerPath`], [`EndpointPath`]).

use super::error::ApiError;
use crate::auth::Identity;
use app::agents::TemplateId;
use app::domain::{AppError, SessionId};
use app::notifications::EndpointId;
use app::triggers::TriggerId;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

/// The caller, as the door identified them. Missing only on the routes an
/// anonymous caller may reach, and then this refuses with 401: a handler
/// that takes an `Identity` never runs for someone unknown.
impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or_else(|| AppError::Unauthenticated("Sign in first.".into()).into())
    }
}

/// The uuid of a path's `{id}`; anything that is not one names nothing:
/// 404, like an unknown id.
async fn path_id<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    what: &str,
) -> Result<uuid::Uuid, ApiError> {
    let not_found = |id: &str| AppError::NotFound(format!("{what} {id:?}"));
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| not_found("(unreadable)"))?;
    let id = params
        .iter()
        .find_map(|(name, value)| (name == "id").then_some(value))
        .ok_or_else(|| not_found("(unreadable)"))?;
    Ok(id.parse().map_err(|_| not_found(id))?)
}

/// The session a path's `{id}` names.
pub struct SessionPath(pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "Session").await.map(SessionPath)
    }
}

/// The agent template a path's `{id}` names.
pub struct TemplatePath(pub TemplateId);

impl<S: Send + Sync> FromRequestParts<S> for TemplatePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "Agent").await.map(TemplatePath)
    }
}

/// The trigger a path's `{id}` names.
pub struct TriggerPath(pub TriggerId);

impl<S: Send + Sync> FromRequestParts<S> for TriggerPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "Trigger").await.map(TriggerPath)
    }
}

/// The notification endpoint a path's `{id}` names.
pub struct EndpointPath(pub EndpointId);

impl<S: Send + Sync> FromRequestParts<S> for EndpointPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "Notification endpoint")
            .await
            .map(EndpointPath)
    }
}
