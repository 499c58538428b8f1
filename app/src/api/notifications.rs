//! Server functions for notification endpoints, as an agent's page and a
//! session's show them: each with its newest messages; make one (its
//! secret in the answer, this once), delete one, send a message again. An
//! endpoint's scope is named by `of` (`template` or `session`) and `id`.

use super::UrlInJsonOut;
#[cfg(feature = "ssr")]
use super::{ssr, template_id};
use crate::domain::AppError;
use crate::notifications::{EndpointRow, EndpointSecret};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
fn endpoint_id(id: &str) -> Result<crate::notifications::EndpointId, AppError> {
    id.trim()
        .parse()
        .map_err(|_| AppError::NotFound(format!("Notification endpoint {id:?}")))
}

/// The scope `of` (`template` or `session`) and `id` name.
#[cfg(feature = "ssr")]
fn scope(of: &str, id: &str) -> Result<crate::notifications::Scope, AppError> {
    use crate::notifications::Scope;
    match of {
        "template" => Ok(Scope::Template(template_id(id)?)),
        "session" => Ok(Scope::Session(ssr::parse_id(id)?)),
        _ => Err(AppError::Invalid(format!("Notifications of {of:?}?"))),
    }
}

#[server(endpoint = "list_notifications", output = UrlInJsonOut)]
pub async fn list_notifications(of: String, id: String) -> Result<Vec<EndpointRow>, AppError> {
    ssr::respond(
        async {
            let (backend, caller) = (ssr::backend()?, ssr::caller()?);
            let scope = scope(&of, &id)?;
            let mut rows = Vec::new();
            for endpoint in backend.list_endpoints(&caller, scope).await? {
                // One deleted meanwhile has none.
                let messages = backend
                    .notification_messages(&caller, endpoint.id)
                    .await
                    .unwrap_or_default();
                rows.push(EndpointRow { endpoint, messages });
            }
            Ok(rows)
        }
        .await,
    )
}

/// A new endpoint: `events`, the names of what it hears of.
#[server(endpoint = "create_notification", output = UrlInJsonOut)]
pub async fn create_notification(
    of: String,
    id: String,
    url: String,
    // (None checked: a form sends no field at all.)
    #[server(default)] events: Vec<String>,
) -> Result<EndpointSecret, AppError> {
    use crate::notifications::EndpointDraft;
    ssr::respond(
        async {
            let draft = EndpointDraft {
                url,
                events: events.iter().map(|e| e.parse()).collect::<Result<_, _>>()?,
            };
            let scope = scope(&of, &id)?;
            ssr::backend()?
                .create_endpoint(&ssr::caller()?, scope, draft)
                .await
        }
        .await,
    )
}

#[server(endpoint = "delete_notification", output = UrlInJsonOut)]
pub async fn delete_notification(id: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .delete_endpoint(&ssr::caller()?, endpoint_id(&id)?)
                .await
        }
        .await,
    )
}

#[server(endpoint = "redeliver_notification", output = UrlInJsonOut)]
pub async fn redeliver_notification(id: String, message: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .redeliver_notification(&ssr::caller()?, endpoint_id(&id)?, message)
                .await
        }
        .await,
    )
}
