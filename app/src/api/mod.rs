//! Server functions: the dashboard's calls to the server. Each one is a thin
//! shell over the [`Backend`] the server provides as context, so this crate
//! never depends on the server crate.

use crate::accounts::SessionPeople;
use crate::domain::{AppError, Event, EventHtml, ServerInfo, Session, SessionSettings};
use leptos::prelude::*;
use leptos::server_fn;

#[cfg(feature = "ssr")]
pub use self::ssr::{Backend, SharedBackend};

#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    use crate::accounts::{
        AuditEntry, Caller, CredentialId, CredentialInfo, ListedToken, NewApiToken, Role,
        SessionPeople, Share, ShareLevel, User,
    };
    use crate::agents::{AgentTemplate, TemplateDraft, TemplateId, TemplateSummary};
    use crate::changes::{Changes, Committed, FileDiff};
    use crate::domain::{
        AppError, Decision, Event, NewSession, ServerInfo, Session, SessionId, SessionSettings,
        UserId,
    };
    use crate::files::{DiskUse, FileEntry, FileView};
    use crate::notifications::{
        Endpoint, EndpointDraft, EndpointId, EndpointSecret, Message as NotificationMessage, Scope,
    };
    use crate::skills::Skill;
    use crate::triggers::{Delivery, Trigger, TriggerDraft, TriggerId, TriggerSecret};
    use leptos::prelude::*;
    use std::sync::Arc;

    /// What the server implements for the dashboard's server functions.
    /// Every call that touches a session or an account takes the
    /// [`Caller`] the server's door found, and checks what they may do.
    #[async_trait::async_trait]
    pub trait Backend: Send + Sync + 'static {
        /// The sessions the caller may see.
        async fn list_sessions(&self, caller: &Caller) -> Result<Vec<Session>, AppError>;
        /// Validates the request (with its template's settings, if it
        /// names one) and creates the session.
        async fn create_session(
            &self,
            caller: &Caller,
            new: NewSession,
        ) -> Result<Session, AppError>;
        /// `Err(NotFound)` for an unknown id, and for one the caller may not
        /// see.
        async fn get_session(&self, caller: &Caller, id: SessionId) -> Result<Session, AppError>;
        /// Changes a session's settings (its owner or an admin); the
        /// session as it is then.
        async fn change_settings(
            &self,
            caller: &Caller,
            id: SessionId,
            settings: SessionSettings,
        ) -> Result<Session, AppError>;
        /// Stores the prompt and runs it now or after those queued before it.
        async fn send_prompt(
            &self,
            caller: &Caller,
            id: SessionId,
            text: String,
        ) -> Result<(), AppError>;
        /// Cancels what the session is doing and drops its queue.
        async fn stop(&self, caller: &Caller, id: SessionId) -> Result<(), AppError>;
        /// Answers a pending permission request (once), recorded with who
        /// decided.
        async fn decide(
            &self,
            caller: &Caller,
            id: SessionId,
            request_id: String,
            decision: Decision,
            reason: Option<String>,
        ) -> Result<(), AppError>;
        /// Removes the session, its sandbox and its workspace.
        async fn delete_session(&self, caller: &Caller, id: SessionId) -> Result<(), AppError>;
        /// What the server offers, as `caller` sees it (whether a model
        /// key would run their sessions).
        async fn server_info(&self, caller: &Caller) -> ServerInfo;
        /// Whether `token` is the first-admin setup link's, still unused.
        fn setup_link_open(&self, token: &str) -> bool;
        /// Up to `limit` events with `seq > after`, oldest first.
        async fn events(
            &self,
            caller: &Caller,
            id: SessionId,
            after: i64,
            limit: i64,
        ) -> Result<Vec<Event>, AppError>;

        /// Who owns the session, whom it is shared with, who watches it now.
        async fn session_people(
            &self,
            caller: &Caller,
            id: SessionId,
        ) -> Result<SessionPeople, AppError>;
        /// Shares the session with the user of `login` (`None`: stops
        /// sharing it with them).
        async fn share_session(
            &self,
            caller: &Caller,
            id: SessionId,
            login: String,
            level: Option<ShareLevel>,
        ) -> Result<Vec<Share>, AppError>;

        async fn list_users(&self, caller: &Caller) -> Result<Vec<User>, AppError>;
        async fn add_user(
            &self,
            caller: &Caller,
            login: String,
            display_name: String,
            role: Role,
            password: String,
        ) -> Result<User, AppError>;
        async fn change_user(
            &self,
            caller: &Caller,
            id: UserId,
            role: Option<Role>,
            disabled: Option<bool>,
        ) -> Result<User, AppError>;
        async fn reset_password(
            &self,
            caller: &Caller,
            id: UserId,
            password: String,
        ) -> Result<(), AppError>;

        async fn list_tokens(&self, caller: &Caller) -> Result<Vec<ListedToken>, AppError>;
        async fn create_token(
            &self,
            caller: &Caller,
            name: String,
            expires_in_days: Option<i64>,
        ) -> Result<NewApiToken, AppError>;
        async fn revoke_token(&self, caller: &Caller, id: uuid::Uuid) -> Result<(), AppError>;

        /// The agent templates the caller may use (their own; an admin's:
        /// all), by name.
        async fn list_templates(&self, caller: &Caller) -> Result<Vec<TemplateSummary>, AppError>;
        /// The current version; `Err(NotFound)` also for one the caller may
        /// not use.
        async fn get_template(
            &self,
            caller: &Caller,
            id: TemplateId,
        ) -> Result<AgentTemplate, AppError>;
        /// What the lists show of every version kept, newest first.
        async fn template_versions(
            &self,
            caller: &Caller,
            id: TemplateId,
        ) -> Result<Vec<TemplateSummary>, AppError>;
        /// Saves a new template (`id: None`) or the next version of one;
        /// with a `base`, only if that is still its version
        /// ([`AppError::Stale`] if it was saved again since).
        async fn save_template(
            &self,
            caller: &Caller,
            id: Option<TemplateId>,
            base: Option<i64>,
            draft: TemplateDraft,
        ) -> Result<AgentTemplate, AppError>;
        /// A new template (the caller's) with the settings of this one.
        async fn duplicate_template(
            &self,
            caller: &Caller,
            id: TemplateId,
        ) -> Result<AgentTemplate, AppError>;
        async fn delete_template(&self, caller: &Caller, id: TemplateId) -> Result<(), AppError>;
        /// A new template from a template file's text (JSON or TOML).
        async fn import_template(
            &self,
            caller: &Caller,
            file: String,
        ) -> Result<AgentTemplate, AppError>;
        /// Adds a skill to a template, or replaces its skill of that name:
        /// a new version.
        async fn save_skill(
            &self,
            caller: &Caller,
            id: TemplateId,
            skill: Skill,
        ) -> Result<AgentTemplate, AppError>;
        /// Writes a template's skill's `SKILL.md`, keeping its files: the
        /// skill named `replaces` (renamed when the name changed), else the
        /// one of the `SKILL.md`'s name, else a new skill. A new version.
        async fn write_skill_markdown(
            &self,
            caller: &Caller,
            id: TemplateId,
            replaces: Option<String>,
            markdown: String,
        ) -> Result<AgentTemplate, AppError>;
        /// Removes a template's skill: a new version.
        async fn remove_skill(
            &self,
            caller: &Caller,
            id: TemplateId,
            name: String,
        ) -> Result<AgentTemplate, AppError>;

        /// A template's triggers (for whoever may use the template).
        async fn list_triggers(
            &self,
            caller: &Caller,
            template: TemplateId,
        ) -> Result<Vec<Trigger>, AppError>;
        async fn get_trigger(&self, caller: &Caller, id: TriggerId) -> Result<Trigger, AppError>;
        /// A new trigger with its secret, shown this once (for a sender
        /// that signs with its own key, `sender_key`, not shown back).
        async fn create_trigger(
            &self,
            caller: &Caller,
            template: TemplateId,
            draft: TriggerDraft,
            sender_key: Option<String>,
        ) -> Result<TriggerSecret, AppError>;
        async fn update_trigger(
            &self,
            caller: &Caller,
            id: TriggerId,
            draft: TriggerDraft,
        ) -> Result<Trigger, AppError>;
        /// A new secret, shown this once, or the sender's new key; the old
        /// one is accepted for `overlap`.
        async fn rotate_trigger_secret(
            &self,
            caller: &Caller,
            id: TriggerId,
            overlap: std::time::Duration,
            sender_key: Option<String>,
        ) -> Result<TriggerSecret, AppError>;
        async fn delete_trigger(&self, caller: &Caller, id: TriggerId) -> Result<(), AppError>;
        /// The trigger's newest deliveries.
        async fn trigger_deliveries(
            &self,
            caller: &Caller,
            id: TriggerId,
        ) -> Result<Vec<Delivery>, AppError>;

        /// The notification endpoints of a template or a session.
        async fn list_endpoints(
            &self,
            caller: &Caller,
            scope: Scope,
        ) -> Result<Vec<Endpoint>, AppError>;
        /// A new endpoint with its secret, shown this once.
        async fn create_endpoint(
            &self,
            caller: &Caller,
            scope: Scope,
            draft: EndpointDraft,
        ) -> Result<EndpointSecret, AppError>;
        async fn delete_endpoint(&self, caller: &Caller, id: EndpointId) -> Result<(), AppError>;
        /// The endpoint's newest messages.
        async fn notification_messages(
            &self,
            caller: &Caller,
            id: EndpointId,
        ) -> Result<Vec<NotificationMessage>, AppError>;
        /// Sends a message again, in its turn.
        async fn redeliver_notification(
            &self,
            caller: &Caller,
            id: EndpointId,
            message: String,
        ) -> Result<(), AppError>;

        /// The credentials the caller may manage (their own; an admin also
        /// the server's), as hints.
        async fn list_credentials(&self, caller: &Caller) -> Result<Vec<CredentialInfo>, AppError>;
        async fn save_credential(
            &self,
            caller: &Caller,
            id: CredentialId,
            value: String,
        ) -> Result<CredentialInfo, AppError>;
        async fn delete_credential(
            &self,
            caller: &Caller,
            id: CredentialId,
        ) -> Result<(), AppError>;

        /// The entries of a folder of the session's workspace (`""`: its
        /// root), for those who may watch it.
        async fn list_files(
            &self,
            caller: &Caller,
            id: SessionId,
            path: String,
        ) -> Result<Vec<FileEntry>, AppError>;
        /// A file of the session's workspace, as the dashboard shows it.
        async fn view_file(
            &self,
            caller: &Caller,
            id: SessionId,
            path: String,
        ) -> Result<FileView, AppError>;
        /// How much of its disk the session's workspace uses.
        async fn disk_use(&self, caller: &Caller, id: SessionId) -> Result<DiskUse, AppError>;
        /// Deletes a file or a folder of the session's workspace, for
        /// those who may operate it.
        async fn delete_file(
            &self,
            caller: &Caller,
            id: SessionId,
            path: String,
        ) -> Result<(), AppError>;

        /// What changed in a session cloned from git since it started (for
        /// those who may watch it).
        async fn changes(&self, caller: &Caller, id: SessionId) -> Result<Changes, AppError>;
        /// One changed file's diff against the start.
        async fn change_diff(
            &self,
            caller: &Caller,
            id: SessionId,
            path: String,
        ) -> Result<FileDiff, AppError>;
        /// Commits every change to the session's working branch, by the
        /// caller (who may operate it).
        async fn commit_changes(
            &self,
            caller: &Caller,
            id: SessionId,
            message: String,
        ) -> Result<Committed, AppError>;
        /// Pushes the working branch to the repository it came from.
        async fn push_changes(&self, caller: &Caller, id: SessionId)
            -> Result<Committed, AppError>;

        /// The audit log, newest first (admins only).
        async fn audit_log(
            &self,
            caller: &Caller,
            before: Option<i64>,
        ) -> Result<Vec<AuditEntry>, AppError>;
    }

    pub type SharedBackend = Arc<dyn Backend>;

    pub(super) fn backend() -> Result<SharedBackend, AppError> {
        use_context::<SharedBackend>().ok_or_else(|| {
            tracing::error!("no Backend in the server-function context");
            AppError::Internal
        })
    }

    /// The caller the server's door found for this request, if any.
    pub(crate) fn signed_in() -> Option<Caller> {
        use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<Caller>().cloned())
    }

    /// The caller, or 401 for an anonymous request (which the door lets
    /// through only to the sign-in pages, so this is a second lock).
    pub(super) fn caller() -> Result<Caller, AppError> {
        signed_in().ok_or_else(|| AppError::Unauthenticated("Sign in first.".into()))
    }

    /// Gives a failed call the HTTP status that fits it, so API clients and
    /// server-rendered pages see 400/404 rather than a generic 500.
    pub(super) fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
        if let Err(e) = &result {
            set_status(e);
        }
        result
    }

    pub(crate) fn set_status(e: &AppError) {
        let status = http::StatusCode::from_u16(e.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        if let Some(options) = use_context::<leptos_axum::ResponseOptions>() {
            options.set_status(status);
        }
    }

    pub(super) fn parse_id(id: &str) -> Result<SessionId, AppError> {
        id.parse()
            .map_err(|_| AppError::NotFound(format!("Session {id:?}")))
    }

    pub(super) fn parse_user(id: &str) -> Result<UserId, AppError> {
        id.parse()
            .map_err(|_| AppError::NotFound(format!("User {id:?}")))
    }
}

