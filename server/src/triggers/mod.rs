//! Triggers: an agent template's doors for machines (see
//! [`app::triggers`]). Managing them is for whoever may use the template
//! (its owner, an admin); a delivery ([`Paddock::deliver`]) is verified as
//! its sender signs ([`standard_webhooks`], [`github`], [`mailgun`],
//! [`sendgrid`], [`twilio`]), bounded (size, rate), accepted once per id (a
//! repeat is answered as the first was), and becomes a prompt ([`prompt`])
//! in a new session of the template, run as the template's owner, or in
//! the session of its conversation. A refusal changes nothing but the
//! audit log. A [`schedule`] makes its own deliveries, at its times.

pub mod email;
pub mod form;
pub mod github;
pub mod mailgun;
pub mod prompt;
pub mod schedule;
pub mod sendgrid;
pub mod standard_webhooks;
pub mod twilio;

use crate::engine::QUEUED_PROMPTS_MAX;
use crate::paddock::Paddock;
use crate::store::triggers::{forget_deliveries_before, Claim, ConversationClaim, Delivered};
use crate::template_renderers::Failed;
use crate::vault::SecretOf;
use crate::workspace_files::Upload;
use app::accounts::{AuditAction, Caller};
use app::agents::AgentTemplate;
use app::api::Backend;
use app::domain::{
    AppError, EventKind, NewSession, PermissionMode, SessionId, TemplateId, TriggerRef,
};
use app::triggers::{
    check_sender_key, trigger_path, Delivery, Trigger, TriggerDraft, TriggerId, TriggerKind,
    TriggerSecret,
};
use app::workspace_source::WorkspaceSource;
use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use chrono::Utc;
use form::Encoding;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// Largest delivery.
pub const DELIVERY_MAX_BYTES: usize = 1024 * 1024;
/// Largest email, read through: its attachments are kept only up to
/// [`email::ATTACHMENTS_MAX_BYTES`].
pub const EMAIL_MAX_BYTES: u64 = 40 * 1024 * 1024;
/// Longest a previous secret may stay accepted after a rotation.
pub const OVERLAP_MAX_SECS: u64 = 7 * 24 * 3600;
/// Triggers one agent may have.
const TRIGGERS_PER_AGENT: usize = 20;
/// How long a repeat waits for the first delivery of its id (or of its
/// conversation) to be handled, well within a sender's own time limit.
const REPEAT_WAIT: Duration = Duration::from_secs(3);
/// What a sender is told to wait when another handling holds what its
/// delivery needs, in seconds.
const BUSY_RETRY_AFTER_SECS: u64 = 5;
/// What a sender is told to wait when the server cannot handle a delivery
/// now, in seconds.
const RETRY_AFTER_SECS: u64 = 30;
/// A delivery (or a conversation's first session) still being handled
/// after this was abandoned (its server went away): the next one handles
/// it.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::minutes(2);
/// How often a handling renews its delivery's claim, well within
/// [`ABANDONED_AFTER`]: an upload may wait for a clone for
/// `PADDOCK_GIT_TIMEOUT_SECS`.
const CLAIM_RENEWED_EVERY: Duration = Duration::from_secs(30);

/// A delivery whose signature holds: the sender's id for it, and how it
/// was verified, in words, for the transcript.
#[derive(Debug, PartialEq)]
pub struct Verified {
    pub id: String,
    pub how: String,
}

/// Checks the id a sender gives a delivery (`what` names it), by which a
/// repeat is told: 1 to `max` bytes, no control character (PostgreSQL's
/// text takes no NUL, and a log line no line break).
fn check_delivery_id(id: &str, what: &str, max: usize) -> Result<(), String> {
    if id.is_empty() || id.len() > max || id.chars().any(char::is_control) {
        return Err(format!(
            "{what} is 1 to {max} bytes, without control characters"
        ));
    }
    Ok(())
}

/// What a delivery's sender says beyond its payload, as the prompt
/// templates see it.
pub enum Said {
    Nothing,
    /// From GitHub: what mentions the trigger's handle (`github`).
    Github(github::Mention),
    /// An email (`email`).
    Email(email::Email),
    /// A text message (`sms`).
    Sms(twilio::Sms),
    /// A schedule's run (`schedule`).
    Schedule(schedule::Run),
}

/// A delivery verified and read: what its templates see, and the files
/// it brings into the workspace.
struct Opened {
    verified: Verified,
    payload: serde_json::Value,
    said: Said,
    files: Vec<Upload>,
    /// An email's room in what emails keep at once, until it is handled.
    kept: Option<OwnedSemaphorePermit>,
}

/// A delivery as it arrived at `POST /hooks/{id}`.
pub struct Arrival {
    pub headers: HeaderMap,
    /// The path (and query) it was posted to.
    pub target: String,
    pub body: Body,
    pub from: Option<IpAddr>,
}

/// How a delivery was answered: its status and JSON body.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    /// Seconds to wait before sending again (a 429).
    pub retry_after: Option<u64>,
    /// Answered as Twilio expects of a webhook that sends no reply: an
    /// empty TwiML document.
    pub twiml: bool,
}

