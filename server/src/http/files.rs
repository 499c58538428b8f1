//! `/api/sessions/{id}/files…` and `/archive`: a session's workspace over
//! plain HTTP, for the dashboard's links and forms and for scripts.
//!
//! - `GET …/files?path=src`: a folder's entries, as JSON.
//! - `GET …/files/{path}`: one file, as a download; `HEAD` says its size
//!   without reading it.
//! - `DELETE …/files/{path}`: a file, or a folder with all it holds (204),
//!   for those who may operate the session.
//! - `GET …/archive`: the whole workspace, a `.tar.gz` streamed as it is
//!   made.
//! - `POST …/files`: a multipart upload (`dir`, then one or more `file`
//!   parts), up to [`UPLOAD_MAX_BYTES`] in all, read only once the caller
//!   is known to may upload. A browser's form post (it asks for HTML) is
//!   sent back to the session's Files view (with the error's type, which
//!   the page words: never text from the request); a script gets the
//!   files written, as JSON (201).
//!
//! Downloads are attachments of type `application/octet-stream`, never
//! rendered by the browser: a workspace file is the agent's, and may be
//! hostile HTML.

use super::body_deadline;
use super::error::{ApiError, ApiResult};
use super::extract::SessionPath;
use super::routes::Routes;
use super::{wants_html, BODY_LIMIT};
use crate::auth::Identity;
use crate::paddock::Paddock;
use crate::workspace_files::{clean, Upload};
use app::domain::{AppError, SessionId};
use app::files::{join, name_of, percent_encode, FileEntry, UPLOAD_MAX_BYTES};
use axum::body::Body;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

