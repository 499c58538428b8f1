//! Server functions for a session's changes: the files changed since it
//! started from its repository, one file's diff, and the commit and push of
//! its working branch.

#[cfg(feature = "ssr")]
use super::ssr;
use super::UrlInJsonOut;
use crate::changes::{Changes, Committed, FileDiff};
use crate::domain::AppError;
use leptos::prelude::*;

#[server(endpoint = "list_changes", output = UrlInJsonOut)]
pub async fn list_changes(id: String) -> Result<Changes, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .changes(&ssr::caller()?, ssr::parse_id(&id)?)
                .await
        }
        .await,
    )
}

#[server(endpoint = "change_diff", output = UrlInJsonOut)]
pub async fn change_diff(id: String, path: String) -> Result<FileDiff, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .change_diff(&ssr::caller()?, ssr::parse_id(&id)?, path)
                .await
        }
        .await,
    )
}

#[server(endpoint = "commit_changes", output = UrlInJsonOut)]
pub async fn commit_changes(id: String, message: String) -> Result<Committed, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .commit_changes(&ssr::caller()?, ssr::parse_id(&id)?, message)
                .await
        }
        .await,
    )
}

#[server(endpoint = "push_changes", output = UrlInJsonOut)]
pub async fn push_changes(id: String) -> Result<Committed, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .push_changes(&ssr::caller()?, ssr::parse_id(&id)?)
                .await
        }
        .await,
    )
}
