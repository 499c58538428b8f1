//! `/api/templates/{id}/triggers` and `/api/triggers/{id}…`: an agent
//! template's triggers, for whoever may use the template: list and make
//! them (the secret is in the answer this once), change, pause or resume
//! one, rotate its secret (the old one accepted for an overlap), delete it,
//! and read its last deliveries. Deliveries themselves: `hooks.rs`.

use super::error::ApiResult;
use super::extract::{TemplatePath, TriggerPath};
use super::routes::Routes;
use crate::auth::Identity;
use crate::paddock::Paddock;
use app::api::Backend;
use app::domain::AppError;
use app::triggers::{Delivery, Trigger, TriggerDraft, TriggerSecret};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body (a draft with its templates).
const BODY_MAX_BYTES: usize = 64 * 1024;

pub fn routes() -> Routes {
    Routes::default()
        .get("/api/templates/{id}/triggers", list)
        .post("/api/templates/{id}/triggers", create)
        .get("/api/triggers/{id}", get)
        .put("/api/triggers/{id}", update)
        .delete("/api/triggers/{id}", delete)
        .post("/api/triggers/{id}/rotate", rotate)
        .get("/api/triggers/{id}/deliveries", deliveries)
        .map(|r| r.layer(DefaultBodyLimit::max(BODY_MAX_BYTES)))
}

async fn list(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(template): TemplatePath,
) -> ApiResult<Json<Vec<Trigger>>> {
    Ok(Json(
        paddock.list_triggers(&identity.caller, template).await?,
    ))
}

/// A new trigger: its draft, and for a sender that signs with its own key
/// (Mailgun, Twilio) that key as `secret`.
async fn create(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TemplatePath(template): TemplatePath,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(mut fields) = body?;
    let secret = match fields.remove("secret") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(key)) => Some(key),
        Some(_) => return Err(AppError::Invalid("A trigger's secret is a string.".into()).into()),
    };
    let draft: TriggerDraft = serde_json::from_value(fields.into())
        .map_err(|e| AppError::Invalid(format!("Not a trigger: {e}")))?;
    let made = paddock
        .create_trigger(&identity.caller, template, draft, secret)
        .await?;
    let location = format!("/api/triggers/{}", made.trigger.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(made),
    ))
}

async fn get(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TriggerPath(id): TriggerPath,
) -> ApiResult<Json<Trigger>> {
    Ok(Json(paddock.get_trigger(&identity.caller, id).await?))
}

async fn update(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TriggerPath(id): TriggerPath,
    body: Result<Json<TriggerDraft>, JsonRejection>,
) -> ApiResult<Json<Trigger>> {
    let Json(draft) = body?;
    Ok(Json(
        paddock.update_trigger(&identity.caller, id, draft).await?,
    ))
}

async fn delete(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TriggerPath(id): TriggerPath,
) -> ApiResult<StatusCode> {
    paddock.delete_trigger(&identity.caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How long the secret before a rotation stays accepted, and for a sender
/// that signs with its own key, its new key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotation {
    #[serde(default = "default_overlap")]
    overlap_secs: u64,
    #[serde(default)]
    secret: Option<String>,
}

fn default_overlap() -> u64 {
    24 * 3600
}

async fn rotate(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TriggerPath(id): TriggerPath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<TriggerSecret>> {
    let body = body?;
    // No body: the default overlap.
    let rotation = match body.is_empty() {
        true => Rotation {
            overlap_secs: default_overlap(),
            secret: None,
        },
        false => serde_json::from_slice::<Rotation>(&body)
            .map_err(|e| AppError::Invalid(format!("Not a rotation: {e}")))?,
    };
    Ok(Json(
        paddock
            .rotate_trigger_secret(
                &identity.caller,
                id,
                Duration::from_secs(rotation.overlap_secs),
                rotation.secret,
            )
            .await?,
    ))
}

async fn deliveries(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    TriggerPath(id): TriggerPath,
) -> ApiResult<Json<Vec<Delivery>>> {
    Ok(Json(
        paddock.trigger_deliveries(&identity.caller, id).await?,
    ))
}
