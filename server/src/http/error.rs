//! The one error type of the JSON API: an [`AppError`] answered as
//! `{"error": {"type": …, "message": …}}` with the status the shared types
//! give it ([`AppError::status`]), so the dashboard's server functions and
//! the REST API agree on every status.

use app::domain::AppError;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: AppError,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error's type, as the JSON body names it.
    pub fn kind(&self) -> &'static str {
        self.error.kind()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, error }
    }
}

/// A body refused as axum refuses it, as the error of its status: 415
/// (another content type) `unsupported_media_type`, 413 (over the size
/// limit) `too_large`, and 400 `invalid_request` for the rest (axum's 422
/// for well-formed JSON of the wrong shape included: to a script, both are
/// simply a bad request).
fn refused_body(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMedia(text),
        StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge(text),
        _ => AppError::Invalid(text),
    }
    .into()
}

/// A body that is not the JSON asked for.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        refused_body(rejection.status(), rejection.body_text())
    }
}

/// A body that could not be read whole, as for JSON.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        refused_body(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::Invalid(rejection.body_text()).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match self.error {
            // Never produced on the server; its text would mislead.
            AppError::Transport(_) => AppError::Internal.to_string(),
            ref e => e.to_string(),
        };
        let body =
            serde_json::json!({ "error": { "type": self.error.kind(), "message": message } });
        (self.status, Json(body)).into_response()
    }
}
