//! Server functions for agent templates: list, show, save (a new version
//! each time), duplicate, delete, import. A template's export is a download
//! (`GET /api/templates/{id}/export`), served by the REST API.

#[cfg(feature = "ssr")]
use super::{ssr, template_id};
use super::{SettingsForm, UrlInJsonOut};
use crate::agents::{AgentTemplate, TemplateSummary};
use crate::domain::AppError;
use leptos::prelude::*;

#[server(endpoint = "list_templates", output = UrlInJsonOut)]
pub async fn list_templates() -> Result<Vec<TemplateSummary>, AppError> {
    ssr::respond(ssr::backend()?.list_templates(&ssr::caller()?).await)
}

#[server(endpoint = "get_template", output = UrlInJsonOut)]
pub async fn get_template(id: String) -> Result<AgentTemplate, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .get_template(&ssr::caller()?, template_id(&id)?)
                .await
        }
        .await,
    )
}

#[server(endpoint = "template_versions", output = UrlInJsonOut)]
pub async fn template_versions(id: String) -> Result<Vec<TemplateSummary>, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .template_versions(&ssr::caller()?, template_id(&id)?)
                .await
        }
        .await,
    )
}

/// Saves the agent form: a new template without an `id`, else the next
/// version of that one, if it is still at `version` (the one the form was
/// made from) when one is given.
#[server(endpoint = "save_template", output = UrlInJsonOut)]
pub async fn save_template(
    #[server(default)] id: Option<String>,
    #[server(default)] version: Option<i64>,
    name: String,
    #[server(default)] description: Option<String>,
    #[server(flatten)] settings: SettingsForm,
    #[server(default)] triggers_require: Option<String>,
) -> Result<AgentTemplate, AppError> {
    ssr::respond(
        async {
            let id = id
                .filter(|i| !i.trim().is_empty())
                .map(|i| template_id(&i))
                .transpose()?;
            let (backend, caller) = (ssr::backend()?, ssr::caller()?);
            let mut draft = crate::agents::TemplateDraft {
                name,
                description: description.unwrap_or_default(),
                session: settings.parse()?,
                triggers_require: triggers_require
                    .filter(|m| !m.trim().is_empty())
                    .map(|m| m.parse())
                    .transpose()?,
            };
            // Skills are kept apart from the form (see save_skill), and so
            // are the sessions' name (the form has no field for it) and MCP
            // servers' variables (the form lists the commands), and their
            // command and arguments while their line stays as it was
            // written (a word of it may hold a space). The save is based on
            // the version the form shows, else the one read here, so that a
            // skill added meanwhile is not lost.
            let mut base = None;
            if let Some(id) = id {
                let current = backend.get_template(&caller, id).await?;
                base = Some(version.unwrap_or(current.version));
                let current = current.draft.session;
                draft.session.skills = current.skills;
                draft.session.name = current.name;
                for server in &mut draft.session.mcp_servers {
                    if let Some(same) = current.mcp_servers.iter().find(|m| m.name == server.name) {
                        server.env = same.env.clone();
                        if same.line() == server.line() {
                            server.command = same.command.clone();
                            server.args = same.args.clone();
                        }
                    }
                }
            }
            backend.save_template(&caller, id, base, draft).await
        }
        .await,
    )
}

#[server(endpoint = "duplicate_template", output = UrlInJsonOut)]
pub async fn duplicate_template(id: String) -> Result<AgentTemplate, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .duplicate_template(&ssr::caller()?, template_id(&id)?)
                .await
        }
        .await,
    )
}

#[server(endpoint = "delete_template", output = UrlInJsonOut)]
pub async fn delete_template(id: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .delete_template(&ssr::caller()?, template_id(&id)?)
                .await
        }
        .await,
    )
}

/// A new template from the text of a template file (JSON or TOML).
#[server(endpoint = "import_template", output = UrlInJsonOut)]
pub async fn import_template(file: String) -> Result<AgentTemplate, AppError> {
    ssr::respond(async { ssr::backend()?.import_template(&ssr::caller()?, file).await }.await)
}

/// Writes an agent's skill's `SKILL.md`, keeping its files: the skill
/// named `replaces` (the one edited, renamed when its name changed), else
/// the one of the same name, else a new one.
#[server(endpoint = "save_skill", output = UrlInJsonOut)]
pub async fn save_skill(
    id: String,
    markdown: String,
    #[server(default)] replaces: Option<String>,
) -> Result<AgentTemplate, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .write_skill_markdown(&ssr::caller()?, template_id(&id)?, replaces, markdown)
                .await
        }
        .await,
    )
}

#[server(endpoint = "remove_skill", output = UrlInJsonOut)]
pub async fn remove_skill(id: String, name: String) -> Result<AgentTemplate, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .remove_skill(&ssr::caller()?, template_id(&id)?, name)
                .await
        }
        .await,
    )
}