impl Answer {
    pub fn refused(error: AppError) -> Self {
        Self {
            status: error.status(),
            body: serde_json::json!({ "error": { "type": error.kind(), "message": error.to_string() } }),
            retry_after: None,
            twiml: false,
        }
    }

    /// Something else holds what it needs: a 409 to send again shortly.
    fn busy(what: &str) -> Self {
        Self {
            retry_after: Some(BUSY_RETRY_AFTER_SECS),
            ..Self::refused(AppError::Conflict(format!(
                "{what} is being handled now: send this one again in a few seconds."
            )))
        }
    }

    /// The server could not handle it now: a 503 to send again later.
    fn unavailable() -> Self {
        Self {
            retry_after: Some(RETRY_AFTER_SECS),
            ..Self::refused(AppError::Unavailable(
                "The delivery could not be handled now: send it again later.".into(),
            ))
        }
    }

    /// Not for this trigger (a GitHub event that does not call on its
    /// handle): acknowledged, and the same each time it comes.
    fn ignored(delivery: &str, why: &str) -> Self {
        Self {
            status: 202,
            body: serde_json::json!({ "delivery": delivery, "session": null, "outcome": format!("ignored: {why}") }),
            retry_after: None,
            twiml: false,
        }
    }

    fn too_many(wait: u64) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::refused(AppError::RateLimited(format!(
                "Too many deliveries to this trigger: try again in {wait} s."
            )))
        }
    }

    /// The answer as the trigger's sender expects it: Twilio, TwiML.
    fn for_sender(self, kind: TriggerKind) -> Self {
        Self {
            twiml: kind == TriggerKind::Twilio && (200..300).contains(&self.status),
            ..self
        }
    }

    fn of(delivery: &Delivery) -> Self {
        Self {
            status: delivery.status,
            body: serde_json::json!({ "delivery": delivery.id, "session": delivery.session, "outcome": delivery.outcome }),
            retry_after: None,
            twiml: false,
        }
    }
}

impl Paddock {
    /// The trigger, if the caller may use its template.
    async fn trigger_for(&self, caller: &Caller, id: TriggerId) -> Result<Trigger, AppError> {
        let not_found = || AppError::NotFound(format!("Trigger {id}"));
        let (trigger, _) = self.store.get_trigger(id).await?.ok_or_else(not_found)?;
        self.templates
            .get(caller, trigger.template)
            .await
            .map_err(|_| not_found())?;
        Ok(trigger)
    }

    /// The template, if the caller is its owner, signed in: only they set
    /// up its triggers and notifications (which run as them, with their
    /// saved secrets, or carry their sessions' outcomes elsewhere), and not
    /// with an API token: a trigger's secret is new access, which only a
    /// signed-in person hands out. What runs more (a new trigger, a new
    /// secret, one resumed) needs an owner who may run sessions: a viewer
    /// only pauses and removes.
    pub(crate) async fn as_template_owner(
        &self,
        caller: &Caller,
        template: TemplateId,
    ) -> Result<AgentTemplate, AppError> {
        let t = self.templates.get(caller, template).await?;
        if t.owner != caller.user {
            return Err(AppError::Forbidden(
                "Only the agent's owner sets up its triggers and notifications.".into(),
            ));
        }
        caller.require_signed_in()?;
        Ok(t)
    }

    async fn audit_trigger(&self, caller: &Caller, id: TriggerId, what: &str) {
        self.auth
            .audit(
                &caller.label(),
                AuditAction::TriggerChanged,
                &id.to_string(),
                what,
                caller.address,
            )
            .await;
    }

    pub async fn triggers_of(
        &self,
        caller: &Caller,
        template: TemplateId,
    ) -> Result<Vec<Trigger>, AppError> {
        self.templates.get(caller, template).await?;
        let triggers = self.store.list_triggers(template).await?;
        Ok(triggers.into_iter().map(Self::with_next_runs).collect())
    }

    pub async fn trigger(&self, caller: &Caller, id: TriggerId) -> Result<Trigger, AppError> {
        Ok(Self::with_next_runs(self.trigger_for(caller, id).await?))
    }

    /// A new trigger on a template the caller may use, with its secret
    /// (shown this once).
    pub async fn add_trigger(
        &self,
        caller: &Caller,
        template: TemplateId,
        draft: TriggerDraft,
        sender_key: Option<String>,
    ) -> Result<TriggerSecret, AppError> {
        let t = self.as_template_owner(caller, template).await?;
        caller.may_create_sessions()?;
        if self.store.list_triggers(template).await?.len() >= TRIGGERS_PER_AGENT {
            return Err(AppError::Conflict(format!(
                "An agent has at most {TRIGGERS_PER_AGENT} triggers: delete one first."
            )));
        }
        let draft = checked(draft)?;
        keeps_to(&t, draft.permission_mode).map_err(AppError::Invalid)?;
        has_time_left(&draft)?;
        if draft.kind == TriggerKind::Twilio && self.config.public_url.is_none() {
            return Err(AppError::Invalid(
                "Twilio signs the URL it posts to: set this server's public URL \
                 (PADDOCK_PUBLIC_URL) first."
                    .into(),
            ));
        }
        let id = uuid::Uuid::now_v7();
        let (secret, shown) = secret_of(draft.kind, sender_key)?;
        let sealed = self.vault.seal_secret(SecretOf::Trigger(id), &secret)?;
        let next_run = Self::next_run(&draft, None)?;
        let trigger = self
            .store
            .create_trigger(id, template, &draft, &sealed, &caller.label(), next_run)
            .await?;
        self.audit_trigger(caller, id, &format!("created {:?}", trigger.draft.name))
            .await;
        Ok(TriggerSecret {
            path: trigger_path(id),
            trigger: Self::with_next_runs(trigger),
            secret: shown,
        })
    }

