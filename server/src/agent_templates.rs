//! Agent templates as people reach them: which templates a caller may use
//! (their own; an admin all of them; with sign-in off the local operator,
//! an admin), saving, duplicating and deleting them, and their files (the
//! export and import format, JSON or TOML, which never holds a secret's
//! value: a template names its secrets only).

use crate::store::Store;
use app::accounts::Caller;
use app::agents::{
    AgentTemplate, TemplateDraft, TemplateId, TemplateSummary, TEMPLATES_PER_OWNER,
    TEMPLATE_FILE_MAX_BYTES,
};
use app::domain::{AppError, NewSession, NAME_MAX_CHARS};
use app::workspace_source::WorkspaceSource;
use std::sync::Arc;

/// The store's templates, behind the rule of who may use which.
pub struct TemplateLibrary {
    store: Arc<dyn Store>,
}

fn not_found(id: TemplateId) -> AppError {
    AppError::NotFound(format!("Agent {id}"))
}

/// A save based on a version of a template that is no longer its current
/// one: another save came between.
fn stale(base: i64, now: i64) -> AppError {
    AppError::Stale(format!(
        "This agent was saved again since version {base} (it is at version {now}): \
         load it again, then make the change."
    ))
}

fn may_use(caller: &Caller, t: &AgentTemplate) -> bool {
    caller.is_admin() || (t.owner.is_some() && t.owner == caller.user)
}

impl TemplateLibrary {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The current version of a template the caller may use; one they may
    /// not is "not found", like an unknown id.
    pub async fn get(&self, caller: &Caller, id: TemplateId) -> Result<AgentTemplate, AppError> {
        match self.store.get_template(id).await? {
            Some(t) if may_use(caller, &t) => Ok(t),
            _ => Err(not_found(id)),
        }
    }

    /// The template a session of the caller's starts from, with `request`
    /// over it. Another person's (an admin may use every one) may not lend
    /// the session secrets or a git token by name: they would be the
    /// caller's own, spent where that person's settings say.
    pub async fn for_session(
        &self,
        caller: &Caller,
        id: TemplateId,
        request: &NewSession,
    ) -> Result<AgentTemplate, AppError> {
        let t = self.get(caller, id).await?;
        if t.owner == caller.user {
            return Ok(t);
        }
        let theirs = &t.draft.session;
        let mut named: Vec<String> = Vec::new();
        if request.secrets.is_empty() {
            named.extend(theirs.secrets.iter().map(|s| format!("the secret {s}")));
        }
        if let (
            None,
            Some(WorkspaceSource::Git {
                credential: Some(c),
                ..
            }),
        ) = (&request.source, &theirs.source)
        {
            named.push(format!("the git token {c}"));
        }
        if named.is_empty() {
            return Ok(t);
        }
        Err(AppError::Forbidden(format!(
            "Agent {:?} is another person's, and names {}: in a session of yours they would \
             be yours. Duplicate it to make it yours, and read what it does with them first.",
            t.draft.name,
            named.join(" and ")
        )))
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<TemplateSummary>, AppError> {
        if caller.is_admin() {
            return Ok(self.store.list_templates(None).await?);
        }
        match caller.user {
            Some(user) => Ok(self.store.list_templates(Some(user)).await?),
            None => Ok(Vec::new()),
        }
    }

    pub async fn versions(
        &self,
        caller: &Caller,
        id: TemplateId,
    ) -> Result<Vec<TemplateSummary>, AppError> {
        self.get(caller, id).await?;
        Ok(self.store.template_versions(id).await?)
    }

    /// One version kept, whole.
    pub async fn version(
        &self,
        caller: &Caller,
        id: TemplateId,
        version: i64,
    ) -> Result<AgentTemplate, AppError> {
        self.get(caller, id).await?;
        self.store
            .get_template_version(id, version)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("Version {version} of agent {id}")))
    }

    /// Refuses a caller who may not save this template (a new one: who may
    /// not make sessions): checked before anything of the draft is.
    pub async fn may_save(&self, caller: &Caller, id: Option<TemplateId>) -> Result<(), AppError> {
        caller.may_create_sessions()?;
        if let Some(id) = id {
            self.get(caller, id).await?;
        }
        Ok(())
    }

    /// Saves a validated draft: a new template of the caller's, or the next
    /// version of one they may use; with a `base`, only if that is still
    /// its current version (else [`AppError::Stale`]: another save came
    /// between the read the draft was made from and this one).
    pub async fn save(
        &self,
        caller: &Caller,
        id: Option<TemplateId>,
        base: Option<i64>,
        draft: &TemplateDraft,
    ) -> Result<AgentTemplate, AppError> {
        self.may_save(caller, id).await?;
        // So that it can be exported, and imported again.
        let size = render(draft, FileFormat::Json)?.len();
        if size > TEMPLATE_FILE_MAX_BYTES {
            return Err(AppError::TooLarge(format!(
                "An agent is at most {} KiB as a file; this one would be {} KiB.",
                TEMPLATE_FILE_MAX_BYTES / 1024,
                size / 1024
            )));
        }
        let by = caller.label();
        let saved = match id {
            None if self.store.count_templates(caller.user).await? >= TEMPLATES_PER_OWNER => {
                return Err(AppError::Conflict(format!(
                    "A person has at most {TEMPLATES_PER_OWNER} agents: delete one first."
                )));
            }
            None => self.store.create_template(caller.user, draft, &by).await?,
            Some(id) => match self.store.update_template(id, base, draft, &by).await? {
                Some(saved) => saved,
                None => {
                    return Err(match (base, self.store.get_template(id).await?) {
                        (Some(base), Some(now)) => stale(base, now.version),
                        _ => not_found(id),
                    })
                }
            },
        };
        tracing::info!(template = %saved.id, version = saved.version, by = %by, "agent template saved");
        Ok(saved)
    }

    /// The settings of a template the caller may use, named as its copy:
    /// to save as a new one of theirs.
    pub async fn copy(&self, caller: &Caller, id: TemplateId) -> Result<TemplateDraft, AppError> {
        let mut draft = self.get(caller, id).await?.draft;
        let suffix = " (copy)";
        draft.name = draft
            .name
            .chars()
            .take(NAME_MAX_CHARS - suffix.len())
            .chain(suffix.chars())
            .collect();
        Ok(draft)
    }

    pub async fn delete(&self, caller: &Caller, id: TemplateId) -> Result<(), AppError> {
        caller.may_create_sessions()?;
        self.get(caller, id).await?;
        self.store.delete_template(id).await?;
        tracing::info!(template = %id, by = %caller.label(), "agent template deleted");
        Ok(())
    }
}

