//! Paddock composed: the store, the sandboxes, the hub and the journal, the
//! engines and their runner, the credential proxy, accounts and the
//! credential vault, wired once at start-up and shared by every request.
//! [`Paddock`] is the server's side of the dashboard's [`Backend`]
//! contract; each part holds only what it uses. Every method that touches a
//! session first finds what the caller may do with it
//! ([`Paddock::session_for`]): a session they may not see is "not found",
//! one they may only watch refuses changes.

use crate::agent_templates::{self, TemplateLibrary};
use crate::auth::Auth;
use crate::bus::{Bus, BusError, Notice};
use crate::changes::ChangeReview;
use crate::config::{Config, SandboxChoice};
use crate::engine::{
    AgentEngine, ClaudeCodeEngine, ClaudeCodeSettings, EngineLimits, Engines, NativeEngine, Owners,
    Permissions, Runner, Takeover,
};
use crate::hub::Hub;
use crate::journal::Journal;
use crate::llm::{Anthropic, AnthropicConfig, Provider};
use crate::presence::Presence;
use crate::proxy::CredentialProxy;
use crate::replicas::{self, Follower};
use crate::sandbox::{BackendKind, DockerSandbox, LocalSandbox, Sandbox};
use crate::store::{self, Database, Store};
use crate::stream_budget::StreamBudget;
use crate::template_renderers::TemplateRenderers;
use crate::terminal_slots::TerminalSlots;
use crate::transfers::Transfers;
use crate::trigger_limits::DeliveryLimiter;
use crate::vault::{MasterKey, Vault};
use crate::workspace_setup::WorkspaceSetup;
use crate::workspace_watch::WorkspaceWatches;
use anyhow::Context;
use app::accounts::{
    Access, AuditAction, AuditEntry, Caller, CredentialId, CredentialInfo, CredentialScope,
    ListedToken, NewApiToken, Role, SessionPeople, Share, ShareLevel, User,
};
use app::agents::{AgentTemplate, TemplateDraft, TemplateId, TemplateSummary};
use app::api::Backend;
use app::changes::{Changes, Committed, FileDiff};
use app::domain::{
    AppError, Decision, Engine, Event, EventKind, NewSession, ReadOnlyMount, ServerInfo, Session,
    SessionId, SessionSettings, SessionSpec, TriggerRef, UserId,
};
use app::files::{DiskUse, FileEntry, FileView};
use app::notifications::{
    Endpoint, EndpointDraft, EndpointId, EndpointSecret, Message as NotificationMessage, Scope,
};
use app::skills::Skill;
use app::triggers::{Delivery, Trigger, TriggerDraft, TriggerId, TriggerSecret};
use app::workspace_source::WorkspaceSource;
use std::sync::Arc;
use std::time::Duration;

/// Paddock's parts, shared by every request.
#[derive(Clone)]
pub struct Paddock {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub sandbox: Arc<dyn Sandbox>,
    /// Live fan-out of stored events and token deltas to viewers.
    pub hub: Hub,
    /// The one way into transcripts and the hub.
    pub journal: Journal,
    /// Runs and queues of every session.
    pub runner: Arc<Runner>,
    /// Open permission requests, for either engine.
    pub permissions: Arc<Permissions>,
    /// The credential-injecting LLM proxy of claude-code sessions.
    pub proxy: Arc<CredentialProxy>,
    /// Accounts, sign-in and tokens.
    pub auth: Arc<Auth>,
    /// Saved credentials, sealed.
    pub vault: Arc<Vault>,
    /// Agent templates, and who may use which.
    pub templates: Arc<TemplateLibrary>,
    /// Prepares workspaces from their sources; owns their server-side
    /// repositories.
    pub setup: Arc<WorkspaceSetup>,
    /// The Changes view: diffs, commits and pushes of git workspaces.
    pub changes: Arc<ChangeReview>,
    /// Who has which session open.
    pub presence: Presence,
    /// The live streams each person holds open.
    pub streams: StreamBudget,
    /// The workspaces of sessions someone follows here, watched.
    pub workspace_watches: WorkspaceWatches,
    /// Workspace archives and uploads running now.
    pub transfers: Transfers,
    /// Terminals open in sandboxes.
    pub terminals: TerminalSlots,
    /// Deliveries to triggers, counted per trigger.
    pub deliveries: Arc<DeliveryLimiter>,
    /// The processes that make deliveries' prompts from their templates.
    pub template_renderers: Arc<TemplateRenderers>,
    /// The other replicas, on PostgreSQL.
    pub bus: Option<Bus>,
}

/// Longest reason a permission decision may give, in bytes (it travels to
/// the replica that asked, within one bus notification: without control
/// characters but line ends and tabs, it is at most twice as long in JSON).
const DECISION_REASON_MAX_BYTES: usize = 1024;

/// A command the bus did not carry to the other replicas.
fn unreached(what: &str, e: BusError) -> AppError {
    match e {
        BusError::TooLarge(_) => AppError::Invalid(format!("{what} is too large to pass on.")),
        e @ (BusError::Db(_) | BusError::Seal(_)) => {
            tracing::warn!("bus: {e}");
            AppError::Unavailable(format!(
                "{what} did not reach the other Paddock processes; try again."
            ))
        }
    }
}

fn not_found(id: SessionId) -> AppError {
    AppError::NotFound(format!("Session {id}"))
}

/// What start-up recovery found and did.
#[derive(Debug, Default, PartialEq)]
pub struct Recovery {
    /// Sandboxes whose session no longer exists, removed.
    pub reaped: Vec<SessionId>,
    /// Sessions that were mid-turn when the server stopped, now interrupted.
    pub interrupted: Vec<SessionId>,
    /// Sessions that were waiting for a permission decision: they wait again.
    pub resumed: Vec<SessionId>,
    /// Sessions with prompts queued that nobody ran: they run now.
    pub queued: Vec<SessionId>,
    /// Sessions whose terminals the transcript still had open: closed.
    pub terminals_closed: Vec<SessionId>,
}

