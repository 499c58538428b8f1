//! Server functions for a session's workspace: folders and files as the
//! dashboard shows them. Downloads, the archive and uploads are plain HTTP
//! routes of the server (`/api/sessions/{id}/files…`), since they stream
//! bytes rather than JSON.

#[cfg(feature = "ssr")]
use super::ssr;
use super::UrlInJsonOut;
use crate::domain::AppError;
use crate::files::{DiskUse, FileEntry, FileView};
use leptos::prelude::*;

#[server(endpoint = "list_files", output = UrlInJsonOut)]
pub async fn list_files(id: String, path: String) -> Result<Vec<FileEntry>, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .list_files(&ssr::caller()?, ssr::parse_id(&id)?, path)
                .await
        }
        .await,
    )
}

#[server(endpoint = "view_file", output = UrlInJsonOut)]
pub async fn view_file(id: String, path: String) -> Result<FileView, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .view_file(&ssr::caller()?, ssr::parse_id(&id)?, path)
                .await
        }
        .await,
    )
}

#[server(endpoint = "delete_file", output = UrlInJsonOut)]
pub async fn delete_file(id: String, path: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .delete_file(&ssr::caller()?, ssr::parse_id(&id)?, path)
                .await
        }
        .await,
    )
}

#[server(endpoint = "workspace_disk", output = UrlInJsonOut)]
pub async fn workspace_disk(id: String) -> Result<DiskUse, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .disk_use(&ssr::caller()?, ssr::parse_id(&id)?)
                .await
        }
        .await,
    )
}
