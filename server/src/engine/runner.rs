//! Runs each session's prompts, one at a time, in order, with the engine the
//! session chose, on one replica at a time.
//!
//! A prompt is stored (as a `user_message` event) and queued in the same
//! transaction before anything runs, so nothing a user typed is lost
//! (invariant 4). The queue is a count in the database, so any replica may
//! take a prompt and every replica sees it. Whoever runs a session holds
//! its lease (see [`Leases`](crate::store::Leases)): the replica that
//! stored a prompt takes the lease and drains the queue, unless another
//! holds it, and then that one's loop finds the prompt, since a runner looks
//! at the queue again after it gave its lease up. Stop drops the queue and
//! cancels the running model call or tool at once (the cancellation reaches
//! the HTTP stream and the sandbox's process group), here or, through the
//! bus, where it runs.
//!
//! A replica renews the leases of its runs ([`Runner::renew_leases`]),
//! takes over sessions whose lease lapsed ([`Runner::take_over_orphans`]):
//! after a restart, its own; with several replicas, those of one that died,
//! and gives its sessions up when it shuts down ([`Runner::hand_off`]).

use super::permissions::Permissions;
use super::{AgentEngine, RunError, PROMPT_MAX_BYTES, QUEUED_PROMPTS_MAX};
use crate::auth::Auth;
use crate::config::{AuthSetting, Config};
use crate::egress::EgressProxy;
use crate::journal::{persistently, Journal};
use crate::sandbox::{Found, Sandbox, SandboxError, SandboxSpec};
use crate::store::triggers::Delivered;
use crate::store::{Store, StoreError};
use crate::sync::lock;
use crate::terminal_slots::TerminalSlots;
use crate::vault::Vault;
use crate::workspace_setup::WorkspaceSetup;
use app::domain::{
    AppError, Decision, Engine, EnvVar, EventKind, RunFollower, Session, SessionId, SessionStatus,
    UserId,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A session this replica runs.
struct Run {
    /// The spans of the requests that sent prompts here, in order: each
    /// run's log lines carry that request's id (a prompt sent to another
    /// replica runs in a span of its own).
    spans: VecDeque<tracing::Span>,
    /// Cancelled when another replica took the session's lease: the run
    /// ends and records nothing more, since the session is not ours.
    lost: CancellationToken,
    /// Until when the lease this run's loop took (or last renewed) holds
    /// for sure, by this process's clock: `None` before it took one (a
    /// lease that is nobody's is not one it lost).
    held_until: Option<Instant>,
    /// The running prompt's (a child of `lost`); Stop cancels it.
    cancel: CancellationToken,
}

impl Run {
    fn new(span: Option<tracing::Span>) -> Self {
        let lost = CancellationToken::new();
        Self {
            spans: span.into_iter().collect(),
            cancel: lost.child_token(),
            lost,
            held_until: None,
        }
    }
}

/// What taking over a session found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// It was mid-turn: now interrupted.
    Interrupted,
    /// It waited for a permission decision: it waits again.
    Resumed,
    /// Prompts were queued and nobody ran them: they run now.
    Queued,
}

pub struct Runner {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    /// Whether a session's owner may still run sessions.
    auth: Arc<Auth>,
    journal: Journal,
    sandbox: Arc<dyn Sandbox>,
    vault: Arc<Vault>,
    setup: Arc<WorkspaceSetup>,
    engines: HashMap<Engine, Arc<dyn AgentEngine>>,
    /// The permission requests the engines share.
    permissions: Arc<Permissions>,
    /// The sessions' way to the hosts they may reach.
    egress: EgressProxy,
    /// This process's name among the replicas.
    replica: String,
    runs: Mutex<HashMap<SessionId, Run>>,
    /// One start of a session's sandbox at a time here, and none while the
    /// session is being deleted ([`Runner::hold_starts`]).
    starts: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>,
    /// One start at a time of one person's sandboxes here, so that two
    /// cannot both find room for one ([`Runner::make_room`]).
    owner_starts: Mutex<HashMap<app::domain::UserId, Arc<tokio::sync::Mutex<()>>>>,
    /// The terminals open here: a session with one is in use.
    terminals: TerminalSlots,
    /// The owners barred from running sessions whose sessions were looked
    /// through since they were (see [`Runner::stop_barred`]).
    barred_swept: Mutex<std::collections::HashSet<UserId>>,
    /// Set once this replica hands its sessions off: it starts no run.
    closing: AtomicBool,
}

/// What [`Runner::hold_starts`] holds until it is dropped.
pub struct StartsHeld<'a> {
    _held: tokio::sync::OwnedMutexGuard<()>,
    runner: &'a Runner,
    session: SessionId,
}

impl StartsHeld<'_> {
    /// The session is gone: its gate is forgotten as the hold ends (a start
    /// after it finds the session gone). Kept otherwise, so that starts
    /// stay one at a time.
    pub fn deleted(self) {
        lock(&self.runner.starts).remove(&self.session);
    }
}

/// How long runs cancelled here are given to end (their tools killed,
/// their last writes done): before a replica shutting down gives their
/// leases up all the same, or a barred owner's sandboxes are stopped.
const RUN_END_WAIT: Duration = Duration::from_secs(5);

fn not_found(session: SessionId) -> AppError {
    AppError::NotFound(format!("Session {session}"))
}