pub fn routes() -> Routes {
    // Reads and deletions: no body of their own.
    let without_body = Routes::default()
        .get("/api/sessions/{id}/files", list_folder)
        .get("/api/sessions/{id}/files/{*path}", download_file)
        .head("/api/sessions/{id}/files/{*path}", file_head)
        .delete("/api/sessions/{id}/files/{*path}", delete_file)
        .get("/api/sessions/{id}/archive", download_archive)
        .map(|r| r.layer(DefaultBodyLimit::max(BODY_LIMIT)));
    // The parts' headers and boundaries come on top of the files.
    let upload = Routes::default()
        .post("/api/sessions/{id}/files", upload)
        .map(|r| r.layer(DefaultBodyLimit::max(UPLOAD_MAX_BYTES + 64 * 1024)));
    without_body.merge(upload)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderQuery {
    #[serde(default)]
    path: String,
}

async fn list_folder(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    query: Result<Query<FolderQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<FileEntry>>> {
    let Query(query) = query?;
    Ok(Json(
        paddock
            .browse_folder(&identity.caller, id, &query.path)
            .await?,
    ))
}

/// `Content-Disposition` for a download named `name`: a plain ASCII
/// fallback and the exact name (RFC 6266, RFC 5987).
fn attachment(name: &str) -> HeaderValue {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{}",
        percent_encode(name)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

fn download(name: &str, content_type: &'static str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, attachment(name)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn download_file(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    Path((_, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (name, file) = paddock.download_file(&identity.caller, id, &path).await?;
    let mut response = download(
        &name,
        "application/octet-stream",
        Body::from_stream(file.body),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    Ok(response)
}

async fn file_head(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    Path((_, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (path, stat) = paddock.file_stat(&identity.caller, id, &path).await?;
    let mut response = download(name_of(&path), "application/octet-stream", Body::empty());
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(stat.size));
    Ok(response)
}

async fn delete_file(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    Path((_, path)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    paddock
        .delete_workspace_file(&identity.caller, id, &path)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn download_archive(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
) -> ApiResult<Response> {
    let (name, body) = paddock.archive_workspace(&identity.caller, id).await?;
    Ok(download(&name, "application/gzip", Body::from_stream(body)))
}

fn too_large() -> ApiError {
    AppError::TooLarge(format!(
        "An upload is at most {} MiB, all its files together.",
        UPLOAD_MAX_BYTES / 1024 / 1024
    ))
    .into()
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            AppError::Invalid(e.body_text()).into()
        }
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(e: MultipartRejection) -> Self {
        AppError::Invalid(e.body_text()).into()
    }
}

/// Files one upload holds at most.
const UPLOAD_FILES_MAX: usize = 10_000;

/// The parts of an upload form: the folder (into `dir`) first, then the
/// files.
async fn read_upload(
    form: Result<Multipart, MultipartRejection>,
    dir: &mut String,
) -> ApiResult<Vec<Upload>> {
    let mut form = form?;
    let mut files = Vec::new();
    let mut total = 0;
    // Cleaned once, as it comes (a path of thousands of parts cleaned for
    // each of thousands of files took the server's memory).
    let mut folder = clean(dir)?;
    while let Some(part) = form.next_field().await? {
        match part.name() {
            Some("dir") => {
                *dir = part.text().await?;
                folder = clean(dir)?;
            }
            Some("file") => {
                let name = part.file_name().unwrap_or_default().to_owned();
                let data = part.bytes().await?;
                // Names count: many empty files are many names.
                total += data.len() + name.len();
                if total > UPLOAD_MAX_BYTES {
                    return Err(too_large());
                }
                // A form posted with no file chosen sends one empty part.
                if name.is_empty() && data.is_empty() {
                    continue;
                }
                if files.len() == UPLOAD_FILES_MAX {
                    return Err(AppError::TooLarge(format!(
                        "An upload holds at most {UPLOAD_FILES_MAX} files."
                    ))
                    .into());
                }
                files.push(Upload {
                    path: clean(&join(&folder, &name))?,
                    data,
                });
            }
            other => {
                return Err(AppError::Invalid(format!(
                    "An upload has a \"dir\" and \"file\" parts, not {other:?}."
                ))
                .into())
            }
        }
    }
    Ok(files)
}

/// The session's Files view, at `dir`, for a browser's form post; with
/// the type of the error that stopped it.
fn back_to_files(id: SessionId, dir: &str, error: Option<&str>) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("view", "files");
    query.append_pair("dir", &clean(dir).unwrap_or_default());
    if let Some(error) = error {
        query.append_pair("error", error);
    }
    Redirect::to(&format!("/sessions/{id}?{}", query.finish())).into_response()
}

async fn upload(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    SessionPath(id): SessionPath,
    request: Request,
) -> Response {
    let browser = wants_html(request.headers());
    // A browser sees why on the page; 404s stay 404s (there is no page to
    // send it back to).
    let failed = |e: ApiError, dir: &str| {
        if browser && e.status() != StatusCode::NOT_FOUND {
            back_to_files(id, dir, Some(e.kind()))
        } else {
            e.into_response()
        }
    };
    let _slot = match paddock.may_upload(&identity.caller, id).await {
        Ok(slot) => slot,
        Err(e) => return failed(e.into(), ""),
    };
    // Whole in time, as an anonymous body must be: one sent a byte at a
    // time would hold its slot for ever (the stall counts from the last).
    let request = body_deadline::within(request, paddock.config.client_stall());
    let form = Multipart::from_request(request, &()).await;
    let mut dir = String::new();
    let files = match read_upload(form, &mut dir).await {
        Ok(files) => files,
        Err(e) => return failed(e, &dir),
    };
    match paddock.upload_files(&identity.caller, id, files).await {
        Ok(_) if browser => back_to_files(id, &dir, None),
        Ok(written) => (StatusCode::CREATED, Json(written)).into_response(),
        Err(e) => failed(e.into(), &dir),
    }
}

#[cfg(test)]
mod tests {
    use super::attachment;

    #[test]
    fn download_names_are_safe_in_a_header() {
        assert_eq!(
            attachment("a b.txt"),
            "attachment; filename=\"a_b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            attachment("\"x\r\n.rs"),
            "attachment; filename=\"_x__.rs\"; filename*=UTF-8''%22x%0D%0A.rs"
        );
        assert_eq!(
            attachment("ä.md"),
            "attachment; filename=\"_.md\"; filename*=UTF-8''%C3%A4.md"
        );
    }
}