/// JSON for server-function results and errors, decoded from text. Leptos
/// hands hydrated resources to serde_json as `&str`; the stock encoding
/// decodes responses from bytes, which compiled a second copy of every
/// `Deserialize` into the browser bundle.
pub struct JsonText;

/// `POST` with URL-encoded arguments (so forms work without JavaScript) and a
/// [`JsonText`] response.
pub type UrlInJsonOut = server_fn::codec::Post<JsonText>;

impl server_fn::ContentType for JsonText {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl server_fn::FormatType for JsonText {
    const FORMAT_TYPE: server_fn::Format = server_fn::Format::Text;
}

impl<T: serde::Serialize> server_fn::Encodes<T> for JsonText {
    type Error = serde_json::Error;

    fn encode(value: &T) -> Result<server_fn::Bytes, Self::Error> {
        serde_json::to_vec(value).map(Into::into)
    }
}

impl<T: serde::de::DeserializeOwned> server_fn::Decodes<T> for JsonText {
    type Error = serde_json::Error;

    fn decode(bytes: server_fn::Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(serde::de::Error::custom)?;
        serde_json::from_str(text)
    }
}

impl leptos::server_fn::error::FromServerFnError for AppError {
    type Encoder = JsonText;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        use leptos::server_fn::error::ServerFnErrorErr as E;
        let error = match value {
            // The request itself was malformed: the client's fault.
            E::Args(m) | E::Deserialization(m) | E::MissingArg(m) => AppError::Invalid(m),
            other => AppError::Transport(other.to_string()),
        };
        // On the server this runs when a request cannot even be decoded,
        // before any server function body; the status must say so too.
        #[cfg(feature = "ssr")]
        ssr::set_status(&error);
        error
    }
}

