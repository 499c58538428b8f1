//! The agent templates half of the store: each save a new version, the
//! template's row its owner and current version. Every database implements
//! it beside [`Store`](super::Store), which requires it.

use super::Result;
use app::agents::{AgentTemplate, TemplateDraft, TemplateId, TemplateSummary};
use app::domain::UserId;

/// Versions of a template kept: each save removes those older than the
/// newest this many.
pub const VERSIONS_KEPT: i64 = 20;

#[async_trait::async_trait]
pub trait Templates {
    /// Saves version 1 of a new template.
    async fn create_template(
        &self,
        owner: Option<UserId>,
        draft: &TemplateDraft,
        by: &str,
    ) -> Result<AgentTemplate>;
    /// Saves the next version of a template, removing those past the
    /// newest [`VERSIONS_KEPT`]; `None` if it does not exist or, with a
    /// `base`, is no longer at that version (saved again since it was read).
    async fn update_template(
        &self,
        id: TemplateId,
        base: Option<i64>,
        draft: &TemplateDraft,
        by: &str,
    ) -> Result<Option<AgentTemplate>>;
    /// The current version.
    async fn get_template(&self, id: TemplateId) -> Result<Option<AgentTemplate>>;
    /// What the lists show of the versions kept, newest first (read
    /// without their settings).
    async fn template_versions(&self, id: TemplateId) -> Result<Vec<TemplateSummary>>;
    /// One version kept, whole.
    async fn get_template_version(
        &self,
        id: TemplateId,
        version: i64,
    ) -> Result<Option<AgentTemplate>>;
    /// What the lists show of the current versions of the owner's
    /// templates (`None`: everyone's), by name, read without their
    /// settings; one that cannot be read is logged and left out.
    async fn list_templates(&self, owner: Option<UserId>) -> Result<Vec<TemplateSummary>>;
    /// How many templates `owner` has (`None`: the local operator, with
    /// sign-in off).
    async fn count_templates(&self, owner: Option<UserId>) -> Result<i64>;
    /// Removes a template and its versions; `false` if it did not exist.
    /// Sessions made from it keep their settings and their reference.
    async fn delete_template(&self, id: TemplateId) -> Result<bool>;
}
