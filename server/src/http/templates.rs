//! `/api/templates…`: agent templates as JSON resources for scripts, and
//! their files: export as a download (`?format=json|toml`), import from a
//! body in either format. Every save validates completely first, so a
//! refused one writes nothing.

use super::error::{ApiError, ApiResult};
use super::extract::TemplatePath;
use super::routes::Routes;
use super::wants_html;
use crate::agent_templates::{self, FileFormat};
use crate::auth::Identity;
use crate::paddock::Paddock;
use crate::skill_archive;
use app::agents::{AgentTemplate, TemplateDraft, TemplateSummary, TEMPLATE_FILE_MAX_BYTES};
use app::api::Backend;
use app::domain::AppError;
use axum::body::Bytes;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

pub fn routes() -> Routes {
    Routes::default()
        .get("/api/templates", list)
        .post("/api/templates", create)
        .post("/api/templates/import", import)
        .get("/api/templates/{id}", get)
        .put("/api/templates/{id}", update)
        .delete("/api/templates/{id}", delete)
        .post("/api/templates/{id}/duplicate", duplicate)
        .get("/api/templates/{id}/versions", versions)
        .get("/api/templates/{id}/versions/{version}", version)
        .get("/api/templates/{id}/export", export)
        .post("/api/templates/{id}/skills", add_skill)
        .delete("/api/templates/{id}/skills/{name}", remove_skill)
        .map(|r| r.layer(DefaultBodyLimit::max(TEMPLATE_FILE_MAX_BYTES)))
}

/// The zip of a skill: the request's body (`application/zip`), or the
/// `file` part of a browser's form.
async fn skill_zip(request: Request) -> Result<Vec<u8>, AppError> {
    let too_large = || {
        AppError::TooLarge(format!(
            "A skill's zip is at most {} KiB.",
            TEMPLATE_FILE_MAX_BYTES / 1024
        ))
    };
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_form {
        let body = Bytes::from_request(request, &()).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                AppError::Invalid("The skill's zip could not be read.".into())
            }
        })?;
        return Ok(body.to_vec());
    }
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|_| AppError::Invalid("The upload is not a readable form.".into()))?;
    let refused = |e: MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            AppError::Invalid("The upload is not a readable form.".into())
        }
    };
    while let Some(field) = form.next_field().await.map_err(refused)? {
        if field.name() == Some("file") {
            return Ok(field.bytes().await.map_err(refused)?.to_vec());
        }
    }
    Err(AppError::Invalid("Choose a skill's zip file.".into()))
}

/// Adds (or replaces, by name) a skill from its zip: a new version. A
/// browser's form is sent back to the agent's page.
async fn add_skill(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
    request: Request,
) -> Response {
    let browser = wants_html(request.headers());
    let added = async {
        // The caller's right first: nothing of a stranger's upload is read.
        paddock.get_template(&identity.caller, id).await?;
        let skill = skill_archive::read(&skill_zip(request).await?)?;
        paddock.save_skill(&identity.caller, id, skill).await
    }
    .await;
    match added {
        Ok(_) if browser => Redirect::to(&format!("/agents/{id}")).into_response(),
        Ok(t) => Json(t).into_response(),
        Err(e) if browser && !matches!(e, AppError::NotFound(_)) => {
            let error = ApiError::from(e).kind();
            Redirect::to(&format!("/agents/{id}?skill_error={error}")).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn remove_skill(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<AgentTemplate>> {
    let Path((_, name)) = path.map_err(|_| AppError::NotFound("Skill".into()))?;
    Ok(Json(
        paddock.remove_skill(&identity.caller, id, name).await?,
    ))
}

fn created(t: AgentTemplate) -> impl IntoResponse {
    let location = format!("/api/templates/{}", t.id);
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(t))
}

async fn list(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
) -> ApiResult<Json<Vec<TemplateSummary>>> {
    Ok(Json(paddock.list_templates(&identity.caller).await?))
}

async fn create(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    body: Result<Json<TemplateDraft>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(draft) = body?;
    Ok(created(
        paddock
            .save_template(&identity.caller, None, None, draft)
            .await?,
    ))
}

/// A template file in the body, JSON or TOML.
async fn import(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> ApiResult<impl IntoResponse> {
    let file = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::TooLarge(format!(
                "A template file is at most {} KiB.",
                TEMPLATE_FILE_MAX_BYTES / 1024
            ))
        } else {
            AppError::Invalid("A template file is UTF-8 text (JSON or TOML).".into())
        }
    })?;
    Ok(created(
        paddock.import_template(&identity.caller, file).await?,
    ))
}

/// The current version, tagged with its number (`ETag: "3"`), which an
/// update may name in `If-Match`.
async fn get(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
) -> ApiResult<Response> {
    let template = paddock.get_template(&identity.caller, id).await?;
    Ok((
        [(header::ETAG, format!("\"{}\"", template.version))],
        Json(template),
    )
        .into_response())
}

/// Saves the next version; with `If-Match: "<version>"`, only if that is
/// still the current one (412 `stale` if it was saved again since).
async fn update(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
    headers: HeaderMap,
    body: Result<Json<TemplateDraft>, JsonRejection>,
) -> ApiResult<Json<AgentTemplate>> {
    let base = if_match(&headers)?;
    let Json(draft) = body?;
    Ok(Json(
        paddock
            .save_template(&identity.caller, Some(id), base, draft)
            .await?,
    ))
}

/// The version an `If-Match` names (`"3"`, `3`, or `W/"3"`: proxies that
/// compress answers weaken tags, and a version is one whatever they say);
/// `None` without one, or for `*`.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, AppError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default().trim();
    if value == "*" {
        return Ok(None);
    }
    let value = value.strip_prefix("W/").unwrap_or(value);
    let tag = value
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(value);
    tag.parse().map(Some).map_err(|_| {
        AppError::Invalid(
            "If-Match names a version of the agent, as its ETag gives it (\"3\").".into(),
        )
    })
}

async fn delete(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
) -> ApiResult<StatusCode> {
    paddock.delete_template(&identity.caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn duplicate(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
) -> ApiResult<impl IntoResponse> {
    Ok(created(
        paddock.duplicate_template(&identity.caller, id).await?,
    ))
}

async fn versions(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
) -> ApiResult<Json<Vec<TemplateSummary>>> {
    Ok(Json(paddock.template_versions(&identity.caller, id).await?))
}

/// One version kept, whole (`ETag` its number, as the current one's).
async fn version(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> ApiResult<Response> {
    let Path((_, version)) = path.map_err(|_| AppError::NotFound("Version".into()))?;
    let template = paddock
        .templates
        .version(&identity.caller, id, version)
        .await?;
    Ok((
        [(header::ETAG, format!("\"{}\"", template.version))],
        Json(template),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    #[serde(default)]
    format: FileFormat,
}

/// The template's file, as a download named after it.
async fn export(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(id): TemplatePath,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query.map_err(|_| AppError::Invalid("format is json or toml.".into()))?;
    let t = paddock.get_template(&identity.caller, id).await?;
    let text = agent_templates::render(&t.draft, query.format)?;
    let stem: String = t
        .draft
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let disposition = format!(
        "attachment; filename=\"{stem}.{}\"",
        query.format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, query.format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        text,
    ))
}