/// Events shown per page of a transcript.
pub const EVENTS_PAGE: i64 = 500;

#[server(endpoint = "list_sessions", output = UrlInJsonOut)]
pub async fn list_sessions() -> Result<Vec<Session>, AppError> {
    ssr::respond(async { ssr::backend()?.list_sessions(&ssr::caller()?).await }.await)
}

/// The settings fields of the New-session and agent forms, flat as a
/// browser posts them; an empty field means "the default" (or the
/// template's).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub permission_mode: Option<String>,
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default)]
    pub budget_usd: Option<String>,
    #[serde(default)]
    pub mounts: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    /// Secret names, separated by commas.
    #[serde(default)]
    pub secrets: Option<String>,
    #[serde(default)]
    pub memory_mb: Option<String>,
    #[serde(default)]
    pub cpus: Option<String>,
    #[serde(default)]
    pub pids: Option<String>,
    #[serde(default)]
    pub command_timeout_secs: Option<String>,
    #[serde(default)]
    pub disk_mb: Option<String>,
    #[serde(default)]
    pub max_turns: Option<String>,
    /// Tools allowed without asking, one a line.
    #[serde(default)]
    pub allowed_tools: Option<String>,
    /// Hosts the sandbox may reach, one a line.
    #[serde(default)]
    pub egress: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    /// Project instructions (`CLAUDE.md`).
    #[serde(default)]
    pub instructions: Option<String>,
    /// A git repository to start from...
    #[serde(default)]
    pub repo_url: Option<String>,
    #[serde(default)]
    pub repo_rev: Option<String>,
    /// ...with the saved git token of this name.
    #[serde(default)]
    pub repo_token: Option<String>,
    /// Or an allowed host folder to copy.
    #[serde(default)]
    pub source_folder: Option<String>,
    /// MCP servers, one a line: `name command arg…` (split at spaces).
    #[serde(default)]
    pub mcp_servers: Option<String>,
}