    pub async fn change_trigger(
        &self,
        caller: &Caller,
        id: TriggerId,
        draft: TriggerDraft,
    ) -> Result<Trigger, AppError> {
        let before = self.trigger_for(caller, id).await?;
        let t = self.as_template_owner(caller, before.template).await?;
        let only_pausing = draft
            == TriggerDraft {
                paused: true,
                ..before.draft.clone()
            };
        if !only_pausing {
            caller.may_create_sessions()?;
        }
        // Paused or resumed as it is: not checked again, so that one saved
        // before a rule it breaks (a name) can still be paused.
        let toggled = draft
            == TriggerDraft {
                paused: draft.paused,
                ..before.draft.clone()
            };
        let draft = if toggled { draft } else { checked(draft)? };
        // Pausing or renaming one the agent now holds to less is allowed.
        if draft.permission_mode != before.draft.permission_mode {
            keeps_to(&t, draft.permission_mode).map_err(AppError::Invalid)?;
        }
        if draft.schedule != before.draft.schedule {
            has_time_left(&draft)?;
        }
        if draft.kind != before.draft.kind {
            return Err(AppError::Invalid(
                "A trigger's kind is for good: make another trigger for another sender.".into(),
            ));
        }
        let next_run = Self::next_run(&draft, Some(&before.draft))?;
        let trigger = self
            .store
            .update_trigger(id, &draft, next_run)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("Trigger {id}")))?;
        let paused = match (before.draft.paused, draft.paused) {
            (false, true) => "; paused",
            (true, false) => "; resumed",
            _ => "",
        };
        self.audit_trigger(caller, id, &format!("changed{paused}"))
            .await;
        Ok(Self::with_next_runs(trigger))
    }

    /// A new secret for the trigger (shown this once), or the sender's new
    /// key; the current one is still accepted for `overlap`.
    pub async fn rotate_trigger(
        &self,
        caller: &Caller,
        id: TriggerId,
        overlap: Duration,
        sender_key: Option<String>,
    ) -> Result<TriggerSecret, AppError> {
        let before = self.trigger_for(caller, id).await?;
        self.as_template_owner(caller, before.template).await?;
        caller.may_create_sessions()?;
        if !before.draft.kind.takes_deliveries() {
            return Err(AppError::Invalid(
                "A schedule has no secret: nothing is sent to it.".into(),
            ));
        }
        if overlap.as_secs() > OVERLAP_MAX_SECS {
            return Err(AppError::Invalid(format!(
                "The old secret may stay accepted for at most {} days.",
                OVERLAP_MAX_SECS / 86_400
            )));
        }
        let (secret, shown) = secret_of(before.draft.kind, sender_key)?;
        let sealed = self.vault.seal_secret(SecretOf::Trigger(id), &secret)?;
        let until = Utc::now()
            + chrono::Duration::from_std(overlap)
                .map_err(|_| AppError::Invalid("overlap".into()))?;
        let trigger = self
            .store
            .rotate_trigger_secret(id, &sealed, until)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("Trigger {id}")))?;
        self.audit_trigger(
            caller,
            id,
            &format!("secret rotated; the old one accepted until {until}"),
        )
        .await;
        Ok(TriggerSecret {
            path: trigger_path(id),
            trigger,
            secret: shown,
        })
    }

    pub async fn remove_trigger(&self, caller: &Caller, id: TriggerId) -> Result<(), AppError> {
        self.trigger_for(caller, id).await?;
        if !self.store.delete_trigger(id).await? {
            return Err(AppError::NotFound(format!("Trigger {id}")));
        }
        self.audit_trigger(caller, id, "deleted").await;
        Ok(())
    }

    pub async fn trigger_log(
        &self,
        caller: &Caller,
        id: TriggerId,
    ) -> Result<Vec<Delivery>, AppError> {
        self.trigger_for(caller, id).await?;
        Ok(self.store.deliveries(id).await?)
    }

    /// A delivery to a trigger, from anyone: its status and body. Never a
    /// 500: what the server could not do now, the sender may send again.
    pub async fn deliver(&self, id: TriggerId, arrival: Arrival) -> Answer {
        let answer = self.answer_delivery(id, arrival).await;
        if answer.status < 500 {
            return answer;
        }
        Answer::unavailable()
    }

    /// Checked in order: the trigger (one that takes deliveries); the
    /// signature, with the body's size, content type and form (a
    /// stranger's flood is answered 429 past the trigger's rate, as are
    /// refusals of signed bodies); a repeat of one answered gets that
    /// answer; from GitHub, whether it calls on the handle (else
    /// acknowledged at once); the rate; paused. Then it is accepted once
    /// per id.
    async fn answer_delivery(&self, id: TriggerId, arrival: Arrival) -> Answer {
        let (trigger, secrets) = match self.store.get_trigger(id).await {
            Ok(Some(found)) => found,
            Ok(None) => return Answer::refused(AppError::NotFound(format!("Trigger {id}"))),
            Err(e) => return Answer::refused(e.into()),
        };
        if !trigger.draft.kind.takes_deliveries() {
            return Answer::refused(AppError::NotFound(format!(
                "Trigger {id} takes no deliveries: it runs on its schedule"
            )));
        }
        let Arrival {
            headers,
            target,
            body,
            from,
        } = arrival;
        let audited = |error: AppError| async move {
            self.auth
                .audit(
                    "(sender)",
                    AuditAction::DeliveryRefused,
                    &id.to_string(),
                    &error.to_string(),
                    from,
                )
                .await;
            Answer::refused(error)
        };
        // Refused before it counts as a delivery: counted apart, audited up
        // to the same rate.
        let refuse = |error: AppError| async move {
            match self.deliveries.admit_refusal(id) {
                Ok(()) => audited(error).await,
                Err(wait) => Answer::too_many(wait),
            }
        };
        let kind = trigger.draft.kind;
        let secrets: Vec<String> = std::iter::once(&secrets.secret)
            .chain(secrets.previous.as_ref())
            .filter_map(|sealed| {
                let opened = self.vault.open_secret(SecretOf::Trigger(id), sealed);
                if opened.is_none() {
                    tracing::error!(trigger = %id, "a secret of this trigger does not open under the master key");
                }
                opened
            })
            .collect();
        // (A master key rotated under this server: the sender's genuine
        // deliveries are not refused as forged, and a sender that tries
        // again is answered once this server restarts.)
        if secrets.is_empty() {
            return Answer::unavailable();
        }
        let opened = match self
            .open_delivery(kind, &headers, &target, body, &secrets)
            .await
        {
            Ok(opened) => opened,
            // Not read now (emails are read a few at a time): no refusal.
            Err(AppError::Unavailable(_)) => return Answer::unavailable(),
            Err(e) => return refuse(e).await,
        };
        match self.store.delivery(id, &opened.verified.id).await {
            Ok(Some(first)) if first.status != 0 => return Answer::of(&first).for_sender(kind),
            Ok(_) => {}
            Err(e) => return Answer::refused(e.into()),
        }
        // A GitHub event that does not call on the handle is acknowledged
        // and left alone at once: nothing kept, nothing counted (a busy
        // organisation's hook sends many).
        let opened = match kind {
            TriggerKind::Github => {
                let Some(event) = headers.get("x-github-event").and_then(|v| v.to_str().ok())
                else {
                    return refuse(AppError::Invalid(
                        "No X-GitHub-Event header: GitHub names every delivery's event.".into(),
                    ))
                    .await;
                };
                let handle = trigger.draft.handle.as_deref().unwrap_or_default();
                let own = match self.store.get_template(trigger.template).await {
                    Ok(t) => t.and_then(|t| match t.draft.session.source {
                        Some(WorkspaceSource::Git { url, .. }) => github::repository_of(&url),
                        _ => None,
                    }),
                    Err(e) => return Answer::refused(e.into()),
                };
                match github::mention(event, &opened.payload, handle, own.as_deref()) {
                    Ok(m) => Opened {
                        said: Said::Github(m),
                        ..opened
                    },
                    Err(why) => return Answer::ignored(&opened.verified.id, &why),
                }
            }
            _ => opened,
        };
        if let Err(wait) = self.deliveries.admit(id) {
            return Answer::too_many(wait);
        }
        if trigger.draft.paused {
            return audited(AppError::Conflict(
                "This trigger is paused: its owner turned it off for now.".into(),
            ))
            .await;
        }
        // Handled to its end even if the sender goes away meanwhile: what it
        // claims (its id, its conversation) is never left half done.
        let paddock = self.clone();
        let handling = tokio::spawn(async move { paddock.accept(&trigger, opened, from).await });
        match handling.await {
            Ok(Ok(answer)) => answer.for_sender(kind),
            Ok(Err(e)) => Answer::refused(e),
            Err(e) => {
                tracing::error!(trigger = %id, "a delivery's handling failed: {e}");
                Answer::refused(AppError::Internal)
            }
        }
    }

    /// Verifies a delivery as its kind's sender signs it, and reads it:
    /// refused with 401 (the signature), 415 (the content type), 413 (its
    /// size) or 400 (a body that is not what it says). Nothing of an
    /// email's body is read before its URL's password holds.
    async fn open_delivery(
        &self,
        kind: TriggerKind,
        headers: &HeaderMap,
        target: &str,
        body: Body,
        secrets: &[String],
    ) -> Result<Opened, AppError> {
        let content_type = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let now = Utc::now().timestamp();
        match kind {
            TriggerKind::Webhook | TriggerKind::Github => {
                let body = read_body(body).await?;
                let verified = match kind {
                    TriggerKind::Webhook => standard_webhooks::verify(headers, &body, secrets, now),
                    _ => github::verify(headers, &body, secrets),
                }
                .map_err(unsigned)?;
                if form::media_type(content_type) != "application/json" {
                    return Err(AppError::UnsupportedMedia(
                        "A delivery is JSON: Content-Type: application/json.".into(),
                    ));
                }
                let payload = serde_json::from_slice(&body)
                    .map_err(|e| AppError::Invalid(format!("The body is not JSON: {e}.")))?;
                Ok(Opened {
                    verified,
                    payload,
                    said: Said::Nothing,
                    files: Vec::new(),
                    kept: None,
                })
            }
            TriggerKind::Twilio => {
                let limits = form::Limits {
                    body: DELIVERY_MAX_BYTES as u64,
                    text: DELIVERY_MAX_BYTES,
                    files: 0,
                    file_bytes: 0,
                };
                let form = form::read(content_type, body, &[Encoding::UrlEncoded], &limits).await?;
                let Some(public) = &self.config.public_url else {
                    return Err(unsigned(
                        "this server's public URL (PADDOCK_PUBLIC_URL), which Twilio signs, is \
                         not set"
                            .into(),
                    ));
                };
                let mut urls = vec![
                    format!("{public}{target}"),
                    format!("{}{target}", public.with_port()),
                ];
                urls.dedup();
                let verified = twilio::verify(headers, &urls, &form, secrets).map_err(unsigned)?;
                Ok(Opened {
                    verified,
                    payload: form.payload(),
                    said: Said::Sms(twilio::sms(&form)),
                    files: Vec::new(),
                    kept: None,
                })
            }
            TriggerKind::Mailgun | TriggerKind::Sendgrid => {
                let passwords: Vec<&str> = match kind {
                    TriggerKind::Mailgun => secrets.iter().map(|s| mailgun::parts(s).0).collect(),
                    _ => secrets.iter().map(String::as_str).collect(),
                };
                email::check_url_password(headers, &passwords).map_err(unsigned)?;
                let Some(_turn) = self.deliveries.email_read().await else {
                    return Err(AppError::Unavailable(
                        "Too many emails are being read now: send this one again later.".into(),
                    ));
                };
                let limits = form::Limits {
                    body: EMAIL_MAX_BYTES,
                    text: email::TEXT_MAX_BYTES,
                    files: email::ATTACHMENTS_MAX,
                    file_bytes: email::ATTACHMENTS_MAX_BYTES,
                };
                let (verified, form, message) = match kind {
                    TriggerKind::Mailgun => {
                        let encodings = [Encoding::Multipart, Encoding::UrlEncoded];
                        let form = form::read(content_type, body, &encodings, &limits).await?;
                        let verified = mailgun::verify(&form, secrets, now).map_err(unsigned)?;
                        let message = mailgun::message(&form);
                        (verified, form, message)
                    }
                    _ => {
                        let form =
                            form::read(content_type, body, &[Encoding::Multipart], &limits).await?;
                        let verified = sendgrid::verify(&form).map_err(AppError::Invalid)?;
                        let message = sendgrid::message(&form);
                        (verified, form, message)
                    }
                };
                let Some(kept) = self.deliveries.email_keep(form.kept_bytes()).await else {
                    return Err(AppError::Unavailable(
                        "Too many emails are being handled now: send this one again later.".into(),
                    ));
                };
                let payload = form.payload();
                let (attachments, files) = email::attachments(form.files, &verified.id);
                Ok(Opened {
                    verified,
                    payload,
                    said: Said::Email(message.email(attachments)),
                    files,
                    kept: Some(kept),
                })
            }
            TriggerKind::Schedule => {
                Err(AppError::NotFound("A schedule takes no deliveries.".into()))
            }
        }
    }

    /// A verified delivery, handled once per id: a prompt made from what
    /// the templates see of it (`seen`).
    async fn accept(
        &self,
        trigger: &Trigger,
        opened: Opened,
        from: Option<IpAddr>,
    ) -> Result<Answer, AppError> {
        let Opened {
            verified,
            payload,
            said,
            files,
            kept: _kept,
        } = opened;
        let verified = &verified;
        let seen = &prompt::context(&payload, &verified.id, &said);
        let claim = uuid::Uuid::now_v7().to_string();
        let waited = tokio::time::Instant::now();
        let (made, prompted) = loop {
            let abandoned_before = Utc::now() - ABANDONED_AFTER;
            match self
                .store
                .claim_delivery(trigger.id, &verified.id, &claim, abandoned_before)
                .await?
            {
                Claim::New { session, prompted } => break (session, prompted),
                Claim::Seen(first) if first.status != 0 => return Ok(Answer::of(&first)),
                Claim::Seen(_) if waited.elapsed() < REPEAT_WAIT => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Claim::Seen(_) => return Ok(Answer::busy("A delivery with this id")),
            }
        };
        let handled = match (made, prompted) {
            // Its prompt was queued before its handling was cut short: it
            // is only answered now.
            (Some(session), true) => Ok((session, format!("handled in session {session}"))),
            _ => {
                let handling = self.handle(trigger, verified, seen, files, &claim, made);
                self.while_claimed(trigger.id, &verified.id, &claim, handling)
                    .await
            }
        };
        let (status, outcome, session) = match handled {
            Ok((session, outcome)) => (202, outcome, Some(session)),
            // What the owner's templates, account or agent make of it:
            // answered the same way each time it comes.
            Err(Handled::Refused(why)) => {
                self.auth
                    .audit(
                        "(sender)",
                        AuditAction::DeliveryRefused,
                        &trigger.id.to_string(),
                        &why,
                        from,
                    )
                    .await;
                (422, why, None)
            }
            Err(Handled::Busy(what)) => {
                let _ = self
                    .store
                    .abandon_delivery(trigger.id, &verified.id, &claim)
                    .await;
                return Ok(Answer::busy(what));
            }
            Err(Handled::Failed(e)) => {
                // Not handled: the next one of its id handles it.
                tracing::warn!(trigger = %trigger.id, delivery = %verified.id, "a delivery could not be handled: {e}");
                let _ = self
                    .store
                    .abandon_delivery(trigger.id, &verified.id, &claim)
                    .await;
                return Ok(Answer::unavailable());
            }
        };
        let delivery = Delivery {
            trigger: trigger.id,
            id: verified.id.clone(),
            received_at: Utc::now(),
            status,
            outcome,
            session,
        };
        let forget_before = forget_deliveries_before(trigger.draft.kind);
        if !self
            .store
            .finish_delivery(&delivery, &claim, forget_before)
            .await?
        {
            // Taken over meanwhile: the one that holds it now answers it.
            return Ok(Answer::busy("A delivery with this id"));
        }
        Ok(Answer::of(&delivery))
    }

    /// Makes the prompt and queues it: in the session a handling of this
    /// delivery made before, in the conversation's session, or in a new one
    /// from the template as its owner.
    async fn handle(
        &self,
        trigger: &Trigger,
        verified: &Verified,
        seen: &serde_json::Value,
        files: Vec<Upload>,
        claim: &str,
        made: Option<SessionId>,
    ) -> Result<(SessionId, String), Handled> {
        let (text, key) = {
            // A GitHub trigger's conversation is its issue unless it says,
            // an email trigger's the thread, a text message trigger's the
            // sender.
            let conversation = trigger.draft.conversation.clone().or(trigger
                .draft
                .kind
                .default_conversation()
                .map(str::to_owned));
            let prompt = trigger.draft.prompt.clone();
            self.template_renderers
                .render(prompt, conversation, seen.clone())
                .await
                .map_err(|failed| match failed {
                    Failed::Refused(why) => Handled::Refused(why),
                    Failed::Unavailable(why) => {
                        tracing::warn!("cannot render a trigger's templates: {why}");
                        Handled::Failed(AppError::Unavailable(
                            "The trigger's templates cannot be made now; try again.".into(),
                        ))
                    }
                })?
        };
        if key
            .as_ref()
            .is_some_and(|k| k.chars().any(char::is_control))
        {
            return Err(Handled::Refused(
                "The conversation key this delivery makes holds control characters.".into(),
            ));
        }
        // What the agent holds its triggered sessions to now: the trigger's
        // mode for a new session, the session's own for one continued.
        let agent = self
            .store
            .get_template(trigger.template)
            .await
            .map_err(fail)?
            .ok_or_else(|| Handled::Refused("The agent is gone.".into()))?;
        keeps_to(&agent, trigger.draft.permission_mode).map_err(Handled::Refused)?;
        // Every delivery runs as the agent's owner, a conversation's next
        // message too: one disabled or made a viewer since runs nothing.
        let owner = self.template_owner(&agent).await?;
        let remade = match made {
            Some(session) => self.store.get_session(session).await.map_err(fail)?,
            None => None,
        };
        let (session, reached) = match (remade, &key) {
            (Some(session), _) => (session.id, Reached::Again),
            (None, Some(key)) => {
                self.conversation_session(trigger, &owner, key, &text)
                    .await?
            }
            (None, None) => (
                self.triggered_session(trigger, &owner, &text).await?,
                Reached::Started,
            ),
        };
        let outcome = match reached {
            Reached::Again => format!("handled in session {session}"),
            Reached::Continued => format!("continued session {session}"),
            Reached::Started => format!("started session {session}"),
        };
        if let Some(s) = self.store.get_session(session).await.map_err(fail)? {
            keeps_to(&agent, s.permission_mode).map_err(Handled::Refused)?;
        }
        let still_ours = |held: bool| match held {
            true => Ok(()),
            false => Err(Handled::Busy("A delivery with this id")),
        };
        still_ours(
            self.store
                .note_delivery_session(trigger.id, &verified.id, claim, session)
                .await
                .map_err(fail)?,
        )?;
        // Refused before anything is written, so that the sender's next try
        // adds no second record of it.
        if self.store.queued_prompts(session).await.map_err(fail)? >= QUEUED_PROMPTS_MAX {
            return Err(Handled::Failed(AppError::Unavailable(format!(
                "Session {session} has {QUEUED_PROMPTS_MAX} prompts waiting already."
            ))));
        }
        if !files.is_empty() {
            match self.upload_files(&owner, session, files).await {
                Ok(_) => {}
                // The server could not now: the sender sends it again.
                Err(e @ (AppError::Unavailable(_) | AppError::Internal)) => {
                    return Err(Handled::Failed(e))
                }
                // What the workspace holds refuses them (full, a file where
                // the inbox goes): the same each time. A session made for
                // this delivery goes with it, as a refused delivery leaves
                // nothing behind.
                Err(e) => {
                    // (One an earlier handling of it made, and left with no
                    // prompt, is this delivery's too; one a later delivery
                    // of its conversation prompted meanwhile, while this one
                    // waited for the workspace, is that delivery's.)
                    let made_for_it = match reached {
                        Reached::Started | Reached::Again => {
                            matches!(self.store.prompted_after(session, 0).await, Ok(false))
                        }
                        Reached::Continued => false,
                    };
                    if made_for_it {
                        if let Err(left) = self.delete_session(&owner, session).await {
                            tracing::warn!(%session, "the session of a refused delivery was kept: {left}");
                        }
                    }
                    return Err(Handled::Refused(format!(
                        "The attachments cannot be stored: {e}"
                    )));
                }
            }
        }
        let delivered = Delivered {
            trigger: trigger.id,
            id: &verified.id,
            claim,
            record: EventKind::Delivery {
                trigger: trigger.draft.name.clone(),
                id: verified.id.clone(),
                verified: verified.how.clone(),
            },
        };
        still_ours(
            self.runner
                .send_delivered_prompt(session, delivered, text)
                .await
                .map_err(Handled::Failed)?,
        )?;
        Ok((session, outcome))
    }

    /// Runs `handling` while renewing its delivery's claim, so that a long
    /// one is never taken over by the sender's repeat (and prompted twice).
    async fn while_claimed<T>(
        &self,
        trigger: TriggerId,
        id: &str,
        claim: &str,
        handling: impl std::future::Future<Output = T>,
    ) -> T {
        let renewing = async {
            let start = tokio::time::Instant::now() + CLAIM_RENEWED_EVERY;
            let mut every = tokio::time::interval_at(start, CLAIM_RENEWED_EVERY);
            loop {
                every.tick().await;
                match self.store.renew_delivery(trigger, id, claim).await {
                    Ok(true) => {}
                    // Taken over: the handling finds it out where it notes
                    // what it did.
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(%trigger, delivery = id, "cannot renew a delivery's claim: {e}")
                    }
                }
            }
        };
        tokio::pin!(handling);
        tokio::select! {
            done = &mut handling => done,
            () = renewing => handling.await,
        }
    }

    /// The session of a conversation: the one its key names, or a new one
    /// (made once however many of its deliveries arrive at once).
    async fn conversation_session(
        &self,
        trigger: &Trigger,
        owner: &Caller,
        key: &str,
        text: &str,
    ) -> Result<(SessionId, Reached), Handled> {
        let claim = uuid::Uuid::now_v7().to_string();
        let waited = tokio::time::Instant::now();
        loop {
            let abandoned_before = Utc::now() - ABANDONED_AFTER;
            let claimed = self
                .store
                .claim_conversation(trigger.id, key, &claim, abandoned_before)
                .await
                .map_err(fail)?;
            let ours = match claimed {
                ConversationClaim::New => true,
                ConversationClaim::Session(id) => {
                    if self.store.get_session(id).await.map_err(fail)?.is_some() {
                        return Ok((id, Reached::Continued));
                    }
                    // Its session was deleted: a new one, made once.
                    self.store
                        .retake_conversation(trigger.id, key, &claim, id)
                        .await
                        .map_err(fail)?
                }
                ConversationClaim::Pending => false,
            };
            if !ours {
                if waited.elapsed() >= REPEAT_WAIT {
                    return Err(Handled::Busy("Another delivery of this conversation"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let made = match self.triggered_session(trigger, owner, text).await {
                Ok(id) => self
                    .store
                    .set_conversation(trigger.id, key, &claim, id)
                    .await
                    .map_err(fail)
                    .and_then(|held| match held {
                        true => Ok(id),
                        // Taken over meanwhile: that one's session is the
                        // conversation's.
                        false => Err(Handled::Busy("Another delivery of this conversation")),
                    }),
                Err(e) => Err(e),
            };
            if made.is_err() {
                let _ = self
                    .store
                    .release_conversation(trigger.id, key, &claim)
                    .await;
            }
            return made.map(|id| (id, Reached::Started));
        }
    }

    /// A new session from the trigger's template, as the template's owner,
    /// with the trigger's permission mode; named after the trigger and the
    /// prompt's first line.
    async fn triggered_session(
        &self,
        trigger: &Trigger,
        owner: &Caller,
        text: &str,
    ) -> Result<SessionId, Handled> {
        let first_line = prompt::as_made(text).lines().next().unwrap_or_default();
        // Nothing that is not shown, or turns the text around in the
        // sessions list (a trigger saved before names refused such had
        // one in its own name too).
        let name: String = format!("{}: {}", trigger.draft.name, first_line.trim())
            .chars()
            .filter(|c| !app::text::is_hidden_format(*c))
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(100)
            .collect();
        let new = NewSession {
            name: name.trim().to_owned(),
            template: Some(trigger.template),
            permission_mode: Some(trigger.draft.permission_mode),
            ..Default::default()
        };
        let origin = TriggerRef {
            id: trigger.id,
            name: trigger.draft.name.clone(),
        };
        match self.start_session(owner, new, Some(origin)).await {
            Ok(session) => Ok(session.id),
            // What the agent's settings or its owner's account refuse: the
            // same each time.
            Err(
                e @ (AppError::Invalid(_)
                | AppError::Forbidden(_)
                | AppError::NotFound(_)
                | AppError::Conflict(_)),
            ) => Err(Handled::Refused(format!(
                "The agent cannot start a session: {e}"
            ))),
            Err(e) => Err(Handled::Failed(e)),
        }
    }

    /// Who an agent's triggered sessions run as: its owner (the local
    /// operator for one made with sign-in off, while it is off).
    async fn template_owner(&self, agent: &AgentTemplate) -> Result<Caller, Handled> {
        match agent.owner {
            // Made with sign-in off: the local operator's, while it is off.
            None if !self.auth.enabled() => Ok(Caller::local_operator()),
            None => Err(Handled::Refused(
                "The agent has no owner (it was made with sign-in off) to run sessions as.".into(),
            )),
            Some(owner) => match self.auth.runner(owner).await.map_err(fail)? {
                Some(user) => Ok(user.caller()),
                None => Err(Handled::Refused(
                    "The agent's owner cannot run sessions any more.".into(),
                )),
            },
        }
    }
}

/// How a delivery came to its session.
enum Reached {
    /// An earlier handling of this delivery made it.
    Again,
    /// The delivery's conversation had it.
    Continued,
    /// Made for this delivery.
    Started,
}

/// Why a verified delivery did not become a prompt.
enum Handled {
    /// What the owner's templates or account make of it: the same each
    /// time it comes.
    Refused(String),
    /// Another handling holds what it needs (its id, its conversation):
    /// it may come again in a moment.
    Busy(&'static str),
    /// The server could not: it may come again.
    Failed(AppError),
}

fn fail(e: crate::store::StoreError) -> Handled {
    Handled::Failed(e.into())
}

/// Why a delivery's signature does not hold, as the sender is told.
fn unsigned(why: String) -> AppError {
    AppError::Unauthenticated(format!("Not accepted: {why}."))
}

/// A delivery's body, within [`DELIVERY_MAX_BYTES`].
async fn read_body(body: Body) -> Result<Bytes, AppError> {
    match Limited::new(body, DELIVERY_MAX_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(AppError::TooLarge(
            format!("A delivery is at most {} KiB.", DELIVERY_MAX_BYTES / 1024),
        )),
        Err(e) => Err(AppError::Invalid(format!(
            "The body could not be read: {e}."
        ))),
    }
}

/// A trigger's secret, and what is shown of it once: one made for the
/// sender, or the key the sender signs with, given by the owner (not
/// shown back).
fn secret_of(
    kind: TriggerKind,
    sender_key: Option<String>,
) -> Result<(String, Option<String>), AppError> {
    check_sender_key(kind, sender_key.as_deref())?;
    let key = sender_key.map(|k| k.trim().to_owned()).unwrap_or_default();
    let made = match kind {
        TriggerKind::Webhook => standard_webhooks::new_secret(),
        TriggerKind::Github => github::new_secret(),
        TriggerKind::Sendgrid => email::new_password(),
        // The URL's password, shown, and the signing key given (checked
        // above), kept with it.
        TriggerKind::Mailgun => {
            let password = email::new_password();
            return Ok((mailgun::secret(&password, &key), Some(password)));
        }
        // The sender's own key.
        TriggerKind::Twilio => return Ok((key, None)),
        // Nothing is sent to a schedule: a secret no one is shown, so
        // that every trigger has one sealed.
        TriggerKind::Schedule => return Ok((standard_webhooks::new_secret(), None)),
    };
    Ok((made.clone(), Some(made)))
}

/// Refuses a permission mode laxer than the one the agent holds its
/// triggered sessions to, saying why.
fn keeps_to(agent: &AgentTemplate, mode: PermissionMode) -> Result<(), String> {
    match agent.draft.triggers_require {
        Some(required) if !mode.keeps_to(required) => Err(format!(
            "The agent holds the sessions its triggers start to {required}; this one's mode is \
             {mode}."
        )),
        _ => Ok(()),
    }
}

/// Refuses a schedule that would never run again (a new one, or one
/// whose times change).
fn has_time_left(draft: &TriggerDraft) -> Result<(), AppError> {
    let Some(times) = &draft.schedule else {
        return Ok(());
    };
    let times = schedule::Times::of(times).map_err(AppError::Invalid)?;
    match times.next_after(Utc::now()) {
        Some(_) => Ok(()),
        None => Err(AppError::Invalid(
            "This schedule has no time left to run.".into(),
        )),
    }
}

/// The draft, valid, its templates compiling.
fn checked(draft: TriggerDraft) -> Result<TriggerDraft, AppError> {
    let draft = draft.validate()?;
    if let Some(times) = &draft.schedule {
        schedule::Times::of(times).map_err(AppError::Invalid)?;
    }
    prompt::check("prompt", &draft.prompt)?;
    if let Some(key) = &draft.conversation {
        prompt::check("conversation key", key)?;
    }
    Ok(draft)
}