/// What a runner asks about the owners whose credentials its runs spend.
pub struct Owners {
    /// Whether an owner may still run sessions.
    pub auth: Arc<Auth>,
    /// Their secrets.
    pub vault: Arc<Vault>,
}

/// The engines a runner runs sessions with, and the permission requests
/// they share.
pub struct Engines {
    pub permissions: Arc<Permissions>,
    pub all: Vec<(Engine, Arc<dyn AgentEngine>)>,
}

impl Runner {
    /// The runner over `config`, whose folders are absolute
    /// ([`Paddock::open`](crate::paddock::Paddock::open) makes them so),
    /// with its engines and the permission requests they share.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        owners: Owners,
        journal: Journal,
        sandbox: Arc<dyn Sandbox>,
        setup: Arc<WorkspaceSetup>,
        engines: Engines,
    ) -> Self {
        let Engines { permissions, all } = engines;
        let Owners { auth, vault } = owners;
        Self {
            replica: config.replica_name(),
            egress: EgressProxy::new(
                config.workspace_root.clone(),
                &config.egress_networks,
                journal.clone(),
            ),
            config,
            store,
            auth,
            journal,
            sandbox,
            vault,
            setup,
            engines: all.into_iter().collect(),
            permissions,
            runs: Mutex::default(),
            starts: Mutex::default(),
            owner_starts: Mutex::default(),
            terminals: TerminalSlots::default(),
            barred_swept: Mutex::default(),
            closing: AtomicBool::new(false),
        }
    }

    /// The engine that runs sessions of this kind.
    pub fn engine(&self, kind: Engine) -> Result<&dyn AgentEngine, AppError> {
        self.engines.get(&kind).map(Arc::as_ref).ok_or_else(|| {
            AppError::Unavailable(format!(
                "The {kind} engine is not available on this server."
            ))
        })
    }

    /// Prepares the session's workspace (once) and starts its sandbox, so
    /// that its first prompt does not wait: what a new session does.
    pub async fn warm_up(&self, s: &Session) -> Result<(), RunError> {
        self.setup.prepare(s.id).await?;
        self.start_sandbox(s).await.map_err(RunError::Sandbox)
    }

    fn start_gate(&self, session: SessionId) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.starts).entry(session).or_default().clone()
    }

    /// Holds off every start of the session's sandbox here while it is
    /// deleted (one under way ends first, so what it made is removed); a
    /// start after finds the session gone and makes nothing. An upload
    /// holds it too, while it makes the workspace and writes to it, so
    /// that a deletion waits for it.
    pub async fn hold_starts(&self, session: SessionId) -> StartsHeld<'_> {
        StartsHeld {
            _held: self.start_gate(session).lock_owned().await,
            runner: self,
            session,
        }
    }

    /// Creates (or starts) a session's sandbox with what its engine needs
    /// mounted, and the session's read-only folders; nothing for a session
    /// deleted since `s` was read.
    pub async fn start_sandbox(&self, s: &Session) -> Result<(), SandboxError> {
        let gate = self.start_gate(s.id);
        let _one_at_a_time = gate.lock().await;
        match self.store.get_session(s.id).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(SandboxError::Failed("the session was deleted".into())),
            Err(e) => return Err(SandboxError::Unavailable(e.to_string())),
        }
        let mut mounts = self
            .engine(s.engine)
            .map_err(|e| SandboxError::Failed(e.to_string()))?
            .mounts(s.id)
            .await?;
        mounts.extend(self.config.mount_policy().sandbox_mounts(&s.mounts)?);
        // One person's starts one at a time, so that two cannot both find
        // room for one.
        let _theirs_one_at_a_time = match s.owner.filter(|_| self.config.auth == AuthSetting::On) {
            Some(owner) => {
                let gate = lock(&self.owner_starts).entry(owner).or_default().clone();
                let held = gate.lock_owned().await;
                // Held through the start only where one is made.
                self.make_room(s.id, owner, self.config.sandboxes_per_person())
                    .await?
                    .then_some(held)
            }
            None => None,
        };
        let proxy = match s.egress.is_empty() {
            true => None,
            false => {
                let (mount, relay) = self.egress.open(s.id, s.owner, &s.egress).map_err(|e| {
                    SandboxError::Failed(format!("cannot open the egress proxy: {e}"))
                })?;
                mounts.push(mount);
                Some(relay)
            }
        };
        let spec = SandboxSpec {
            limits: self.config.limits_for(s.limits),
            image: s.image.clone(),
            mounts,
            proxy,
        };
        self.sandbox.start_with(s.id, &spec).await
    }

    /// Keeps `owner` within `most` running sandboxes as `session`'s starts:
    /// their unused ones stop, the longest unused first; refused when none
    /// can be. `false` when the session's own is up already (nothing to
    /// make room for).
    async fn make_room(
        &self,
        session: SessionId,
        owner: app::domain::UserId,
        most: usize,
    ) -> Result<bool, SandboxError> {
        let found = self.sandbox.list().await?;
        if found
            .iter()
            .any(|f| f.session == session && (f.running || f.paused))
        {
            return Ok(false);
        }
        let mut theirs = Vec::new();
        for f in found.iter().filter(|f| f.running || f.paused) {
            match self.store.get_session(f.session).await {
                Ok(Some(other)) if other.owner == Some(owner) => theirs.push(other),
                Ok(_) => {}
                Err(e) => return Err(SandboxError::Unavailable(e.to_string())),
            }
        }
        let mut up = theirs.len();
        theirs.sort_by_key(|other| other.updated_at);
        for other in theirs {
            if up < most {
                break;
            }
            if self.stop_unused(other.id).await {
                up -= 1;
            }
        }
        if up < most {
            return Ok(true);
        }
        Err(SandboxError::Failed(format!(
            "{most} sandboxes of this session's owner are running, and none of them could \
             be stopped for it (each in use: a run, a terminal): send this again once one is \
             done (PADDOCK_SANDBOXES_PER_PERSON)"
        )))
    }

    /// Stops the session's sandbox if nothing uses it: no run here or on
    /// another replica (which holds a lease), no terminal open (here, or
    /// by its transcript wherever it was opened), and no start of it under
    /// way here; whether it stopped.
    async fn stop_unused(&self, session: SessionId) -> bool {
        let gate = self.start_gate(session);
        let Ok(_one_at_a_time) = gate.try_lock() else {
            return false;
        };
        if self.is_running(session) || self.terminals.any_open(session) {
            return false;
        }
        let used_elsewhere = async {
            Ok::<_, StoreError>(
                self.store
                    .lease_holder(session, chrono::Utc::now())
                    .await?
                    .is_some()
                    || terminal_open(&*self.store, session).await?,
            )
        };
        if !matches!(used_elsewhere.await, Ok(false)) {
            return false;
        }
        match self.sandbox.stop(session).await {
            Ok(()) => {
                self.egress.close(session);
                true
            }
            Err(e) => {
                tracing::warn!(%session, "cannot stop an unused sandbox: {e}");
                false
            }
        }
    }

    /// The sessions' way to the hosts they may reach.
    pub fn egress(&self) -> &EgressProxy {
        &self.egress
    }

    /// Stores and queues the prompt, then runs it now or after the prompts
    /// before it, here or on the replica that runs the session.
    pub async fn send_prompt(
        self: &Arc<Self>,
        session: SessionId,
        text: String,
    ) -> Result<(), AppError> {
        self.may_queue(session, &text).await?;
        self.journal.record_prompt(session, text).await?;
        self.run_queued(session);
        Ok(())
    }

    /// [`Runner::send_prompt`] for a trigger's delivery: its record, the
    /// prompt and the delivery noted prompted are stored in one
    /// transaction, so that the sender's repeat never queues it twice.
    /// `false` when the delivery's claim was taken over (nothing queued).
    pub async fn send_delivered_prompt(
        self: &Arc<Self>,
        session: SessionId,
        delivered: Delivered<'_>,
        text: String,
    ) -> Result<bool, AppError> {
        self.may_queue(session, &text).await?;
        if !self
            .journal
            .record_delivered_prompt(session, delivered, text)
            .await?
        {
            return Ok(false);
        }
        self.run_queued(session);
        Ok(true)
    }

    /// Refuses a prompt that is empty or too long, or one for a session
    /// that is gone or has too many waiting.
    async fn may_queue(&self, session: SessionId, text: &str) -> Result<(), AppError> {
        if text.trim().is_empty() {
            return Err(AppError::Invalid("The prompt is empty.".into()));
        }
        if text.len() > PROMPT_MAX_BYTES {
            return Err(AppError::Invalid(format!(
                "The prompt is too long: at most {} KiB.",
                PROMPT_MAX_BYTES / 1024
            )));
        }
        let s = self
            .store
            .get_session(session)
            .await?
            .ok_or_else(|| not_found(session))?;
        if self.store.queued_prompts(session).await? >= QUEUED_PROMPTS_MAX {
            return Err(AppError::Conflict(format!(
                "{QUEUED_PROMPTS_MAX} prompts already wait their turn in this session: send \
                 more once it has worked through some (or Stop, which drops them)."
            )));
        }
        // So that a secret pasted into the prompt is masked too; a secret
        // that cannot be opened any more is the run's error to report.
        let _ = self.secrets(&s).await;
        Ok(())
    }

    /// Runs a prompt just queued: now, or after the run under way here; on
    /// the replicas that stay when this one is closing.
    fn run_queued(self: &Arc<Self>, session: SessionId) {
        if self.closing() {
            return;
        }
        let span = tracing::info_span!("run", %session);
        let start = {
            let mut runs = lock(&self.runs);
            match runs.get_mut(&session) {
                Some(run) => {
                    run.spans.push_back(span);
                    false
                }
                None => {
                    runs.insert(session, Run::new(Some(span)));
                    true
                }
            }
        };
        if start {
            self.spawn_drive(session, false, None);
        }
    }

    /// Drops the session's queued prompts and cancels what it is doing, if
    /// it runs here (on another replica, [`Runner::cancel`] does it there).
    pub async fn stop(&self, session: SessionId) -> Result<(), AppError> {
        self.store
            .get_session(session)
            .await?
            .ok_or_else(|| not_found(session))?;
        self.store.drop_prompts(session).await?;
        self.cancel(session);
        Ok(())
    }

    /// Cancels the session's run, if it runs here.
    pub fn cancel(&self, session: SessionId) {
        if let Some(run) = lock(&self.runs).get_mut(&session) {
            run.spans.clear();
            run.cancel.cancel();
        }
    }

    /// The terminals open here, which the runner counts as use of their
    /// sandbox.
    pub fn terminals(&self) -> &TerminalSlots {
        &self.terminals
    }

    /// Whether the session is running a prompt on this replica right now.
    pub fn is_running(&self, session: SessionId) -> bool {
        lock(&self.runs).contains_key(&session)
    }

    /// How many sessions run on this replica.
    pub fn running(&self) -> usize {
        lock(&self.runs).len()
    }

    /// Renews the lease of every session running here; a run whose lease
    /// another replica took (this one was cut off for longer than a lease)
    /// is cancelled, so that a session never runs twice for long.
    pub async fn renew_leases(&self) {
        let runs: Vec<(SessionId, CancellationToken, Instant)> = lock(&self.runs)
            .iter()
            .filter_map(|(session, run)| Some((*session, run.lost.clone(), run.held_until?)))
            .collect();
        let asked = Instant::now();
        let until = chrono::Utc::now() + self.config.lease();
        // All at once, each given until its lease lapses: a database that
        // hangs or refuses ends the run by then, however many there are.
        let renewals = runs.into_iter().map(|(session, lost, held_until)| async move {
            // What is left of the lease (a second at least: a renewal that
            // succeeds late finds the lease still this replica's, taken by
            // nobody meanwhile).
            let left = || {
                held_until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1))
            };
            let renewed =
                tokio::time::timeout(left(), self.store.renew_lease(session, &self.replica, until))
                    .await;
            let Ok(renewed) = renewed else {
                tracing::warn!(%session, "the session's lease was not renewed within a lease's time: its run here ends");
                lost.cancel();
                return;
            };
            match renewed {
                Ok(true) => {
                    if let Some(run) = lock(&self.runs).get_mut(&session) {
                        run.held_until = Some(asked + self.config.lease());
                    }
                }
                // Taken by another replica, or given up a moment ago. The
                // run read above ends (it is over, if its loop gave the
                // lease up), unless the lease is this replica's again by
                // now: taken for the next prompt, by a run of its own.
                Ok(false) => {
                    let asked = self.store.lease_holder(session, chrono::Utc::now());
                    let holder = tokio::time::timeout(left(), asked).await;
                    if holder.is_ok_and(|h| h.is_ok_and(|h| h.as_deref() == Some(self.replica.as_str()))) {
                        return;
                    }
                    if !lost.is_cancelled() && lock(&self.runs).contains_key(&session) {
                        tracing::warn!(%session, "the session's lease is not this replica's: its run here ends");
                    }
                    lost.cancel();
                }
                // Refused renewals for longer than a lease (the database
                // unreachable): another replica may hold it by now, so
                // the run ends rather than run twice.
                Err(e) if Instant::now() >= held_until => {
                    tracing::warn!(%session, "the session's lease was not renewed for a lease's time ({e}): its run here ends");
                    lost.cancel();
                }
                Err(e) => tracing::warn!(%session, "cannot renew the session's lease: {e}"),
            }
        });
        futures_util::future::join_all(renewals).await;
    }

    /// Ends the runs of this replica, which is shutting down, waits a
    /// moment for them to be over, and gives their leases up, so that
    /// another replica takes them over at once rather than after a lease.
    /// From then on this replica starts no run (prompts it stores stay
    /// queued for the others).
    pub async fn hand_off(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let sessions: Vec<SessionId> = {
            let runs = lock(&self.runs);
            for run in runs.values() {
                run.lost.cancel();
            }
            runs.keys().copied().collect()
        };
        self.until_ended(&sessions).await;
        for session in sessions {
            if let Err(e) = self.store.release_lease(session, &self.replica).await {
                tracing::warn!(%session, "cannot give the session's lease up: {e}");
            }
        }
    }

    /// Waits until none of `sessions` runs here, at most [`RUN_END_WAIT`].
    async fn until_ended(&self, sessions: &[SessionId]) {
        let deadline = Instant::now() + RUN_END_WAIT;
        while sessions.iter().any(|s| self.is_running(*s)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Removes the sandboxes (and workspaces) whose session is gone: left
    /// by a server that stopped while it deleted one, or made again by a
    /// run here while another replica deleted its session. Each is checked
    /// on its own after all are listed: a session made meanwhile is stored
    /// before its sandbox, so it is never taken for gone. One that cannot
    /// be removed now is logged, and the others are still removed.
    pub async fn reap_sandboxes(&self) -> anyhow::Result<Vec<SessionId>> {
        let mut reaped = Vec::new();
        for found in self.sandbox.list().await? {
            if self.store.get_session(found.session).await?.is_none() {
                if let Err(e) = self.egress.forget(found.session) {
                    tracing::warn!(session = %found.session, "cannot remove the egress proxy of a session that is gone: {e}");
                }
                match self.sandbox.destroy(found.session).await {
                    Ok(()) => reaped.push(found.session),
                    Err(e) => {
                        tracing::warn!(session = %found.session, "cannot remove the sandbox of a session that is gone: {e}")
                    }
                }
            }
        }
        Ok(reaped)
    }

    /// Closes the egress socket of each sandbox that is no longer up
    /// without this server stopping it (its main process killed from
    /// inside, the Docker daemon restarted, removed by hand), as
    /// [`Self::stop_unused`] closes it: each holds a descriptor of the
    /// server's until the session's next start. One under way or made since
    /// it was listed is left alone. Returns the sessions.
    pub async fn close_egress_of_downed(&self) -> anyhow::Result<Vec<SessionId>> {
        let down = |found: &[Found], session| {
            !found
                .iter()
                .any(|f| f.session == session && (f.running || f.paused))
        };
        let found = self.sandbox.list().await?;
        let mut closed = Vec::new();
        for session in self.egress.open_sessions() {
            if !down(&found, session) {
                continue;
            }
            let gate = self.start_gate(session);
            let Ok(_no_start) = gate.try_lock() else {
                continue;
            };
            if down(&self.sandbox.list().await?, session) {
                self.egress.close(session);
                closed.push(session);
            }
        }
        Ok(closed)
    }

    /// After a start of the one process serving (no other replicas): the
    /// terminals the transcripts of sessions with a sandbox say are open
    /// are closed, since none can be (a crash recorded none of their
    /// ends, and such a session's sandbox would never be stopped as
    /// unused). Returns the sessions.
    pub async fn close_stale_terminals(&self) -> anyhow::Result<Vec<SessionId>> {
        let mut closed = Vec::new();
        for found in self.sandbox.list().await? {
            let session = found.session;
            for (replica, number, by) in open_terminals(&*self.store, session).await? {
                let end = EventKind::Terminal {
                    number,
                    by,
                    closed: Some("Paddock restarted".into()),
                    replica,
                };
                self.journal.record(session, end).await?;
                closed.push(session);
            }
        }
        closed.dedup();
        Ok(closed)
    }

    /// How long a sandbox may go unused ([`Config::sandbox_idle`]).
    pub fn sandbox_idle(&self) -> Option<Duration> {
        self.config.sandbox_idle()
    }

    /// Stops the sandboxes [unused](Self::stop_unused) with nothing stored in
    /// their session for `idle`. Its workspace stays; the next run or
    /// terminal starts it again. Returns the sessions whose sandbox
    /// stopped.
    pub async fn stop_idle_sandboxes(&self, idle: Duration) -> anyhow::Result<Vec<SessionId>> {
        let mut stopped = Vec::new();
        for found in self.sandbox.list().await? {
            let session = found.session;
            let now = chrono::Utc::now();
            let Some(s) = self.store.get_session(session).await? else {
                continue;
            };
            if (found.running || found.paused)
                && (now - s.updated_at).to_std().unwrap_or_default() >= idle
                && self.stop_unused(session).await
            {
                stopped.push(session);
            }
        }
        Ok(stopped)
    }

    /// Stops what runs here on the credentials of owners who may no longer
    /// run sessions (disabled, or made viewers): `whose` sessions
    /// (everyone's: `None`). A run here ends, saying why, and its queued
    /// prompts are dropped; a sandbox stops once nothing uses it (the
    /// owner's and collaborators' terminals end on the same change, and a
    /// later sweep stops a sandbox one still held). Returns the sessions
    /// whose sandbox stopped.
    ///
    /// A barred owner's sessions are looked through once for their access
    /// changes (nothing of theirs starts after): the others (a viewer's
    /// sign-outs, tokens, shares) cost one read. Everyone's look (`None`)
    /// goes through all again.
    pub async fn stop_barred(&self, whose: Option<UserId>) -> anyhow::Result<Vec<SessionId>> {
        match whose {
            Some(user) => {
                if self.auth.runner(user).await?.is_some() {
                    lock(&self.barred_swept).remove(&user);
                    return Ok(Vec::new());
                }
                if lock(&self.barred_swept).contains(&user) {
                    return Ok(Vec::new());
                }
            }
            None => lock(&self.barred_swept).clear(),
        }
        let running: Vec<SessionId> = lock(&self.runs).keys().copied().collect();
        let mut up = Vec::new();
        for found in self.sandbox.list().await? {
            if found.running || found.paused {
                up.push(found.session);
            }
        }
        let mut seen = std::collections::HashSet::new();
        // Each owner's answer, read once: why they are barred, if they are.
        let mut verdicts: HashMap<Option<UserId>, Option<String>> = HashMap::new();
        let mut barred = Vec::new();
        for session in running.iter().chain(&up) {
            if !seen.insert(*session) {
                continue;
            }
            let Some(s) = self.store.get_session(*session).await? else {
                continue;
            };
            if whose.is_some_and(|user| s.owner != Some(user)) {
                continue;
            }
            let verdict = match verdicts.get(&s.owner) {
                Some(verdict) => verdict.clone(),
                None => {
                    let verdict = match self.auth.owner_may_run(&s).await {
                        Ok(()) => None,
                        Err(AppError::Conflict(why)) => Some(why),
                        Err(e) => return Err(e.into()),
                    };
                    verdicts.insert(s.owner, verdict.clone());
                    verdict
                }
            };
            let Some(why) = verdict else {
                continue;
            };
            if self.is_running(*session) {
                let message = format!("{why} Its run was stopped.");
                let _ = self
                    .journal
                    .record(*session, EventKind::Error { message })
                    .await;
                if let Err(e) = self.stop(*session).await {
                    tracing::warn!(%session, "cannot stop a barred owner's run: {e}");
                }
            }
            barred.push(*session);
        }
        // The runs stopped end first (their tools killed), then what they
        // used is stopped.
        self.until_ended(&barred).await;
        let mut stopped = Vec::new();
        for session in barred {
            if up.contains(&session) && self.stop_unused(session).await {
                stopped.push(session);
            }
        }
        // Looked through: their next changes need not (one that failed
        // on the way is looked through again at the next).
        if let Some(user) = whose {
            lock(&self.barred_swept).insert(user);
        }
        Ok(stopped)
    }

    /// Takes over sessions with work nobody runs (see
    /// [`Leases::orphaned_sessions`](crate::store::Leases::orphaned_sessions)): a run cut off is marked interrupted,
    /// a permission request waits again, queued prompts run.
    pub async fn take_over_orphans(
        self: &Arc<Self>,
    ) -> Result<Vec<(SessionId, Takeover)>, AppError> {
        if self.closing() {
            return Ok(Vec::new());
        }
        let orphans = self
            .store
            .orphaned_sessions(&self.replica, chrono::Utc::now())
            .await?;
        let mut taken = Vec::new();
        for session in orphans {
            match self.take_over(session).await {
                Ok(Some(how)) => taken.push((session, how)),
                Ok(None) => {}
                Err(e) => tracing::warn!(%session, "cannot take the session over: {e}"),
            }
        }
        Ok(taken)
    }

    async fn take_over(self: &Arc<Self>, session: SessionId) -> Result<Option<Takeover>, AppError> {
        {
            let mut runs = lock(&self.runs);
            if runs.contains_key(&session) {
                return Ok(None);
            }
            let span = tracing::info_span!("run", %session, taken_over = true);
            runs.insert(session, Run::new(Some(span)));
        }
        let taken = self.take_over_run(session).await;
        if !matches!(taken, Ok(Some(_))) {
            lock(&self.runs).remove(&session);
            if taken.is_err() {
                let _ = self.store.release_lease(session, &self.replica).await;
            }
        }
        taken
    }

    async fn take_over_run(
        self: &Arc<Self>,
        session: SessionId,
    ) -> Result<Option<Takeover>, AppError> {
        if !self.lease(session).await? {
            return Ok(None);
        }
        let Some(s) = self.store.get_session(session).await? else {
            return Ok(None);
        };
        if s.status == SessionStatus::AwaitingPermission
            && self.engine(s.engine)?.listen_again(&s).await?
        {
            // Nothing ran yet: the question is still open, and the run goes
            // on once someone answers it.
            self.spawn_drive(session, true, None);
            return Ok(Some(Takeover::Resumed));
        }
        // A run cut off may have taken several queued prompts as one turn,
        // and left the queue's other entries for them: each is skipped from
        // where that run started, rather than run with nothing new.
        let last_start = self.run_started(session).await;
        let how = if s.status.is_busy() {
            let waiting = self.store.queued_prompts(session).await? > 0
                && match last_start {
                    Some(start) => self.prompted_since(session, start).await,
                    None => true,
                };
            let next = if waiting {
                "the prompts queued behind this one run now."
            } else {
                "send a prompt to continue."
            };
            let message = format!(
                "Paddock stopped while this session was working. Its workspace is intact; {next}"
            );
            // A question its engine cannot ask again (the CLI that asked is
            // gone) is answered by nobody now.
            self.expire_requests(session, "Paddock stopped before anyone decided.")
                .await;
            self.journal
                .set_status(session, SessionStatus::Interrupted, Some(message))
                .await?;
            Takeover::Interrupted
        } else {
            Takeover::Queued
        };
        self.spawn_drive(session, false, last_start);
        Ok(Some(how))
    }

    /// Takes or renews the session's lease for this replica.
    async fn lease(&self, session: SessionId) -> Result<bool, StoreError> {
        let now = chrono::Utc::now();
        self.store
            .acquire_lease(session, &self.replica, now, now + self.config.lease())
            .await
    }

    /// Runs the session's queue on a task of its own; its [`Run`] is
    /// registered already.
    fn spawn_drive(self: &Arc<Self>, session: SessionId, resumed: bool, last_start: Option<i64>) {
        let me = self.clone();
        tokio::spawn(async move { me.drive(session, resumed, last_start).await });
    }

    /// Holds the session's lease while prompts are queued, and runs them
    /// one by one (`resumed`: first the run that waits for a permission
    /// decision). Gives the lease up when the queue is empty, then looks
    /// again: a prompt stored meanwhile by a replica that found the lease
    /// taken is this loop's to run.
    ///
    /// `last_start` is where the last run started (here, or before a
    /// takeover): the prompts stored before then went to the model with it
    /// or before (both engines give a run all those not given yet, as one
    /// turn; those stored since are the next run's), so a queue entry with
    /// none stored since is skipped.
    async fn drive(&self, session: SessionId, mut resumed: bool, mut last_start: Option<i64>) {
        loop {
            let asked = Instant::now();
            let leased = self.lease(session).await;
            if let Err(e) = &leased {
                tracing::warn!(%session, "cannot take the session's lease: {e}");
            }
            if matches!(leased, Ok(true)) && self.closing() {
                // Handing its sessions off: the lease goes straight back.
                let _ = self.store.release_lease(session, &self.replica).await;
            }
            let lost = {
                let mut runs = lock(&self.runs);
                if !matches!(leased, Ok(true)) || self.closing() {
                    // Another replica runs the session, and its loop runs
                    // the queue (or the heartbeat tries again).
                    runs.remove(&session);
                    return;
                }
                let Some(run) = runs.get_mut(&session) else {
                    return;
                };
                run.held_until = Some(asked + self.config.lease());
                run.lost.clone()
            };
            loop {
                // A fresh token before the prompt is taken: a Stop from
                // then on takes this run down with it. Not for a run taken
                // over to resume: a Stop that came as it was taken over is
                // for it (it ends as stopped, its question expired).
                let cancel = {
                    let mut runs = lock(&self.runs);
                    let Some(run) = runs.get_mut(&session) else {
                        break;
                    };
                    if run.cancel.is_cancelled() && !resumed {
                        run.cancel = lost.child_token();
                    }
                    run.cancel.clone()
                };
                if lost.is_cancelled() {
                    break;
                }
                let resuming = std::mem::take(&mut resumed);
                let next = if resuming {
                    Ok(true)
                } else if !self.still_leased(session, &lost).await {
                    break;
                } else {
                    self.store.take_prompt(session).await
                };
                match next {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(%session, "cannot read the session's queue: {e}");
                        break;
                    }
                }
                let span = lock(&self.runs)
                    .get_mut(&session)
                    .and_then(|run| run.spans.pop_front())
                    .unwrap_or_else(|| tracing::info_span!("run", %session));
                if let Some(start) = last_start {
                    if !self.prompted_since(session, start).await {
                        // This entry's prompt went with the last run: a run
                        // now would have nothing to do, yet say it finished.
                        continue;
                    }
                }
                let started = self.run_one(session, &cancel, &lost).instrument(span).await;
                // A resumed run goes on with the run it resumes, which
                // started before what was sent while it waited.
                last_start = match resuming {
                    true => self.run_started(session).await,
                    false => started,
                };
            }
            if lost.is_cancelled() {
                // The session and its queue are another replica's now.
                lock(&self.runs).remove(&session);
                return;
            }
            // The lease first: a prompt sent here before the run is gone
            // finds it and leaves its prompt to the look below.
            if let Err(e) = self.store.release_lease(session, &self.replica).await {
                tracing::warn!(%session, "cannot give the session's lease up: {e}");
            }
            lock(&self.runs).remove(&session);
            if self.store.queued_prompts(session).await.unwrap_or(0) == 0 {
                return;
            }
            let mut runs = lock(&self.runs);
            if runs.contains_key(&session) {
                // A prompt sent here meanwhile started a loop of its own.
                return;
            }
            runs.insert(session, Run::new(None));
        }
    }

    /// Whether a prompt was stored after the event `seq` (when the store
    /// cannot say, it was: a prompt is never left unrun).
    async fn prompted_since(&self, session: SessionId, seq: i64) -> bool {
        match self.store.prompted_after(session, seq).await {
            Ok(prompted) => prompted,
            Err(e) => {
                tracing::warn!(%session, "cannot read the session's prompts: {e}");
                true
            }
        }
    }

    /// Where the session's newest run started: its `running` status after
    /// one that ended a run (a `running` after a permission decision goes
    /// on with a run).
    async fn run_started(&self, session: SessionId) -> Option<i64> {
        let events = self.store.conversation_after(session, 0).await.ok()?;
        let mut runs = RunFollower::default();
        let mut started = None;
        for event in &events {
            if let EventKind::Status { status, .. } = event.kind {
                if runs.starts(status) {
                    started = Some(event.seq);
                }
            }
        }
        started
    }

    /// Runs one queued prompt, from the status that says so to the one that
    /// says how it ended; where the status that started it stands.
    async fn run_one(
        &self,
        session: SessionId,
        cancel: &CancellationToken,
        lost: &CancellationToken,
    ) -> Option<i64> {
        let started = self
            .journal
            .set_status(session, SessionStatus::Running, None)
            .await
            .ok()
            .map(|e| e.seq);
        crate::metrics::run_started();
        let outcome = self.run_engine(session, cancel).await;
        if lost.is_cancelled() {
            crate::metrics::run_finished(if self.closing() {
                "handed_off"
            } else {
                "taken_over"
            });
            return None;
        }
        crate::metrics::run_finished(match &outcome {
            Ok(()) => "completed",
            Err(RunError::Stopped) => "stopped",
            Err(_) => "failed",
        });
        let (status, message) = match outcome {
            Ok(()) => (SessionStatus::Idle, None),
            Err(RunError::Stopped) => {
                self.expire_requests(session, "The run was stopped before anyone decided.")
                    .await;
                (SessionStatus::Idle, Some("Stopped.".to_owned()))
            }
            Err(e) => {
                let message = self.journal.mask(session, &e.to_string()).into_owned();
                tracing::warn!(%session, "the run failed: {message}");
                let event = EventKind::Error { message };
                let _ = self.journal.record(session, event).await;
                // (One resumed to wait again may fail before it asks.) Not
                // when another replica took the session over meanwhile:
                // its run waits on them.
                let held = self.store.lease_holder(session, chrono::Utc::now()).await;
                if !matches!(held, Ok(Some(holder)) if holder != self.replica) {
                    self.expire_requests(session, "The run failed before anyone decided.")
                        .await;
                }
                (SessionStatus::Error, None)
            }
        };
        self.permissions.forget_allowed(session);
        self.record_end(session, status, message, lost).await;
        started
    }

    /// Records how a run ended, trying again for a while (a database
    /// failing over): a run whose end is not recorded looks cut short to
    /// the next, which resumes it instead of taking the next prompt. Not
    /// once another replica took the session over.
    async fn record_end(
        &self,
        session: SessionId,
        status: SessionStatus,
        message: Option<String>,
        lost: &CancellationToken,
    ) {
        if !self.still_leased(session, lost).await {
            return;
        }
        let recorded = persistently(lost, || {
            self.journal.set_status(session, status, message.clone())
        })
        .await;
        if let Err(e) = recorded {
            tracing::warn!(%session, "cannot record the end of a run: {e}");
        }
    }

    /// Whether this replica still holds the session's lease, renewed for
    /// another term; else `lost` is cancelled. Asked before a prompt is
    /// taken and a run's end recorded: a replica paused past its lease (a
    /// frozen machine) would learn only at its next heartbeat that another
    /// took the session over meanwhile, and write over that one's run, or
    /// take its prompts. (A database that does not answer is no news: the
    /// heartbeat ends the run once the lease has lapsed.)
    async fn still_leased(&self, session: SessionId, lost: &CancellationToken) -> bool {
        let until = chrono::Utc::now() + self.config.lease();
        match self.store.renew_lease(session, &self.replica, until).await {
            Ok(false) => {
                tracing::warn!(%session, "the session's lease is not this replica's: its run here ends");
                lost.cancel();
                false
            }
            Ok(true) | Err(_) => !lost.is_cancelled(),
        }
    }

    /// Records the permission requests a stopped (or interrupted) run left
    /// undecided as expired, saying `why`: nobody waits for them, so no
    /// page offers to decide them, and a decision is a 404.
    async fn expire_requests(&self, session: SessionId, why: &str) {
        self.permissions.forget_requests(session);
        let open = match Permissions::open_in(&*self.store, session).await {
            Ok(open) => open,
            Err(e) => {
                tracing::warn!(%session, "cannot read the requests a stopped run left: {e}");
                return;
            }
        };
        for request_id in open {
            let expired = EventKind::PermissionDecision {
                request_id,
                decision: Decision::Expired,
                reason: Some(why.to_owned()),
                by: None,
            };
            if let Err(e) = self.journal.record(session, expired).await {
                tracing::warn!(%session, "cannot record a request the stop left: {e}");
            }
        }
    }

    /// Runs the oldest queued prompt with the session's engine.
    async fn run_engine(
        &self,
        session: SessionId,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let mut s = self
            .store
            .get_session(session)
            .await?
            .ok_or(RunError::Deleted)?;
        // A prompt queued before its owner was disabled (or made a viewer)
        // runs on nobody's credentials.
        self.auth.owner_may_run(&s).await?;
        let secrets = self.secrets(&s).await?;
        s.env.extend(
            secrets
                .into_iter()
                .map(|(name, value)| EnvVar { name, value }),
        );
        // A clone can take minutes: Stop ends the run at once, and the
        // preparation goes on, so the next prompt finds it whole.
        let preparing = self.setup.prepare_apart(session);
        tokio::select! {
            prepared = preparing => {
                prepared.map_err(|e| AppError::Unavailable(e.to_string()))??;
            }
            () = cancel.cancelled() => return Err(RunError::Stopped),
        }
        self.start_sandbox(&s).await.map_err(RunError::Sandbox)?;
        self.engine(s.engine)?.run(s, cancel).await
    }

    /// Opens the secrets the session lists, as of now (a secret saved again
    /// since the last run has its new value), and has the journal mask them:
    /// every one that opens, even when another does not.
    async fn secrets(&self, s: &Session) -> Result<Vec<(String, String)>, AppError> {
        let mut secrets = Vec::with_capacity(s.secrets.len());
        let mut refusal = None;
        for name in &s.secrets {
            match self
                .vault
                .secrets(s.owner, std::slice::from_ref(name))
                .await
            {
                Ok(opened) => secrets.extend(opened),
                Err(e) => refusal = refusal.or(Some(e)),
            }
        }
        let values: Vec<&str> = secrets.iter().map(|(_, v)| v.as_str()).collect();
        self.journal.set_secrets(s.id, &values);
        refusal.map_or(Ok(secrets), Err)
    }
}