/// How a template file is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    #[default]
    Json,
    Toml,
}

impl FileFormat {
    pub const ALL: [FileFormat; 2] = [FileFormat::Json, FileFormat::Toml];

    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Json => "json",
            FileFormat::Toml => "toml",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileFormat::Json => "application/json",
            FileFormat::Toml => "application/toml",
        }
    }
}

/// A template's file: its draft, as JSON or TOML.
pub fn render(draft: &TemplateDraft, format: FileFormat) -> Result<String, AppError> {
    let text = match format {
        FileFormat::Json => serde_json::to_string_pretty(draft).map_err(|e| e.to_string()),
        FileFormat::Toml => toml::to_string(draft).map_err(|e| e.to_string()),
    };
    text.map_err(|e| {
        tracing::error!("cannot write a template file: {e}");
        AppError::Internal
    })
}

/// Reads a template file: JSON when it starts with `{`, else TOML; fields
/// it does not know are refused, like everywhere else.
pub fn parse(text: &str) -> Result<TemplateDraft, AppError> {
    if text.len() > TEMPLATE_FILE_MAX_BYTES {
        return Err(AppError::TooLarge(format!(
            "A template file is at most {} KiB.",
            TEMPLATE_FILE_MAX_BYTES / 1024
        )));
    }
    let draft = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not a template file (JSON): {e}"))
    } else {
        toml::from_str(text).map_err(|e| format!("not a template file (TOML): {e}"))
    };
    draft.map_err(|e| AppError::Invalid(e.chars().take(500).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::{EnvVar, NewSession, PermissionMode, SandboxLimits};

    #[test]
    fn files_round_trip_in_both_formats_and_refuse_strangers() {
        let draft = TemplateDraft {
            name: "Reviewer".into(),
            description: "Reads, never writes.\nTwo lines.".into(),
            session: NewSession {
                model: Some("claude-opus-4-5".into()),
                permission_mode: Some(PermissionMode::ReadOnly),
                limits: SandboxLimits {
                    memory_mb: Some(512),
                    ..Default::default()
                },
                env: vec![EnvVar {
                    name: "LANGUAGE".into(),
                    value: "en \"quoted\"".into(),
                }],
                secrets: vec!["NPM_TOKEN".into()],
                ..Default::default()
            },
            triggers_require: None,
        };
        for format in FileFormat::ALL {
            let text = render(&draft, format).unwrap();
            assert_eq!(parse(&text).unwrap(), draft, "{format:?}: {text}");
        }
        let toml = render(&draft, FileFormat::Toml).unwrap();
        assert!(toml.contains("[session]"), "{toml}");
        assert!(parse("name = \"x\"\nshell = \"rm -rf\"").is_err());
        assert!(parse("{\"name\": \"x\", \"session\": {\"nope\": 1}}").is_err());
        assert!(parse("not = [valid").is_err());
        assert!(matches!(
            parse(&"#".repeat(TEMPLATE_FILE_MAX_BYTES + 1)),
            Err(AppError::TooLarge(_))
        ));
    }
}