impl SettingsForm {
    /// The fields as the settings of a session request (without a name).
    pub fn parse(self) -> Result<crate::domain::NewSession, AppError> {
        fn given(field: Option<String>) -> Option<String> {
            field.filter(|v| !v.trim().is_empty())
        }
        let invalid = |what: &str, value: &str| {
            AppError::Invalid(format!("{value:?} is not a valid {what}."))
        };
        fn number<T: std::str::FromStr>(
            field: Option<String>,
            what: &str,
        ) -> Result<Option<T>, AppError> {
            given(field)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| AppError::Invalid(format!("{v:?} is not a valid {what}.")))
                })
                .transpose()
        }
        Ok(crate::domain::NewSession {
            limits: crate::domain::SandboxLimits {
                memory_mb: number(self.memory_mb, "memory limit in MiB")?,
                cpus: number(self.cpus, "CPU count")?,
                pids: number(self.pids, "process limit")?,
                command_timeout_secs: number(self.command_timeout_secs, "time limit in seconds")?,
                disk_mb: number(self.disk_mb, "disk limit in MiB")?,
            },
            max_turns: number(self.max_turns, "turn limit")?,
            allowed_tools: self
                .allowed_tools
                .unwrap_or_default()
                .lines()
                .filter(|t| !t.trim().is_empty())
                .map(str::to_owned)
                .collect(),
            egress: self
                .egress
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
            image: given(self.image),
            mcp_servers: self
                .mcp_servers
                .unwrap_or_default()
                .lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace().map(str::to_owned);
                    Some(crate::domain::McpServer {
                        name: words.next()?,
                        command: words.next().unwrap_or_default(),
                        args: words.collect(),
                        env: Vec::new(),
                    })
                })
                .collect(),
            instructions: given(self.instructions),
            source: match (given(self.repo_url), given(self.source_folder)) {
                (Some(url), _) => Some(crate::workspace_source::WorkspaceSource::Git {
                    url,
                    rev: given(self.repo_rev),
                    credential: given(self.repo_token),
                }),
                (None, Some(path)) => {
                    Some(crate::workspace_source::WorkspaceSource::Folder { path })
                }
                (None, None) => None,
            },
            model: given(self.model),
            system_prompt: given(self.system_prompt),
            permission_mode: given(self.permission_mode)
                .map(|m| m.parse().map_err(|_| invalid("permission mode", &m)))
                .transpose()?,
            engine: given(self.engine)
                .map(|e| e.parse().map_err(|_| invalid("engine", &e)))
                .transpose()?,
            budget_usd: given(self.budget_usd)
                .map(|b| b.trim().parse().map_err(|_| invalid("budget in USD", &b)))
                .transpose()?,
            mounts: crate::domain::ReadOnlyMount::from_lines(&self.mounts.unwrap_or_default()),
            env: crate::domain::EnvVar::from_lines(&self.env.unwrap_or_default()),
            secrets: self
                .secrets
                .unwrap_or_default()
                .split(',')
                .filter(|n| !n.trim().is_empty())
                .map(str::to_owned)
                .collect(),
            ..Default::default()
        })
    }
}

