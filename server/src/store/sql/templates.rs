//! [`Templates`] in SQL.

use super::{timestamp, SqlStore, StoredTime};
use crate::store::templates::{Templates, VERSIONS_KEPT};
use crate::store::{Result, StoreError};
use app::agents::{AgentTemplate, TemplateDraft, TemplateId, TemplateSummary};
use app::domain::{Engine, UserId};
use chrono::Utc;

/// What the lists show of a template's version (`t`, `v`).
const SUMMARY_COLUMNS: &str =
    "t.id, v.version, v.name, v.description, v.engine, v.model, v.saved_at, v.saved_by";
const TEMPLATE_COLUMNS: &str = "t.id, t.owner_id, t.created_at, v.version, v.name, \
     v.description, v.settings, v.triggers_require, v.saved_at, v.saved_by";

#[derive(sqlx::FromRow)]
struct TemplateRow {
    id: String,
    owner_id: Option<String>,
    created_at: StoredTime,
    version: i64,
    name: String,
    description: String,
    settings: String,
    triggers_require: Option<String>,
    saved_at: StoredTime,
    saved_by: String,
}

impl TryFrom<TemplateRow> for AgentTemplate {
    type Error = StoreError;
    fn try_from(r: TemplateRow) -> Result<Self> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("template {}: {what}: {e}", r.id))
        };
        Ok(AgentTemplate {
            id: r.id.parse().map_err(|e| corrupt("id", &e))?,
            owner: r
                .owner_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| corrupt("owner_id", &e))?,
            version: r.version,
            draft: TemplateDraft {
                session: serde_json::from_str(&r.settings).map_err(|e| corrupt("settings", &e))?,
                name: r.name,
                description: r.description,
                triggers_require: r
                    .triggers_require
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| corrupt("triggers_require", &e))?,
            },
            created_at: r.created_at.into(),
            updated_at: r.saved_at.into(),
            updated_by: r.saved_by,
        })
    }
}

fn settings(draft: &TemplateDraft) -> Result<String> {
    serde_json::to_string(&draft.session).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Stores a version of a template, with what the lists show of it
/// (see [`Templates::list_templates`]) beside its settings.
async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: TemplateId,
    version: i64,
    draft: &TemplateDraft,
    saved_at: &str,
    by: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO agent_template_versions \
         (template_id, version, name, description, settings, triggers_require, engine, model, \
          saved_at, saved_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id.to_string())
    .bind(version)
    .bind(&draft.name)
    .bind(&draft.description)
    .bind(settings(draft)?)
    .bind(draft.triggers_require.map(|m| m.as_str()))
    .bind(draft.session.engine.map(|e| e.as_str()))
    .bind(draft.session.model.as_deref())
    .bind(saved_at)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    id: String,
    version: i64,
    name: String,
    description: String,
    engine: Option<String>,
    model: Option<String>,
    saved_at: StoredTime,
    saved_by: String,
}

impl TryFrom<SummaryRow> for TemplateSummary {
    type Error = StoreError;
    fn try_from(r: SummaryRow) -> Result<Self> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("template {}: {what}: {e}", r.id))
        };
        Ok(TemplateSummary {
            id: r.id.parse().map_err(|e| corrupt("id", &e))?,
            version: r.version,
            name: r.name,
            description: r.description,
            engine: match r.engine {
                Some(engine) => engine.parse().map_err(|e| corrupt("engine", &e))?,
                None => Engine::Native,
            },
            model: r.model,
            updated_at: r.saved_at.into(),
            updated_by: r.saved_by,
        })
    }
}

impl SqlStore {
    async fn template_version(
        &self,
        id: TemplateId,
        version: Option<i64>,
    ) -> Result<Option<AgentTemplate>> {
        let row: Option<TemplateRow> = sqlx::query_as(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM agent_templates t \
             JOIN agent_template_versions v ON v.template_id = t.id \
             AND v.version = COALESCE($2, t.version) WHERE t.id = $1"
        ))
        .bind(id.to_string())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(AgentTemplate::try_from).transpose()
    }
}

#[async_trait::async_trait]
impl Templates for SqlStore {
    async fn create_template(
        &self,
        owner: Option<UserId>,
        draft: &TemplateDraft,
        by: &str,
    ) -> Result<AgentTemplate> {
        let id = uuid::Uuid::now_v7();
        let now = timestamp(Utc::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agent_templates (id, owner_id, version, created_at) VALUES ($1, $2, 1, $3)",
        )
        .bind(id.to_string())
        .bind(owner.map(|o| o.to_string()))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        insert_version(&mut tx, id, 1, draft, &now, by).await?;
        tx.commit().await?;
        self.template_version(id, None)
            .await?
            .ok_or_else(|| StoreError::Gone(format!("template {id}")))
    }

    async fn update_template(
        &self,
        id: TemplateId,
        base: Option<i64>,
        draft: &TemplateDraft,
        by: &str,
    ) -> Result<Option<AgentTemplate>> {
        let mut tx = self.pool.begin().await?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE agent_templates SET version = version + 1 \
             WHERE id = $1 AND ($2 IS NULL OR version = $2) RETURNING version",
        )
        .bind(id.to_string())
        .bind(base)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            return Ok(None);
        };
        let now = timestamp(Utc::now());
        insert_version(&mut tx, id, version, draft, &now, by).await?;
        sqlx::query("DELETE FROM agent_template_versions WHERE template_id = $1 AND version <= $2")
            .bind(id.to_string())
            .bind(version - VERSIONS_KEPT)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.template_version(id, Some(version)).await
    }

    async fn get_template(&self, id: TemplateId) -> Result<Option<AgentTemplate>> {
        self.template_version(id, None).await
    }

    async fn template_versions(&self, id: TemplateId) -> Result<Vec<TemplateSummary>> {
        let rows: Vec<SummaryRow> = sqlx::query_as(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM agent_templates t \
             JOIN agent_template_versions v ON v.template_id = t.id \
             WHERE t.id = $1 ORDER BY v.version DESC LIMIT {VERSIONS_KEPT}"
        ))
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TemplateSummary::try_from).collect()
    }

    async fn get_template_version(
        &self,
        id: TemplateId,
        version: i64,
    ) -> Result<Option<AgentTemplate>> {
        self.template_version(id, Some(version)).await
    }

    async fn list_templates(&self, owner: Option<UserId>) -> Result<Vec<TemplateSummary>> {
        let owner = owner.map(|o| o.to_string());
        let rows: Vec<SummaryRow> = sqlx::query_as(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM agent_templates t \
             JOIN agent_template_versions v ON v.template_id = t.id AND v.version = t.version \
             WHERE $1 IS NULL OR t.owner_id = $1 \
             ORDER BY LOWER(v.name), t.created_at LIMIT 1000"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                TemplateSummary::try_from(row)
                    .inspect_err(|e| tracing::error!("agent template left out of the list: {e}"))
                    .ok()
            })
            .collect())
    }

    async fn count_templates(&self, owner: Option<UserId>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM agent_templates \
             WHERE owner_id = $1 OR (owner_id IS NULL AND $1 IS NULL)",
        )
        .bind(owner.map(|o| o.to_string()))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn delete_template(&self, id: TemplateId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM agent_templates WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
