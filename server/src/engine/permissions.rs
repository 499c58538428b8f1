//! Asking a person before a tool runs, for every engine.
//!
//! A request is an event in the transcript; any viewer of the session may
//! answer it (once), and it is denied when nobody does in time. A request is
//! listened for before it is visible, so a quick answer always finds it.
//! "Allow for this session" adds the tool to the session's allowed set,
//! which the engines read back from the transcript after a restart.

use super::RunError;
use crate::journal::Journal;
use crate::store::{Store, StoreError};
use crate::sync::lock;
use app::domain::{AppError, Decision, Event, EventKind, SessionId, SessionStatus};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A person's answer: the decision, why, and who gave it.
struct Ruling {
    decision: Decision,
    reason: Option<String>,
    by: Option<String>,
}

type Answer = oneshot::Receiver<Ruling>;

struct Pending {
    session: SessionId,
    answer: oneshot::Sender<Ruling>,
}

/// The open permission requests of every session, and what each session
/// allowed for itself.
pub struct Permissions {
    journal: Journal,
    /// How long a request waits for a decision.
    timeout: Duration,
    pending: Mutex<HashMap<String, Pending>>,
    /// Tools a user allowed "for this session".
    allowed: Mutex<HashMap<SessionId, HashSet<String>>>,
    /// Answers to requests stored before a restart, listened for from the
    /// moment the server is back (before it serves), until their run picks
    /// them up: a decision made at once is not lost.
    recovered: Mutex<HashMap<String, Answer>>,
}

/// Whether the tool may run, and the reason a person gave.
pub type Verdict = (bool, Option<String>);

/// The tools a user allowed "for this session", from the decisions in the
/// log, so the choice outlives a restart (each engine reads them back).
pub fn allowed_for_session(events: &[Event]) -> HashSet<String> {
    let mut tools: HashMap<&str, &str> = HashMap::new();
    let mut allowed = HashSet::new();
    for event in events {
        match &event.kind {
            EventKind::PermissionRequest {
                request_id, tool, ..
            } => {
                tools.insert(request_id, tool);
            }
            EventKind::PermissionDecision {
                request_id,
                decision: Decision::AllowSession,
                ..
            } => {
                if let Some(tool) = tools.get(request_id.as_str()) {
                    allowed.insert((*tool).to_owned());
                }
            }
            _ => {}
        }
    }
    allowed
}

/// The tools allowed "for this session" ([`allowed_for_session`]), read
/// by kind, a page at a time, each let go once looked at: the transcript
/// itself may be long, and a request holds its tool's whole input.
pub async fn allowed_in(
    store: &dyn Store,
    session: SessionId,
) -> Result<HashSet<String>, StoreError> {
    let mut decided = HashSet::new();
    each_of_kind(store, session, "permission_decision", |kind| {
        if let EventKind::PermissionDecision {
            request_id,
            decision: Decision::AllowSession,
            ..
        } = kind
        {
            decided.insert(request_id);
        }
    })
    .await?;
    let mut allowed = HashSet::new();
    if !decided.is_empty() {
        each_of_kind(store, session, "permission_request", |kind| {
            if let EventKind::PermissionRequest {
                request_id, tool, ..
            } = kind
            {
                if decided.contains(&request_id) {
                    allowed.insert(tool);
                }
            }
        })
        .await?;
    }
    Ok(allowed)
}

/// Hands each of the session's events of `kind` to `each`, newest first,
/// a page at a time.
async fn each_of_kind(
    store: &dyn Store,
    session: SessionId,
    kind: &str,
    mut each: impl FnMut(EventKind),
) -> Result<(), StoreError> {
    const PAGE: i64 = 256;
    let mut before = i64::MAX;
    loop {
        let page = store.events_before(session, before, kind, PAGE).await?;
        let full = page.len() as i64 == PAGE;
        let Some(oldest) = page.last() else {
            return Ok(());
        };
        before = oldest.seq;
        page.into_iter().for_each(|e| each(e.kind));
        if !full {
            return Ok(());
        }
    }
}

