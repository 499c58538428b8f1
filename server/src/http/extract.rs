//! What handlers need from every request, extracted once: the session a
//! path names. (The caller's identity will be extracted here too, so that
//! every door checks it the same way.)

use super::error::ApiError;
use app::domain::{AppError, SessionId};
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

/// The session id of a path's `{id}`. Anything that is not one names no
/// session: 404, like an unknown id.
pub struct SessionPath(pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let not_found = |id: &str| AppError::NotFound(format!("Session {id:?}"));
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found("(unreadable)"))?;
        let id = params
            .iter()
            .find_map(|(name, value)| (name == "id").then_some(value))
            .ok_or_else(|| not_found("(unreadable)"))?;
        Ok(SessionPath(id.parse().map_err(|_| not_found(id))?))
    }
}
