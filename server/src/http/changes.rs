//! `/api/sessions/{id}/changes…`, `/commit` and `/push`: the Changes view of
//! a session cloned from git, for scripts.
//!
//! - `GET …/changes`: the files changed since the start, with the branch
//!   and where to open a pull request.
//! - `GET …/changes/diff?path=src/a.rs`: one file's unified diff.
//! - `POST …/commit` `{"message": "…"}`: commits every change to the
//!   working branch, by the caller (201).
//! - `POST …/push`: pushes the working branch with the saved token.

use super::error::ApiResult;
use super::extract::SessionPath;
use super::routes::Routes;
use super::BODY_LIMIT;
use crate::auth::Identity;
use crate::paddock::Paddock;
use app::api::Backend;
use app::changes::{Changes, Committed, FileDiff};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

pub fn routes() -> Routes {
    Routes::default()
        .get("/api/sessions/{id}/changes", list)
        .get("/api/sessions/{id}/changes/diff", diff)
        .post("/api/sessions/{id}/commit", commit)
        .post("/api/sessions/{id}/push", push)
        .map(|r| r.layer(DefaultBodyLimit::max(BODY_LIMIT)))
}

async fn list(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
) -> ApiResult<Json<Changes>> {
    Ok(Json(paddock.changes(&identity.caller, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    path: String,
}

async fn diff(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> ApiResult<Json<FileDiff>> {
    let Query(query) = query?;
    Ok(Json(
        paddock
            .change_diff(&identity.caller, id, query.path)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    message: String,
}

async fn commit(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    body: Result<Json<CommitBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Committed>)> {
    let Json(body) = body?;
    let done = paddock
        .commit_changes(&identity.caller, id, body.message)
        .await?;
    Ok((StatusCode::CREATED, Json(done)))
}

async fn push(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
) -> ApiResult<Json<Committed>> {
    Ok(Json(paddock.push_changes(&identity.caller, id).await?))
}