/// Parses a template id a form or a path gives.
pub fn template_id(id: &str) -> Result<crate::agents::TemplateId, AppError> {
    id.trim()
        .parse()
        .map_err(|_| AppError::NotFound(format!("Agent {id:?}")))
}

/// Creates a session from the New-session form. With an agent template
/// chosen, the session is the template's (named as given, else after it)
/// and the other fields are not used; without one, empty fields mean "the
/// default", and an empty name becomes "Untitled session", so one click is
/// enough.
#[server(endpoint = "create_session", output = UrlInJsonOut)]
pub async fn create_session(
    name: String,
    #[server(default)] template: Option<String>,
    #[server(flatten)] settings: SettingsForm,
) -> Result<Session, AppError> {
    ssr::respond(
        async {
            // Who asks, before any of what they sent is read.
            let caller = ssr::caller()?;
            let template = template.filter(|t| !t.trim().is_empty());
            let new = match template {
                Some(id) => crate::domain::NewSession {
                    name,
                    template: Some(template_id(&id)?),
                    ..Default::default()
                },
                None => crate::domain::NewSession {
                    name: if name.trim().is_empty() {
                        "Untitled session".to_owned()
                    } else {
                        name
                    },
                    ..settings.parse()?
                },
            };
            ssr::backend()?.create_session(&caller, new).await
        }
        .await,
    )
}

