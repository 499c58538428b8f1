//! Server functions for an agent template's triggers, as its page shows
//! them: each with its newest deliveries; make one (its secret in the
//! answer, this once), pause or resume it, rotate its secret, delete it.
//! Deliveries themselves are the server's `POST /hooks/{id}`.

use super::UrlInJsonOut;
#[cfg(feature = "ssr")]
use super::{ssr, template_id};
use crate::domain::AppError;
#[cfg(feature = "ssr")]
use crate::triggers::TriggerRow;
use crate::triggers::{Trigger, TriggerDraft, TriggerPanel, TriggerSecret};
use leptos::prelude::*;

/// How long the secret before a rotation from the dashboard is accepted.
pub const DASHBOARD_OVERLAP_SECS: u64 = 24 * 3600;

#[cfg(feature = "ssr")]
fn trigger_id(id: &str) -> Result<crate::triggers::TriggerId, AppError> {
    id.trim()
        .parse()
        .map_err(|_| AppError::NotFound(format!("Trigger {id:?}")))
}

#[server(endpoint = "list_triggers", output = UrlInJsonOut)]
pub async fn list_triggers(template: String) -> Result<TriggerPanel, AppError> {
    ssr::respond(
        async {
            let (backend, caller) = (ssr::backend()?, ssr::caller()?);
            let template = template_id(&template)?;
            let owner = backend.get_template(&caller, template).await?.owner;
            let yours = owner == caller.user && caller.require_signed_in().is_ok();
            let mut rows = Vec::new();
            for trigger in backend.list_triggers(&caller, template).await? {
                // One deleted meanwhile has none.
                let deliveries = backend
                    .trigger_deliveries(&caller, trigger.id)
                    .await
                    .unwrap_or_default();
                rows.push(TriggerRow {
                    trigger,
                    deliveries,
                });
            }
            Ok(TriggerPanel { rows, yours })
        }
        .await,
    )
}

/// A new trigger on `template`; `secret`, the key of a sender that signs
/// with its own (Mailgun, Twilio).
#[server(endpoint = "create_trigger", output = UrlInJsonOut)]
pub async fn create_trigger(
    template: String,
    draft: TriggerDraft,
    #[server(default)] secret: Option<String>,
) -> Result<TriggerSecret, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .create_trigger(
                    &ssr::caller()?,
                    template_id(&template)?,
                    draft,
                    secret.filter(|s| !s.trim().is_empty()),
                )
                .await
        }
        .await,
    )
}

#[server(endpoint = "pause_trigger", output = UrlInJsonOut)]
pub async fn pause_trigger(id: String, paused: bool) -> Result<Trigger, AppError> {
    ssr::respond(
        async {
            let (backend, caller, id) = (ssr::backend()?, ssr::caller()?, trigger_id(&id)?);
            let mut draft = backend.get_trigger(&caller, id).await?.draft;
            draft.paused = paused;
            backend.update_trigger(&caller, id, draft).await
        }
        .await,
    )
}

#[server(endpoint = "rotate_trigger_secret", output = UrlInJsonOut)]
pub async fn rotate_trigger_secret(
    id: String,
    #[server(default)] secret: Option<String>,
) -> Result<TriggerSecret, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .rotate_trigger_secret(
                    &ssr::caller()?,
                    trigger_id(&id)?,
                    std::time::Duration::from_secs(DASHBOARD_OVERLAP_SECS),
                    secret.filter(|s| !s.trim().is_empty()),
                )
                .await
        }
        .await,
    )
}

#[server(endpoint = "delete_trigger", output = UrlInJsonOut)]
pub async fn delete_trigger(id: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .delete_trigger(&ssr::caller()?, trigger_id(&id)?)
                .await
        }
        .await,
    )
}