impl Paddock {
    /// Opens the store and connects the sandbox backend the config asks for.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        Self::open_with_hub(config, Hub::new()).await
    }

    /// [`Paddock::open`] with the given hub (one of another channel
    /// capacity).
    pub async fn open_with_hub(mut config: Config, hub: Hub) -> anyhow::Result<Self> {
        // Named once: a default name may be drawn at random.
        config.replica = Some(config.replica_name());
        // Folders given relative are the starting directory's: made absolute
        // once, as git, Docker's mounts and the proxies use them from other
        // directories (a commit's message file was looked for in the work
        // tree).
        for folder in [
            &mut config.workspace_root,
            &mut config.git_root,
            &mut config.claude_code_root,
        ] {
            *folder = std::path::absolute(&*folder)
                .with_context(|| format!("the folder {:?}", folder.display()))?;
            private_folder(folder)?;
        }
        // So are the binaries mounted into sandboxes (Docker reads a
        // relative source as a volume's name).
        for binary in [&mut config.claude_code_bin, &mut config.sandbox_agent_bin]
            .into_iter()
            .flatten()
        {
            *binary = std::path::absolute(&*binary)
                .with_context(|| format!("the file {:?}", binary.display()))?;
        }
        let config = Arc::new(config);
        let streams = StreamBudget::new(config.streams_per_person());
        crate::metrics::install();
        let sign_in = config.sign_in_required()?;
        config.check_ceilings()?;
        let store = store::open(&config.database_url).await?;
        let master_key = MasterKey::load(&config)?;
        let vault = Arc::new(Vault::open(&master_key, store.clone(), &config).await?);
        let auth = Arc::new(Auth::new(store.clone(), hub.clone(), sign_in));
        let instance = store
            .meta_or_insert("instance_id", uuid::Uuid::now_v7().to_string())
            .await?;
        let sandbox = connect_sandbox(&config, instance).await?;
        let bus = match Database::of_url(&config.database_url) {
            Some(Database::Postgres) => {
                let sealer = master_key.sealer(crate::bus::PURPOSE);
                let (bus, inbox) = Bus::connect(&config.database_url, config.lease() * 2, sealer)
                    .await
                    .context("cannot listen for the other replicas")?;
                hub.relay_to(bus.clone());
                Some((bus, inbox))
            }
            _ => None,
        };
        let journal = Journal::new(store.clone(), hub.clone());
        let provider: Arc<dyn Provider> = Arc::new(Anthropic::new(AnthropicConfig {
            base_url: config.anthropic_base_url.clone(),
            timeout: Duration::from_secs(config.model_timeout_secs),
            ..AnthropicConfig::default()
        })?);
        let proxy = Arc::new(CredentialProxy::new(
            &config,
            store.clone(),
            journal.clone(),
            vault.clone(),
        )?);
        let limits = EngineLimits::from_config(&config);
        let permissions = Arc::new(Permissions::new(journal.clone(), limits.permission_timeout));
        let native: Arc<dyn AgentEngine> = Arc::new(NativeEngine {
            store: store.clone(),
            journal: journal.clone(),
            sandbox: sandbox.clone(),
            provider,
            vault: vault.clone(),
            permissions: permissions.clone(),
            limits: limits.clone(),
        });
        let claude_code: Arc<dyn AgentEngine> = Arc::new(ClaudeCodeEngine {
            store: store.clone(),
            journal: journal.clone(),
            sandbox: sandbox.clone(),
            permissions: permissions.clone(),
            proxy: proxy.clone(),
            settings: ClaudeCodeSettings::from_config(&config, limits.output_cap),
            homes: tokio::sync::Mutex::new(()),
        });
        let setup = Arc::new(WorkspaceSetup::new(
            config.clone(),
            store.clone(),
            sandbox.clone(),
            vault.clone(),
            journal.clone(),
            sign_in,
        ));
        let runner = Arc::new(Runner::new(
            config.clone(),
            store.clone(),
            Owners {
                auth: auth.clone(),
                vault: vault.clone(),
            },
            journal.clone(),
            sandbox.clone(),
            setup.clone(),
            Engines {
                permissions: permissions.clone(),
                all: vec![(Engine::Native, native), (Engine::ClaudeCode, claude_code)],
            },
        ));
        let terminals = runner.terminals().clone();
        replicas::spawn_heartbeat(&runner, config.lease());
        replicas::spawn_owner_watch(&runner, &hub);
        let bus = bus.map(|(bus, inbox)| {
            Follower {
                hub: hub.clone(),
                store: store.clone(),
                runner: runner.clone(),
                permissions: permissions.clone(),
                terminals: terminals.clone(),
            }
            .spawn(inbox);
            bus
        });
        let templates = Arc::new(TemplateLibrary::new(store.clone()));
        let changes = Arc::new(ChangeReview::new(
            setup.clone(),
            sandbox.clone(),
            journal.clone(),
            Duration::from_secs(config.git_timeout_secs),
        ));
        let deliveries = Arc::new(DeliveryLimiter::new(config.trigger_deliveries_per_minute));
        let workspace_watches = WorkspaceWatches::new(sandbox.clone(), hub.clone());
        let template_renderers = Arc::new(TemplateRenderers::new(config.template_renderer()));
        Ok(Self {
            config,
            deliveries,
            template_renderers,
            store,
            sandbox,
            hub,
            journal,
            runner,
            permissions,
            proxy,
            auth,
            vault,
            templates,
            changes,
            setup,
            presence: Presence::default(),
            streams,
            workspace_watches,
            transfers: Transfers::default(),
            terminals,
            bus,
        })
    }

    /// Validates the request (with its template's settings, if it names
    /// one) and creates the session as `caller`, noting the trigger that
    /// started it; its workspace is prepared and sandbox started in the
    /// background.
    pub async fn start_session(
        &self,
        caller: &Caller,
        new: NewSession,
        trigger: Option<TriggerRef>,
    ) -> Result<Session, AppError> {
        caller.may_create_sessions()?;
        let (mut new, template) = match new.template {
            Some(id) => {
                let t = self.templates.for_session(caller, id, &new).await?;
                (t.draft.sessions_from(new), Some(t.reference()))
            }
            None => (new, None),
        };
        // A delivery's session asks before every tool its permission mode
        // does not allow: none the template lets run without asking.
        if trigger.is_some() {
            new.allowed_tools.clear();
        }
        let spec = self.check_settings(caller.user, new.validate()?).await?;
        let spec = SessionSpec {
            template,
            trigger,
            ..spec
        };
        let session = self.store.create_session(&spec, caller.user).await?;
        tracing::info!(session = %session.id, name = %session.name, by = %caller.login, "session created");
        self.journal.session_changed(&session);
        // Prepare the workspace and start the sandbox now, so the first
        // prompt does not wait for them.
        let (runner, journal) = (self.runner.clone(), self.journal.clone());
        let created = session.clone();
        tokio::spawn(async move {
            let id = created.id;
            if let Err(e) = runner.warm_up(&created).await {
                let message = journal.mask(id, &e.to_string()).into_owned();
                tracing::warn!(session = %id, "{message}");
                // The session may have been deleted meanwhile: nothing to tell.
                let _ = journal.record(id, EventKind::Error { message }).await;
            }
        });
        Ok(session)
    }

    /// Whether the session's permission request `request_id` is open in
    /// its transcript: asked, among its newest requests, and not decided.
    /// (Read by kind: the transcript itself may be long.)
    async fn permission_open(&self, id: SessionId, request_id: &str) -> Result<bool, AppError> {
        let open = Permissions::open_in(&*self.store, id).await?;
        Ok(open.iter().any(|r| r == request_id))
    }

    /// The session, if the caller may do what `needed` says with it. A
    /// session they may not see at all is "not found", exactly like an
    /// unknown id; one they may see but not change is "forbidden", and the
    /// attempt is audited.
    pub async fn session_for(
        &self,
        caller: &Caller,
        id: SessionId,
        needed: Access,
    ) -> Result<Session, AppError> {
        let session = self
            .store
            .get_session(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let access = self
            .access_to(caller, &session)
            .await?
            .ok_or_else(|| not_found(id))?;
        if let Err(refusal) = access.require(needed) {
            self.auth
                .audit_refusal(
                    caller,
                    AuditAction::AccessRefused,
                    &id.to_string(),
                    &format!("needed {needed:?}, has {access:?}"),
                )
                .await;
            return Err(refusal);
        }
        Ok(session)
    }

    /// What the caller may do with a session (`None`: nothing).
    pub async fn access_to(
        &self,
        caller: &Caller,
        session: &Session,
    ) -> Result<Option<Access>, AppError> {
        let share = match caller.user {
            Some(user) if !caller.is_admin() && session.owner != Some(user) => {
                self.store.share_level(session.id, user).await?
            }
            _ => None,
        };
        Ok(caller.access(session.owner, share))
    }

    /// After a start (or a crash): removes sandboxes whose session is gone,
    /// closes (when this process serves alone) the terminals transcripts
    /// still say are open, and takes over the sessions this replica held (and any whose
    /// replica is gone): one that was mid-turn is marked interrupted, with
    /// an event saying so, one that waited for a permission decision waits
    /// again, queued prompts run. Their sandboxes and workspaces are kept
    /// and reused.
    pub async fn recover(&self) -> anyhow::Result<Recovery> {
        let mut recovery = Recovery {
            reaped: self.runner.reap_sandboxes().await?,
            ..Recovery::default()
        };
        // Alone, none of the terminals the transcripts say are open can
        // be; with other replicas, theirs may be.
        if self.bus.is_none() {
            recovery.terminals_closed = self.runner.close_stale_terminals().await?;
        }
        for (session, how) in self.runner.take_over_orphans().await? {
            match how {
                Takeover::Interrupted => recovery.interrupted.push(session),
                Takeover::Resumed => recovery.resumed.push(session),
                Takeover::Queued => recovery.queued.push(session),
            }
        }
        if recovery != Recovery::default() {
            tracing::info!(?recovery, "recovered after restart");
        }
        Ok(recovery)
    }

    /// Saves the next version of a template as `change` makes it from the
    /// current one. When another save comes between the read and this one,
    /// it is read and changed again (a few times), so neither is lost.
    async fn edit_template(
        &self,
        caller: &Caller,
        id: TemplateId,
        change: impl Fn(&mut TemplateDraft) -> Result<(), AppError> + Send,
    ) -> Result<AgentTemplate, AppError> {
        let mut tries = 1;
        loop {
            let current = self.templates.get(caller, id).await?;
            let mut draft = current.draft;
            change(&mut draft)?;
            match self
                .save_template(caller, Some(id), Some(current.version), draft)
                .await
            {
                Err(AppError::Stale(_)) if tries < 5 => tries += 1,
                saved => return saved,
            }
        }
    }

    /// Checks what a session's settings need of this server: an engine and
    /// sandboxes that can run it, mounts the allowlist permits (returned in
    /// their checked form), and each secret saved in its owner's store (a
    /// run checks again: one can be removed later).
    async fn check_settings(
        &self,
        owner: Option<UserId>,
        spec: SessionSpec,
    ) -> Result<SessionSpec, AppError> {
        self.config.within_ceilings(&spec.limits)?;
        let backend = self.sandbox.info();
        self.runner.engine(spec.engine)?.check_sandbox(&backend)?;
        if backend.remote {
            let needs_this_host = [
                (!spec.mounts.is_empty(), "Read-only mounts"),
                (
                    !spec.egress.is_empty(),
                    "Network access (hosts the sandbox may reach)",
                ),
                (!spec.source.is_empty(), "A git or folder source"),
            ];
            if let Some((_, what)) = needs_this_host.iter().find(|(asked, _)| *asked) {
                return Err(AppError::Invalid(format!(
                    "{what} needs sandboxes on this server's own Docker host, and this \
                     server's are on a remote one."
                )));
            }
        }
        if !spec.mounts.is_empty() && !backend.read_only_mounts {
            return Err(AppError::Invalid(
                "Read-only mounts need Docker sandboxes or bubblewrap, and this server's \
                 sandboxes have neither."
                    .into(),
            ));
        }
        if let Some(image) = &spec.image {
            if backend.kind != BackendKind::Docker {
                return Err(AppError::Invalid(
                    "An image can be chosen only with Docker sandboxes, and this server's are \
                     local."
                        .into(),
                ));
            }
            let volumes = self.sandbox.image_volumes(image).await.map_err(|e| {
                AppError::Unavailable(format!("Cannot tell whether image {image:?} exists: {e}"))
            })?;
            let Some(volumes) = volumes else {
                return Err(AppError::Invalid(format!(
                    "This server's Docker host has no image {image:?}: build or pull it there \
                     first (names are lower case, like my-team/agent:2)."
                )));
            };
            if let Some(why) = crate::sandbox::volumes_refused(image, &volumes) {
                return Err(AppError::Invalid(format!("{why}.")));
            }
        }
        if !spec.egress.is_empty() && backend.kind != BackendKind::Docker {
            return Err(AppError::Invalid(
                "Network access (hosts the sandbox may reach) needs Docker sandboxes, and this \
                 server's are local."
                    .into(),
            ));
        }
        let policy = self.config.mount_policy();
        let mounts = spec
            .mounts
            .iter()
            .map(|m| policy.check(m))
            .collect::<Result<_, _>>()?;
        self.vault.secrets(owner, &spec.secrets).await?;
        match &spec.source {
            WorkspaceSource::Empty => {}
            WorkspaceSource::Folder { path } => {
                policy.check(&ReadOnlyMount {
                    host: path.clone(),
                    name: String::new(),
                })?;
            }
            WorkspaceSource::Git { credential, .. } => {
                if let Some(name) = credential {
                    self.vault.git_token(owner, name).await?;
                }
            }
        }
        Ok(SessionSpec { mounts, ..spec })
    }
}

