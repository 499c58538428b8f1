//! Agent templates ("agents" in the dashboard): a named, reusable set of
//! session settings that sessions are created from. Every save is a new
//! version; a session records the template and version it was made from
//! and keeps its own copy of the settings, so editing a template never
//! changes a session that exists. A template's file (export and import) is
//! its [`TemplateDraft`]: it names secrets but never holds a value.

use crate::domain::{check_name, AppError, Engine, NewSession, PermissionMode, UserId};
use crate::text::is_hidden_format;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::domain::{TemplateId, TemplateRef};

/// Longest description accepted, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 2000;
/// Largest template file accepted for import, in bytes; every template
/// saved fits in its JSON file.
pub const TEMPLATE_FILE_MAX_BYTES: usize = 1536 * 1024;
/// Templates one person may have.
pub const TEMPLATES_PER_OWNER: i64 = 100;

/// What a person writes: a template's name, description and the settings
/// of its sessions (as a session is created with; `session.name`, when
/// given, is its sessions' default name instead of the template's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDraft {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub session: NewSession,
    /// The permission mode its triggered sessions keep to, whatever a
    /// trigger says: `ask` (or stricter) or `read-only`, so that a
    /// stranger's delivery runs nothing unattended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers_require: Option<PermissionMode>,
}

impl TemplateDraft {
    /// Refuses what no session could be made from; the draft tidied.
    pub fn validate(self) -> Result<Self, AppError> {
        let name = check_name("template", &self.name)?;
        let description = self.description.trim().to_owned();
        if description.chars().count() > DESCRIPTION_MAX_CHARS
            || description
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t' || is_hidden_format(c))
        {
            return Err(AppError::Invalid(format!(
                "The description is at most {DESCRIPTION_MAX_CHARS} characters of text, without \
                 hidden characters (such as ones that turn text around)."
            )));
        }
        if self.session.template.is_some() {
            return Err(AppError::Invalid(
                "A template cannot start from another template.".into(),
            ));
        }
        self.sessions_from(NewSession::default()).validate()?;
        if let Some(mode @ (PermissionMode::AcceptEdits | PermissionMode::Auto)) =
            self.triggers_require
        {
            return Err(AppError::Invalid(format!(
                "Triggered sessions may be held to ask or read-only, not {mode}."
            )));
        }
        Ok(Self {
            name,
            description,
            session: self.session,
            triggers_require: self.triggers_require,
        })
    }

    /// A session request with what `request` leaves unset taken from this
    /// template; named after the template unless told otherwise.
    pub fn sessions_from(&self, request: NewSession) -> NewSession {
        let mut base = self.session.clone();
        if base.name.trim().is_empty() {
            base.name = self.name.clone();
        }
        request.over(base)
    }
}

/// A template's version as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentTemplate {
    pub id: TemplateId,
    /// 1 for the first save, one more for each save after it.
    pub version: i64,
    /// Whose it is; `None` for the local operator's, with sign-in off.
    pub owner: Option<UserId>,
    #[serde(flatten)]
    pub draft: TemplateDraft,
    pub created_at: DateTime<Utc>,
    /// When this version was saved, and by whom.
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl AgentTemplate {
    pub fn reference(&self) -> TemplateRef {
        TemplateRef {
            id: self.id,
            name: self.draft.name.clone(),
            version: self.version,
        }
    }
}

/// What the dashboard's lists show of a template, to choose one: not its
/// settings, whose instructions and skills can be a megabyte each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateSummary {
    pub id: TemplateId,
    pub version: i64,
    pub name: String,
    pub description: String,
    pub engine: Engine,
    /// `None`: the server's default.
    pub model: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EnvVar;

    #[test]
    fn a_session_takes_what_it_leaves_unset_from_its_template() {
        let t = TemplateDraft {
            name: "Reviewer".into(),
            session: NewSession {
                model: Some("claude-opus-4-5".into()),
                permission_mode: Some(PermissionMode::ReadOnly),
                env: vec![EnvVar {
                    name: "A".into(),
                    value: "1".into(),
                }],
                ..Default::default()
            },
            ..Default::default()
        }
        .validate()
        .unwrap();
        let spec = t
            .sessions_from(NewSession {
                permission_mode: Some(PermissionMode::Ask),
                ..Default::default()
            })
            .validate()
            .unwrap();
        assert_eq!(spec.name, "Reviewer");
        assert_eq!(spec.model, "claude-opus-4-5");
        assert_eq!(spec.permission_mode, PermissionMode::Ask);
        assert_eq!(spec.env.len(), 1);
    }

    #[test]
    fn bad_templates_are_refused() {
        let draft = |name: &str, description: &str, session: NewSession| TemplateDraft {
            name: name.into(),
            description: description.into(),
            session,
            triggers_require: None,
        };
        for bad in [
            draft("", "", NewSession::default()),
            draft(
                "x",
                &"d".repeat(DESCRIPTION_MAX_CHARS + 1),
                NewSession::default(),
            ),
            draft("x", "bell\u{7}", NewSession::default()),
            draft("x", "turned \u{202e}around", NewSession::default()),
            draft(
                "x",
                "",
                NewSession {
                    template: Some(TemplateId::nil()),
                    ..Default::default()
                },
            ),
            draft(
                "x",
                "",
                NewSession {
                    model: Some("bad model".into()),
                    ..Default::default()
                },
            ),
        ] {
            assert!(bad.validate().is_err());
        }
    }
}