/// Terminal events of a session read back to tell whether one is open:
/// many terminals opened and closed since one still open do not hide it.
const TERMINAL_EVENTS_READ: i64 = 1024;

/// Whether the session's transcript has a terminal opened and not yet
/// closed, among its newest terminal events.
async fn terminal_open(store: &dyn Store, session: SessionId) -> Result<bool, StoreError> {
    Ok(!open_terminals(store, session).await?.is_empty())
}

/// The terminals the session's transcript says are open (opened and not
/// yet closed, among its newest terminal events): each one's replica (each
/// numbers its own), number and who opened it.
async fn open_terminals(
    store: &dyn Store,
    session: SessionId,
) -> Result<Vec<(Option<String>, u32, String)>, StoreError> {
    let newest_first = store
        .events_before(session, i64::MAX, "terminal", TERMINAL_EVENTS_READ)
        .await?;
    let mut closed = std::collections::HashSet::new();
    let mut open = Vec::new();
    for event in newest_first {
        if let EventKind::Terminal {
            number,
            by,
            closed: why,
            replica,
        } = event.kind
        {
            let key = (replica.clone(), number);
            if why.is_some() {
                closed.insert(key);
            } else if closed.insert(key) {
                open.push((replica, number, by));
            }
        }
    }
    Ok(open)
}