impl Permissions {
    /// The permission requests the transcript holds without a decision,
    /// in the order they were asked: those a replica may still be waiting
    /// on.
    pub fn open_requests(events: &[Event]) -> Vec<String> {
        let mut open: Vec<String> = Vec::new();
        for event in events {
            match &event.kind {
                EventKind::PermissionRequest { request_id, .. } => {
                    open.push(request_id.clone());
                }
                EventKind::PermissionDecision { request_id, .. } => {
                    open.retain(|r| r != request_id);
                }
                _ => {}
            }
        }
        open
    }

    /// The session's permission requests its transcript holds without a
    /// decision ([`Permissions::open_requests`]), read by kind among its
    /// newest requests and decisions: the transcript itself may be long.
    pub async fn open_in(store: &dyn Store, session: SessionId) -> Result<Vec<String>, StoreError> {
        const READ: i64 = 256;
        let newest = |kind| store.events_before(session, i64::MAX, kind, READ);
        let mut events = newest("permission_request").await?;
        events.extend(newest("permission_decision").await?);
        events.sort_by_key(|e| e.seq);
        Ok(Self::open_requests(&events))
    }

    /// Forgets what waits for decisions in `session` (its run ended): a
    /// decision for it is then "not pending", not taken and lost.
    pub fn forget_requests(&self, session: SessionId) {
        let mut pending = lock(&self.pending);
        let ids: Vec<String> = pending
            .iter()
            .filter(|(_, p)| p.session == session)
            .map(|(id, _)| id.clone())
            .collect();
        let mut recovered = lock(&self.recovered);
        for id in ids {
            pending.remove(&id);
            recovered.remove(&id);
        }
    }

    pub fn new(journal: Journal, timeout: Duration) -> Self {
        Self {
            journal,
            timeout,
            pending: Mutex::default(),
            allowed: Mutex::default(),
            recovered: Mutex::default(),
        }
    }