/// Stored events, oldest first, with the rendered Markdown of those that
/// have some.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub html: Vec<EventHtml>,
}

#[cfg(feature = "ssr")]
impl From<Vec<Event>> for EventPage {
    fn from(events: Vec<Event>) -> Self {
        let html = events
            .iter()
            .filter_map(crate::markdown::event_html)
            .collect();
        EventPage { events, html }
    }
}

/// What the session page starts from: the session, and the newest page of
/// its transcript up to the session's `last_seq` (so counters and events
/// agree, and live updates continue from there).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    pub session: Session,
    pub page: EventPage,
    /// Who may see it and what the caller may do with it.
    pub people: SessionPeople,
    /// Whether the server's sandboxes have terminals (the page offers them
    /// to those who may operate the session, while it is not read-only).
    pub terminals: bool,
}

#[server(endpoint = "open_session", output = UrlInJsonOut)]
pub async fn open_session(id: String) -> Result<SessionView, AppError> {
    ssr::respond(
        async {
            let (backend, caller) = (ssr::backend()?, ssr::caller()?);
            let session = backend.get_session(&caller, ssr::parse_id(&id)?).await?;
            let after = (session.last_seq - EVENTS_PAGE).max(0);
            let mut events = backend
                .events(&caller, session.id, after, session.last_seq - after)
                .await?;
            events.retain(|e| e.seq <= session.last_seq);
            let people = backend.session_people(&caller, session.id).await?;
            Ok(SessionView {
                session,
                page: events.into(),
                people,
                terminals: backend.server_info(&caller).await.terminals,
            })
        }
        .await,
    )
}

#[server(endpoint = "get_session", output = UrlInJsonOut)]
pub async fn get_session(id: String) -> Result<Session, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .get_session(&ssr::caller()?, ssr::parse_id(&id)?)
                .await
        }
        .await,
    )
}

#[server(endpoint = "change_settings", output = UrlInJsonOut)]
pub async fn change_settings(id: String, settings: SessionSettings) -> Result<Session, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .change_settings(&ssr::caller()?, ssr::parse_id(&id)?, settings)
                .await
        }
        .await,
    )
}

#[server(endpoint = "send_prompt", output = UrlInJsonOut)]
pub async fn send_prompt(id: String, text: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .send_prompt(&ssr::caller()?, ssr::parse_id(&id)?, text)
                .await
        }
        .await,
    )
}

#[server(endpoint = "stop_session", output = UrlInJsonOut)]
pub async fn stop_session(id: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .stop(&ssr::caller()?, ssr::parse_id(&id)?)
                .await
        }
        .await,
    )
}

#[server(endpoint = "decide_permission", output = UrlInJsonOut)]
pub async fn decide_permission(
    id: String,
    request_id: String,
    decision: crate::domain::Decision,
    reason: Option<String>,
) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .decide(
                    &ssr::caller()?,
                    ssr::parse_id(&id)?,
                    request_id,
                    decision,
                    reason,
                )
                .await
        }
        .await,
    )
}

#[server(endpoint = "delete_session", output = UrlInJsonOut)]
pub async fn delete_session(id: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .delete_session(&ssr::caller()?, ssr::parse_id(&id)?)
                .await
        }
        .await,
    )
}

#[server(endpoint = "server_info", output = UrlInJsonOut)]
pub async fn get_server_info() -> Result<ServerInfo, AppError> {
    ssr::respond(
        async {
            let caller = ssr::caller()?;
            Ok(ssr::backend()?.server_info(&caller).await)
        }
        .await,
    )
}

/// The page of events after `after`, for "show earlier events".
#[server(endpoint = "session_events", output = UrlInJsonOut)]
pub async fn session_events(id: String, after: i64) -> Result<EventPage, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .events(
                    &ssr::caller()?,
                    ssr::parse_id(&id)?,
                    after.max(0),
                    EVENTS_PAGE,
                )
                .await
                .map(EventPage::from)
        }
        .await,
    )
}

pub mod accounts;
pub mod agents;
pub mod changes;
pub mod files;
pub mod notifications;
pub mod triggers;