/// Makes `folder` (a root of what Paddock keeps: workspaces, clones of
/// private repositories, the CLI's transcripts) if it is not there, its
/// user's only: another account of the machine reads none of it (Docker's
/// mounts and the sandboxes need no way through it). One of its own that
/// is open to others is tightened; one it does not own (a volume an
/// operator shares on purpose) is left as it is, with a warning.
fn private_folder(folder: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let context = || format!("cannot create {}", folder.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .with_context(context)?;
    let meta = std::fs::metadata(folder).with_context(context)?;
    let mode = meta.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let open = |why: &str| {
        tracing::warn!(
            "{} is open to other accounts of this machine ({:o}{why}): keep it to the server's \
             user",
            folder.display(),
            mode & 0o777
        )
    };
    if meta.uid() != rustix::process::geteuid().as_raw() {
        open(", and not the server's to change");
        return Ok(());
    }
    match std::fs::set_permissions(folder, std::fs::Permissions::from_mode(mode & 0o700)) {
        Ok(()) => tracing::info!(
            "{} is now its owner's only (it was {:o})",
            folder.display(),
            mode & 0o777
        ),
        Err(e) => open(&format!(", and cannot be changed: {e}")),
    }
    Ok(())
}

/// The sandbox backend the config asks for: Docker when a daemon answers,
/// unless told otherwise; never local when any Docker setting is given.
async fn connect_sandbox(config: &Config, instance: String) -> anyhow::Result<Arc<dyn Sandbox>> {
    let workspace_root = std::fs::canonicalize(&config.workspace_root)?;
    let docker = || {
        DockerSandbox::connect(
            config.image.clone(),
            instance.clone(),
            workspace_root.clone(),
            config.docker_runtime.clone(),
            Some(config.sandbox_agent_bin()),
            config.docker_remote,
        )
    };
    let local = || LocalSandbox::new(workspace_root.clone()).hiding(config.own_data_to_hide());
    let sandbox: Arc<dyn Sandbox> = match config.sandbox {
        Some(SandboxChoice::Local) => Arc::new(local()),
        _ if config.docker_required() => Arc::new(docker().await.context(
            "Docker was asked for (PADDOCK_SANDBOX=docker, DOCKER_HOST, PADDOCK_DOCKER_RUNTIME or \
             PADDOCK_DOCKER_REMOTE), and Paddock does not fall back to local sandboxes then",
        )?),
        _ => match docker().await {
            Ok(d) => Arc::new(d),
            // A local sandbox's commands run as the server's user: as
            // root, with root's reach over this host (under bubblewrap,
            // the owner of root's files in the system folders it binds).
            Err(e) if rustix::process::geteuid().is_root() => anyhow::bail!(
                "no Docker daemon answers ({e}), and this server runs as root, whose local \
                 sandboxes would run agents' commands with root's reach over this host: start \
                 Docker, or run Paddock as another user with PADDOCK_SANDBOX=local"
            ),
            Err(e) => {
                tracing::warn!(
                    "no Docker daemon answers ({e}): falling back to LOCAL sandboxes, which isolate \
                     far less than containers; set PADDOCK_SANDBOX=docker to require Docker"
                );
                Arc::new(local())
            }
        },
    };
    if let Some(warning) = sandbox.info().warning {
        tracing::warn!("{warning}");
    }
    Ok(sandbox)
}

fn no_such_user(login: &str) -> AppError {
    AppError::NotFound(format!("User {login:?}"))
}

#[async_trait::async_trait]
impl Backend for Paddock {
    async fn list_sessions(&self, caller: &Caller) -> Result<Vec<Session>, AppError> {
        let visible_to = if caller.is_admin() { None } else { caller.user };
        if visible_to.is_none() && !caller.is_admin() {
            return Ok(Vec::new());
        }
        Ok(self.store.list_sessions(visible_to).await?)
    }

    async fn create_session(&self, caller: &Caller, new: NewSession) -> Result<Session, AppError> {
        self.start_session(caller, new, None).await
    }

    async fn get_session(&self, caller: &Caller, id: SessionId) -> Result<Session, AppError> {
        self.session_for(caller, id, Access::Watch).await
    }

    async fn change_settings(
        &self,
        caller: &Caller,
        id: SessionId,
        settings: SessionSettings,
    ) -> Result<Session, AppError> {
        let before = self.session_for(caller, id, Access::Own).await?;
        let settings = settings.validate_keeping(Some(&before.name))?;
        let session = self
            .store
            .change_settings(id, &settings)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.journal.session_changed(&session);
        self.terminals.follow(&session);
        let was = SessionSettings::of(&before);
        let usd = |b: Option<f64>| b.map_or_else(|| "none".to_owned(), |b| format!("${b:.2}"));
        let changed: Vec<String> = [
            (
                "name",
                format!("{:?}", was.name),
                format!("{:?}", settings.name),
            ),
            ("model", was.model, settings.model),
            (
                "permissions",
                was.permission_mode.to_string(),
                settings.permission_mode.to_string(),
            ),
            ("budget", usd(was.budget_usd), usd(settings.budget_usd)),
        ]
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .map(|(what, old, new)| format!("{what}: {old} → {new}"))
        .collect();
        if !changed.is_empty() {
            self.auth
                .audit(
                    &caller.label(),
                    AuditAction::SettingsChanged,
                    &id.to_string(),
                    &changed.join("; "),
                    caller.address,
                )
                .await;
        }
        Ok(session)
    }

    async fn delete_session(&self, caller: &Caller, id: SessionId) -> Result<(), AppError> {
        let session = self.session_for(caller, id, Access::Own).await?;
        // No sandbox starts here while it goes (its warm-up, a run or a
        // terminal may be starting one): what one made is removed below.
        let no_starts = self.runner.hold_starts(id).await;
        // A run here ends now, and nothing queued starts after it (other
        // replicas end theirs on the notice of the deletion, which never
        // comes back to this one).
        if let Err(e) = self.store.drop_prompts(id).await {
            tracing::warn!(session = %id, "cannot drop the queue of a session being deleted: {e}");
        }
        self.runner.cancel(id);
        self.terminals.close_all(id, "the session was deleted");
        // Sandbox first: if it cannot be removed the session stays, so the
        // user can try again and nothing is left behind unowned.
        self.sandbox.destroy(id).await.map_err(|e| {
            tracing::error!(session = %id, "cannot remove the sandbox: {e}");
            AppError::Unavailable(format!(
                "The sandbox could not be removed, so the session was kept: {e}"
            ))
        })?;
        self.runner.engine(session.engine)?.forget(id).await?;
        self.runner.egress().forget(id).map_err(|e| {
            tracing::error!(session = %id, "cannot remove the egress proxy's folder: {e}");
            AppError::Unavailable(format!(
                "The session's egress proxy folder could not be removed, so the session was kept: {e}"
            ))
        })?;
        self.setup.forget(id).await?;
        self.changes.forget(id);
        self.journal.delete(id).await?;
        self.terminals.forget(id);
        no_starts.deleted();
        tracing::info!(session = %id, by = %caller.login, "session deleted");
        Ok(())
    }

    async fn send_prompt(
        &self,
        caller: &Caller,
        id: SessionId,
        text: String,
    ) -> Result<(), AppError> {
        let s = self.session_for(caller, id, Access::Operate).await?;
        self.auth.owner_may_run(&s).await?;
        self.runner.send_prompt(id, text).await
    }

    async fn stop(&self, caller: &Caller, id: SessionId) -> Result<(), AppError> {
        let s = self.session_for(caller, id, Access::Operate).await?;
        // Working, and nobody runs it (its replica stopped, and none has
        // taken it over yet): a Stop now would reach nobody.
        if self.bus.is_some()
            && s.status.is_busy()
            && !self.runner.is_running(id)
            && self
                .store
                .lease_holder(id, chrono::Utc::now())
                .await?
                .is_none()
        {
            return Err(AppError::Unavailable(format!(
                "The Paddock process that ran this session has stopped; another takes it over \
                 within {} s: stop it then.",
                self.config.lease_secs
            )));
        }
        self.runner.stop(id).await?;
        if let Some(bus) = &self.bus {
            // Wherever it runs.
            bus.send(Notice::Stop { session: id })
                .await
                .map_err(|e| unreached("Stop", e))?;
        }
        Ok(())
    }

    async fn decide(
        &self,
        caller: &Caller,
        id: SessionId,
        request_id: String,
        decision: Decision,
        reason: Option<String>,
    ) -> Result<(), AppError> {
        if reason
            .as_ref()
            .is_some_and(|r| r.len() > DECISION_REASON_MAX_BYTES)
        {
            return Err(AppError::Invalid(format!(
                "The reason is too long: at most {} KiB.",
                DECISION_REASON_MAX_BYTES / 1024
            )));
        }
        if reason.as_ref().is_some_and(|r| {
            r.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        }) {
            return Err(AppError::Invalid(
                "The reason cannot contain control characters (but line ends and tabs).".into(),
            ));
        }
        let s = self.session_for(caller, id, Access::Operate).await?;
        self.auth.owner_may_run(&s).await?;
        let by = Some(caller.label());
        match self
            .permissions
            .decide(id, &request_id, decision, reason.clone(), by.clone())
        {
            Err(AppError::NotFound(missing)) => {
                // Asked by another replica, if it is still open there.
                let Some(bus) = &self.bus else {
                    return Err(AppError::NotFound(missing));
                };
                if !self.permission_open(id, &request_id).await? {
                    return Err(AppError::NotFound(missing));
                }
                match self.store.lease_holder(id, chrono::Utc::now()).await? {
                    None => {
                        return Err(AppError::Unavailable(format!(
                            "The Paddock process that asked has stopped; another takes the \
                             session over within {} s, and asks again: decide then.",
                            self.config.lease_secs
                        )))
                    }
                    // Here, and no longer waited for (its time ran out as
                    // this came): nobody elsewhere would take it.
                    Some(holder) if holder == self.config.replica_name() => {
                        return Err(AppError::NotFound(missing))
                    }
                    Some(_) => {}
                }
                let notice = Notice::Decide {
                    session: id,
                    request_id: request_id.clone(),
                    decision,
                    reason,
                    by,
                };
                bus.send(notice)
                    .await
                    .map_err(|e| unreached("The decision", e))?;
            }
            other => other?,
        }
        self.auth
            .audit(
                &caller.label(),
                AuditAction::PermissionDecided,
                &id.to_string(),
                &format!("{request_id}: {decision}"),
                caller.address,
            )
            .await;
        Ok(())
    }

    fn setup_link_open(&self, token: &str) -> bool {
        self.auth.setup_token_valid(token)
    }

    async fn server_info(&self, caller: &Caller) -> ServerInfo {
        let info = self.sandbox.info();
        let configured = self
            .vault
            .has_llm_credential(caller.user)
            .await
            .unwrap_or(true);
        let mountable = if info.read_only_mounts {
            self.config
                .mount_allow
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        } else {
            Vec::new()
        };
        ServerInfo {
            mountable,
            terminals: info.kind == BackendKind::Docker && info.agent,
            public_url: self.config.public_url.as_ref().map(ToString::to_string),
            sandbox: info.kind.as_str().to_owned(),
            sandbox_runtime: info.runtime,
            sandbox_warning: info.warning,
            model_warning: (!configured).then(|| {
                "No model credentials are configured, so prompts will fail. Save an Anthropic \
                 API key under Credentials, or set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN \
                 for a gateway, with ANTHROPIC_BASE_URL) in Paddock's environment."
                    .to_owned()
            }),
        }
    }

    async fn events(
        &self,
        caller: &Caller,
        id: SessionId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, AppError> {
        self.session_for(caller, id, Access::Watch).await?;
        Ok(self.store.events_after(id, after, limit).await?)
    }

    async fn session_people(
        &self,
        caller: &Caller,
        id: SessionId,
    ) -> Result<SessionPeople, AppError> {
        let session = self.session_for(caller, id, Access::Watch).await?;
        let access = self
            .access_to(caller, &session)
            .await?
            .ok_or_else(|| not_found(id))?;
        let owner = match session.owner {
            Some(user) => self
                .store
                .user_by_id(user)
                .await?
                .map(|r| r.user.caller().label()),
            None => None,
        };
        Ok(SessionPeople {
            access,
            owner,
            shares: self.store.shares_of(id).await?,
            watching: self.presence.watchers(id),
        })
    }

    async fn share_session(
        &self,
        caller: &Caller,
        id: SessionId,
        login: String,
        level: Option<ShareLevel>,
    ) -> Result<Vec<Share>, AppError> {
        let session = self.session_for(caller, id, Access::Own).await?;
        let user = self
            .auth
            .user_by_login(&login)
            .await
            .map_err(|_| no_such_user(&login))?;
        if Some(user.id) == session.owner {
            return Err(AppError::Invalid(format!(
                "{} owns this session already.",
                user.login
            )));
        }
        let (action, detail) = match level {
            Some(level) => {
                self.store.set_share(id, user.id, level).await?;
                (AuditAction::Shared, format!("{} as {level}", user.login))
            }
            None => {
                if !self.store.remove_share(id, user.id).await? {
                    return Err(AppError::NotFound(format!(
                        "A share of this session with {}",
                        user.login
                    )));
                }
                (AuditAction::Unshared, user.login.clone())
            }
        };
        self.hub.access_changed(user.id);
        self.auth
            .audit(
                &caller.label(),
                action,
                &id.to_string(),
                &detail,
                caller.address,
            )
            .await;
        Ok(self.store.shares_of(id).await?)
    }

    async fn list_users(&self, caller: &Caller) -> Result<Vec<User>, AppError> {
        caller.require_admin()?;
        self.auth.list_users().await
    }

    async fn add_user(
        &self,
        caller: &Caller,
        login: String,
        display_name: String,
        role: Role,
        password: String,
    ) -> Result<User, AppError> {
        caller.require_admin()?;
        caller.require_signed_in()?;
        self.auth
            .add_user(
                &caller.label(),
                &login,
                &display_name,
                role,
                &password,
                caller.address,
            )
            .await
    }

    async fn change_user(
        &self,
        caller: &Caller,
        id: UserId,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<User, AppError> {
        caller.require_admin()?;
        caller.require_signed_in()?;
        let change = store::accounts::UserChange {
            role,
            disabled,
            ..Default::default()
        };
        self.auth
            .change_user(&caller.label(), id, change, caller.address)
            .await
    }

    async fn reset_password(
        &self,
        caller: &Caller,
        id: UserId,
        password: String,
    ) -> Result<(), AppError> {
        caller.require_admin()?;
        caller.require_signed_in()?;
        self.auth
            .reset_password(&caller.label(), id, &password, caller.address)
            .await
    }

    async fn list_tokens(&self, caller: &Caller) -> Result<Vec<ListedToken>, AppError> {
        self.auth.list_tokens(caller).await
    }

    async fn create_token(
        &self,
        caller: &Caller,
        name: String,
        expires_in_days: Option<i64>,
    ) -> Result<NewApiToken, AppError> {
        caller.require_signed_in()?;
        self.auth
            .create_token(caller, &name, expires_in_days, caller.address)
            .await
    }

    async fn revoke_token(&self, caller: &Caller, id: uuid::Uuid) -> Result<(), AppError> {
        self.auth.revoke_token(caller, id, caller.address).await
    }

    async fn list_templates(&self, caller: &Caller) -> Result<Vec<TemplateSummary>, AppError> {
        self.templates.list(caller).await
    }

    async fn get_template(
        &self,
        caller: &Caller,
        id: TemplateId,
    ) -> Result<AgentTemplate, AppError> {
        self.templates.get(caller, id).await
    }

    async fn template_versions(
        &self,
        caller: &Caller,
        id: TemplateId,
    ) -> Result<Vec<TemplateSummary>, AppError> {
        self.templates.versions(caller, id).await
    }

    async fn save_template(
        &self,
        caller: &Caller,
        id: Option<TemplateId>,
        base: Option<i64>,
        draft: TemplateDraft,
    ) -> Result<AgentTemplate, AppError> {
        self.templates.may_save(caller, id).await?;
        let draft = draft.validate()?;
        // What the server can tell now (engine, sandboxes, mounts); secrets
        // and git tokens are the owner's to save, checked when a session is
        // made (an admin may edit a member's).
        let mut spec = draft.sessions_from(NewSession::default()).validate()?;
        spec.secrets.clear();
        if let WorkspaceSource::Git { credential, .. } = &mut spec.source {
            *credential = None;
        }
        self.check_settings(caller.user, spec).await?;
        self.templates.save(caller, id, base, &draft).await
    }

    async fn duplicate_template(
        &self,
        caller: &Caller,
        id: TemplateId,
    ) -> Result<AgentTemplate, AppError> {
        let copy = self.templates.copy(caller, id).await?;
        self.save_template(caller, None, None, copy).await
    }

    async fn delete_template(&self, caller: &Caller, id: TemplateId) -> Result<(), AppError> {
        self.templates.delete(caller, id).await
    }

    async fn import_template(
        &self,
        caller: &Caller,
        file: String,
    ) -> Result<AgentTemplate, AppError> {
        let draft = agent_templates::parse(&file)?;
        self.save_template(caller, None, None, draft).await
    }

    async fn save_skill(
        &self,
        caller: &Caller,
        id: TemplateId,
        skill: Skill,
    ) -> Result<AgentTemplate, AppError> {
        let name = skill.header()?.name;
        self.edit_template(caller, id, |draft| {
            let skills = &mut draft.session.skills;
            match skills
                .iter_mut()
                .find(|s| s.header().is_ok_and(|h| h.name == name))
            {
                Some(same) => *same = skill.clone(),
                None => skills.push(skill.clone()),
            }
            Ok(())
        })
        .await
    }

    async fn list_triggers(
        &self,
        caller: &Caller,
        template: TemplateId,
    ) -> Result<Vec<Trigger>, AppError> {
        self.triggers_of(caller, template).await
    }

    async fn get_trigger(&self, caller: &Caller, id: TriggerId) -> Result<Trigger, AppError> {
        self.trigger(caller, id).await
    }

    async fn create_trigger(
        &self,
        caller: &Caller,
        template: TemplateId,
        draft: TriggerDraft,
        sender_key: Option<String>,
    ) -> Result<TriggerSecret, AppError> {
        self.add_trigger(caller, template, draft, sender_key).await
    }

    async fn update_trigger(
        &self,
        caller: &Caller,
        id: TriggerId,
        draft: TriggerDraft,
    ) -> Result<Trigger, AppError> {
        self.change_trigger(caller, id, draft).await
    }

    async fn rotate_trigger_secret(
        &self,
        caller: &Caller,
        id: TriggerId,
        overlap: Duration,
        sender_key: Option<String>,
    ) -> Result<TriggerSecret, AppError> {
        self.rotate_trigger(caller, id, overlap, sender_key).await
    }

    async fn delete_trigger(&self, caller: &Caller, id: TriggerId) -> Result<(), AppError> {
        self.remove_trigger(caller, id).await
    }

    async fn trigger_deliveries(
        &self,
        caller: &Caller,
        id: TriggerId,
    ) -> Result<Vec<Delivery>, AppError> {
        self.trigger_log(caller, id).await
    }

    async fn list_endpoints(
        &self,
        caller: &Caller,
        scope: Scope,
    ) -> Result<Vec<Endpoint>, AppError> {
        self.endpoints_of(caller, scope).await
    }

    async fn create_endpoint(
        &self,
        caller: &Caller,
        scope: Scope,
        draft: EndpointDraft,
    ) -> Result<EndpointSecret, AppError> {
        self.add_endpoint(caller, scope, draft).await
    }

    async fn delete_endpoint(&self, caller: &Caller, id: EndpointId) -> Result<(), AppError> {
        self.remove_endpoint(caller, id).await
    }

    async fn notification_messages(
        &self,
        caller: &Caller,
        id: EndpointId,
    ) -> Result<Vec<NotificationMessage>, AppError> {
        self.endpoint_messages(caller, id).await
    }

    async fn redeliver_notification(
        &self,
        caller: &Caller,
        id: EndpointId,
        message: String,
    ) -> Result<(), AppError> {
        self.redeliver_message(caller, id, &message).await
    }

    async fn write_skill_markdown(
        &self,
        caller: &Caller,
        id: TemplateId,
        replaces: Option<String>,
        markdown: String,
    ) -> Result<AgentTemplate, AppError> {
        let name = app::skills::front_matter(&markdown)?.0.name;
        self.edit_template(caller, id, |draft| {
            let skills = &mut draft.session.skills;
            let named = |n: &str| {
                skills
                    .iter()
                    .position(|s| s.header().is_ok_and(|h| h.name == n))
            };
            let at = match &replaces {
                Some(old) => {
                    Some(named(old).ok_or_else(|| AppError::NotFound(format!("Skill {old:?}")))?)
                }
                None => named(&name),
            };
            if named(&name).is_some_and(|other| Some(other) != at) {
                return Err(AppError::Conflict(format!(
                    "This agent has a skill named {name:?} already."
                )));
            }
            match at {
                Some(i) => skills[i].markdown.clone_from(&markdown),
                None => skills.push(Skill {
                    markdown: markdown.clone(),
                    files: Vec::new(),
                }),
            }
            Ok(())
        })
        .await
    }

    async fn remove_skill(
        &self,
        caller: &Caller,
        id: TemplateId,
        name: String,
    ) -> Result<AgentTemplate, AppError> {
        self.edit_template(caller, id, |draft| {
            let before = draft.session.skills.len();
            draft
                .session
                .skills
                .retain(|s| s.header().map_or(true, |h| h.name != name));
            if draft.session.skills.len() == before {
                return Err(AppError::NotFound(format!("Skill {name:?}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_credentials(&self, caller: &Caller) -> Result<Vec<CredentialInfo>, AppError> {
        let mine = caller.user.map(CredentialScope::User);
        Ok(self
            .store
            .list_credentials()
            .await?
            .into_iter()
            .filter(|c| {
                Some(c.id.scope) == mine
                    || (c.id.scope == CredentialScope::Server && caller.is_admin())
            })
            .map(|c| c.info())
            .collect())
    }

    async fn save_credential(
        &self,
        caller: &Caller,
        id: CredentialId,
        value: String,
    ) -> Result<CredentialInfo, AppError> {
        may_manage(caller, id.scope)?;
        self.vault
            .save_audited(&self.auth, &caller.label(), caller.address, id, &value)
            .await
    }

    async fn delete_credential(&self, caller: &Caller, id: CredentialId) -> Result<(), AppError> {
        may_manage(caller, id.scope)?;
        self.vault
            .delete_audited(&self.auth, &caller.label(), caller.address, &id)
            .await
    }

    async fn list_files(
        &self,
        caller: &Caller,
        id: SessionId,
        path: String,
    ) -> Result<Vec<FileEntry>, AppError> {
        self.browse_folder(caller, id, &path).await
    }

    async fn view_file(
        &self,
        caller: &Caller,
        id: SessionId,
        path: String,
    ) -> Result<FileView, AppError> {
        self.show_file(caller, id, &path).await
    }

    async fn disk_use(&self, caller: &Caller, id: SessionId) -> Result<DiskUse, AppError> {
        self.workspace_disk_use(caller, id).await
    }

    async fn delete_file(
        &self,
        caller: &Caller,
        id: SessionId,
        path: String,
    ) -> Result<(), AppError> {
        self.delete_workspace_file(caller, id, &path).await
    }

    async fn changes(&self, caller: &Caller, id: SessionId) -> Result<Changes, AppError> {
        let s = self.session_for(caller, id, Access::Watch).await?;
        self.changes.list(&s).await
    }

    async fn change_diff(
        &self,
        caller: &Caller,
        id: SessionId,
        path: String,
    ) -> Result<FileDiff, AppError> {
        let s = self.session_for(caller, id, Access::Watch).await?;
        self.changes.diff(&s, &path).await
    }

    async fn commit_changes(
        &self,
        caller: &Caller,
        id: SessionId,
        message: String,
    ) -> Result<Committed, AppError> {
        let s = self.session_for(caller, id, Access::Operate).await?;
        self.changes.commit(&s, caller, &message).await
    }

    async fn push_changes(&self, caller: &Caller, id: SessionId) -> Result<Committed, AppError> {
        let s = self.session_for(caller, id, Access::Operate).await?;
        self.auth.owner_may_run(&s).await?;
        self.changes.push(&s, caller).await
    }

    async fn audit_log(
        &self,
        caller: &Caller,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, AppError> {
        caller.require_admin()?;
        Ok(self.store.audit_log(before, 200).await?)
    }
}

/// Admins manage the server's credentials; everyone their own, signed in.
fn may_manage(caller: &Caller, scope: CredentialScope) -> Result<(), AppError> {
    caller.require_signed_in()?;
    match scope {
        CredentialScope::Server => caller.require_admin(),
        CredentialScope::User(user) if Some(user) == caller.user => Ok(()),
        CredentialScope::User(_) => Err(AppError::Forbidden(
            "A person's own credentials are theirs to manage.".into(),
        )),
    }
}