    /// The tools allowed for the rest of the session.
    pub fn allowed(&self, session: SessionId) -> Vec<String> {
        lock(&self.allowed)
            .get(&session)
            .map(|tools| tools.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets the tools allowed for the rest of the session (read back from
    /// its transcript when a run starts).
    pub fn set_allowed(&self, session: SessionId, tools: HashSet<String>) {
        lock(&self.allowed).insert(session, tools);
    }

    /// Forgets the tools allowed in `session` (its run ended; the next
    /// reads them back), so that what sessions allowed is not kept for
    /// every session the server ever ran.
    pub fn forget_allowed(&self, session: SessionId) {
        lock(&self.allowed).remove(&session);
    }

    /// Asks the session's viewers whether a tool may run; waits for the
    /// answer or the timeout.
    pub async fn ask(
        &self,
        session: SessionId,
        tool_use_id: &str,
        tool: &str,
        input: &serde_json::Value,
        cancel: &CancellationToken,
    ) -> Result<Verdict, RunError> {
        if lock(&self.allowed)
            .get(&session)
            .is_some_and(|t| t.contains(tool))
        {
            return Ok((true, None));
        }
        let request_id = format!("perm_{}", uuid::Uuid::now_v7().simple());
        // Listening before the request is visible: a quick viewer's answer
        // must find it.
        let answer = self.listen(session, &request_id);
        let asked = self
            .journal
            .record(
                session,
                EventKind::PermissionRequest {
                    request_id: request_id.clone(),
                    tool_use_id: tool_use_id.to_owned(),
                    tool: tool.to_owned(),
                    input: input.clone(),
                },
            )
            .await;
        if let Err(e) = asked {
            lock(&self.pending).remove(&request_id);
            return Err(e.into());
        }
        self.await_decision(session, request_id, tool, answer, self.timeout, cancel)
            .await
    }

    /// Listens again for a request stored before a restart (see
    /// [`Permissions::ask_again`]).
    pub fn listen_again(&self, session: SessionId, request_id: &str) {
        let answer = self.listen(session, request_id);
        lock(&self.recovered).insert(request_id.to_owned(), answer);
    }

    /// Waits again for a request stored before a restart, for what is left
    /// of its timeout.
    pub async fn ask_again(
        &self,
        session: SessionId,
        request_id: String,
        asked_at: DateTime<Utc>,
        tool: &str,
        cancel: &CancellationToken,
    ) -> Result<Verdict, RunError> {
        let recovered = lock(&self.recovered).remove(&request_id);
        let answer = recovered.unwrap_or_else(|| self.listen(session, &request_id));
        let waited = (Utc::now() - asked_at).to_std().unwrap_or_default();
        let timeout = self.timeout.saturating_sub(waited);
        self.await_decision(session, request_id, tool, answer, timeout, cancel)
            .await
    }

    /// Closes a request stored before a restart that its resumed run does
    /// not ask again (the session's mode or its tools changed since), no
    /// longer listened for: with the decision someone made since the
    /// restart (its verdict, which stands), else decided `expired`, saying
    /// why (`None`).
    pub async fn withdraw(
        &self,
        session: SessionId,
        request_id: &str,
        tool: &str,
        why: &str,
    ) -> Result<Option<Verdict>, RunError> {
        // Closed first: a decision sent after this fails, one sent before
        // is taken.
        let made = lock(&self.recovered)
            .remove(request_id)
            .and_then(|mut answer| {
                answer.close();
                answer.try_recv().ok()
            });
        lock(&self.pending).remove(request_id);
        let expired = Ruling {
            decision: Decision::Expired,
            reason: Some(why.to_owned()),
            by: None,
        };
        let decided = made.is_some();
        let verdict = self
            .settle(
                session,
                request_id.to_owned(),
                tool,
                made.unwrap_or(expired),
            )
            .await?;
        Ok(decided.then_some(verdict))
    }

    /// Answers a pending permission request; a request is decided once.
    pub fn decide(
        &self,
        session: SessionId,
        request_id: &str,
        decision: Decision,
        reason: Option<String>,
        by: Option<String>,
    ) -> Result<(), AppError> {
        if decision == Decision::Expired {
            return Err(AppError::Invalid(
                "\"expired\" is not a decision a user can make.".into(),
            ));
        }
        let pending = {
            let mut all = lock(&self.pending);
            match all.get(request_id) {
                Some(p) if p.session == session => all.remove(request_id),
                _ => None,
            }
        };
        let not_pending = || {
            AppError::NotFound(format!(
                "Pending permission request {request_id:?} (it may be decided already)"
            ))
        };
        // A run that no longer waits (its timeout struck just now) has
        // dropped the other end: the request is not pending any more.
        pending
            .ok_or_else(not_pending)?
            .answer
            .send(Ruling {
                decision,
                reason,
                by,
            })
            .map_err(|_| not_pending())
    }

    fn listen(&self, session: SessionId, request_id: &str) -> Answer {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(
            request_id.to_owned(),
            Pending {
                session,
                answer: tx,
            },
        );
        rx
    }

    async fn await_decision(
        &self,
        session: SessionId,
        request_id: String,
        tool: &str,
        answer: Answer,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Verdict, RunError> {
        self.journal
            .set_status(session, SessionStatus::AwaitingPermission, None)
            .await?;
        // An answer already sent wins over a Stop at the same moment: its
        // sender was told it was taken.
        let answer = tokio::select! {
            biased;
            a = tokio::time::timeout(timeout, answer) => Some(a),
            () = cancel.cancelled() => None,
        };
        lock(&self.pending).remove(&request_id);
        let ruling = match answer {
            None => return Err(RunError::Stopped),
            Some(Ok(Ok(answer))) => answer,
            Some(_) => Ruling {
                decision: Decision::Expired,
                reason: Some("Nobody decided in time.".to_owned()),
                by: None,
            },
        };
        let verdict = self.settle(session, request_id, tool, ruling).await?;
        self.journal
            .set_status(session, SessionStatus::Running, None)
            .await?;
        Ok(verdict)
    }

    /// Records how a request was decided (a tool allowed for the session
    /// is allowed from now on): whether the tool may run, and why not.
    async fn settle(
        &self,
        session: SessionId,
        request_id: String,
        tool: &str,
        Ruling {
            decision,
            reason,
            by,
        }: Ruling,
    ) -> Result<Verdict, RunError> {
        if decision == Decision::AllowSession {
            lock(&self.allowed)
                .entry(session)
                .or_default()
                .insert(tool.to_owned());
        }
        self.journal
            .record(
                session,
                EventKind::PermissionDecision {
                    request_id,
                    decision,
                    reason: reason.clone(),
                    by,
                },
            )
            .await?;
        Ok((
            matches!(decision, Decision::Allow | Decision::AllowSession),
            reason,
        ))
    }
}
