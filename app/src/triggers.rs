//! Triggers: an agent template's doors for machines. A trigger has its own
//! URL and secret; a delivery its sender signs (or a schedule's time)
//! becomes a prompt (the trigger's prompt template filled from the
//! delivery), which starts a session from the template, as its owner, or
//! continues the session of the same conversation. The server's side:
//! `server/src/triggers/`.

pub use crate::domain::TriggerId;
use crate::domain::{string_enum, AppError, PermissionMode, SessionId, TemplateId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

string_enum! {
    /// How a trigger's deliveries are signed, and what they carry.
    TriggerKind {
        /// Any sender that signs per the Standard Webhooks specification
        /// (`webhook-id`, `webhook-timestamp`, `webhook-signature`), with a
        /// JSON body.
        Webhook => "webhook",
        /// A GitHub repository's (or organisation's) webhook: issues opened
        /// and comments that mention the trigger's handle.
        Github => "github",
        /// Inbound email from a Mailgun route (its "forward" action): a
        /// form signed with the Mailgun account's webhook signing key.
        Mailgun => "mailgun",
        /// Inbound email from SendGrid's Inbound Parse: a multipart form,
        /// unsigned, so the URL carries a password (basic auth).
        Sendgrid => "sendgrid",
        /// Text messages to a Twilio number: a form signed with the Twilio
        /// account's auth token over the public URL it was posted to.
        Twilio => "twilio",
        /// No sender: runs at the times of a cron expression, in a time
        /// zone.
        Schedule => "schedule",
    }
}

string_enum! {
    /// What a schedule does with runs missed while no server was running.
    MissedRuns {
        /// Leave them: the next run is the next time due.
        Skip => "skip",
        /// Run once for them all, as soon as a server is back.
        Once => "once",
    }
}

/// When a schedule trigger runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// A cron expression: minute, hour, day of month, month, day of week
    /// (`0 2 * * *`: at 2 am), or `@daily`, `@hourly`…
    pub cron: String,
    /// An IANA time zone (`Europe/Paris`); the cron's times are its.
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default = "skip")]
    pub missed: MissedRuns,
}

fn utc() -> String {
    "UTC".into()
}

fn skip() -> MissedRuns {
    MissedRuns::Skip
}

/// Longest cron expression, and time zone name.
pub const CRON_MAX_CHARS: usize = 100;
pub const TIMEZONE_MAX_CHARS: usize = 64;

impl TriggerKind {
    /// Whether the sender holds the signing key (Mailgun's signing key,
    /// Twilio's auth token), which the owner gives Paddock, rather than
    /// Paddock making the secret that the owner gives the sender.
    pub fn sender_keyed(self) -> bool {
        matches!(self, Self::Mailgun | Self::Twilio)
    }

    /// Whether its URL carries a password Paddock made (basic auth): the
    /// email senders' (SendGrid signs nothing; Mailgun's signing key is
    /// the whole account's, which its other webhooks carry too).
    pub fn url_password(self) -> bool {
        matches!(self, Self::Mailgun | Self::Sendgrid)
    }

    /// The conversation of a trigger that names none: GitHub's issue, an
    /// email's thread, a text message's sender; other deliveries start a
    /// session each.
    pub fn default_conversation(self) -> Option<&'static str> {
        match self {
            Self::Webhook => None,
            Self::Github => Some(GITHUB_CONVERSATION),
            // A thread, of one sender whose domain vouches for them: a
            // stranger who knows a thread's message id does not join its
            // session, even writing its sender's `From`.
            Self::Mailgun | Self::Sendgrid => {
                Some("{% if email.verified %}{{ email.address }} {{ email.thread }}{% endif %}")
            }
            Self::Twilio => Some("{{ sms.from }}"),
            Self::Schedule => None,
        }
    }

    /// Whether it has a URL that senders post to (a schedule has none).
    pub fn takes_deliveries(self) -> bool {
        self != Self::Schedule
    }
}

/// The user name of an email trigger's URL (its password is the
/// trigger's secret).
pub const URL_USER: &str = "paddock";
/// Longest signing key an owner gives for a sender-keyed trigger.
pub const SENDER_KEY_MAX_BYTES: usize = 256;

/// Refuses a signing key that cannot be one: a sender-keyed trigger
/// needs one (printable, without spaces), another kind none.
pub fn check_sender_key(kind: TriggerKind, key: Option<&str>) -> Result<(), AppError> {
    match (kind.sender_keyed(), key.map(str::trim)) {
        (true, Some(key))
            if !key.is_empty()
                && key.len() <= SENDER_KEY_MAX_BYTES
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(())
        }
        (true, _) => Err(AppError::Invalid(format!(
            "A {kind} trigger needs the key {kind} signs with (1 to {SENDER_KEY_MAX_BYTES} \
             printable characters): {}.",
            match kind {
                TriggerKind::Twilio => "the account's Auth Token",
                _ => "the account's HTTP webhook signing key",
            }
        ))),
        (false, None) => Ok(()),
        (false, Some(_)) => Err(AppError::Invalid(format!(
            "A {kind} trigger's secret is made by Paddock: give no key."
        ))),
    }
}

/// Longest GitHub login (and so a trigger's handle).
pub const HANDLE_MAX_CHARS: usize = 39;

/// Whether `handle` can be a GitHub login: letters, digits and single
/// hyphens inside.
pub fn is_handle(handle: &str) -> bool {
    !handle.is_empty()
        && handle.chars().count() <= HANDLE_MAX_CHARS
        && handle
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !handle.starts_with('-')
        && !handle.ends_with('-')
        && !handle.contains("--")
}

/// The conversation of a GitHub trigger that names none: the issue or pull
/// request.
const GITHUB_CONVERSATION: &str = "{{ github.repository }}#{{ github.number }}";

/// Longest prompt template, and longest prompt it may make.
pub const PROMPT_TEMPLATE_MAX_BYTES: usize = 16 * 1024;
pub const PROMPT_MAX_BYTES: usize = 64 * 1024;
/// Longest conversation key template, and key.
pub const CONVERSATION_MAX_BYTES: usize = 512;
/// Longest name.
pub const NAME_MAX_CHARS: usize = 100;

/// What the owner says a trigger is (creating it, or changing it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDraft {
    pub name: String,
    #[serde(default = "default_kind")]
    pub kind: TriggerKind,
    /// The prompt, a template (minijinja: `{{ payload.title }}`) over the
    /// delivery: `payload` (its JSON, or its form's fields), `delivery`
    /// (its id), and what its kind says: `github`, `email`, `sms` or
    /// `schedule`.
    pub prompt: String,
    /// The conversation's key, a template like the prompt's
    /// (`{{ payload.thread }}`): a delivery whose key names a session this
    /// trigger started continues it. None (or an empty key): each delivery
    /// starts a session.
    #[serde(default)]
    pub conversation: Option<String>,
    /// The permission mode of the sessions it starts: `ask` unless the
    /// owner chooses otherwise (a stranger's delivery should not run
    /// commands unattended unless they did).
    #[serde(default = "default_mode")]
    pub permission_mode: PermissionMode,
    #[serde(default)]
    pub paused: bool,
    /// A GitHub trigger's handle (without `@`): it acts on what mentions
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// A schedule trigger's times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

fn default_kind() -> TriggerKind {
    TriggerKind::Webhook
}

fn default_mode() -> PermissionMode {
    PermissionMode::Ask
}

impl TriggerDraft {
    /// The draft, trimmed, or why it cannot be one.
    pub fn validate(mut self) -> Result<Self, AppError> {
        self.name = crate::domain::check_name_within("trigger", &self.name, NAME_MAX_CHARS)?;
        if self.prompt.trim().is_empty() || self.prompt.len() > PROMPT_TEMPLATE_MAX_BYTES {
            return Err(AppError::Invalid(format!(
                "A trigger's prompt template is 1 byte to {} KiB.",
                PROMPT_TEMPLATE_MAX_BYTES / 1024
            )));
        }
        self.conversation = self
            .conversation
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if self
            .conversation
            .as_ref()
            .is_some_and(|c| c.len() > CONVERSATION_MAX_BYTES)
        {
            return Err(AppError::Invalid(format!(
                "A conversation key template is at most {CONVERSATION_MAX_BYTES} bytes."
            )));
        }
        self.handle = self
            .handle
            .map(|h| h.trim().trim_start_matches('@').to_owned())
            .filter(|h| !h.is_empty());
        match (self.kind, &self.handle) {
            (TriggerKind::Github, Some(h)) if is_handle(h) => {}
            (TriggerKind::Github, _) => {
                return Err(AppError::Invalid(format!(
                    "A GitHub trigger needs the handle it answers to: a GitHub login (1 to \
                     {HANDLE_MAX_CHARS} letters, digits and single hyphens)."
                )))
            }
            (_, None) => {}
            (_, Some(_)) => {
                return Err(AppError::Invalid(
                    "Only a GitHub trigger has a handle.".into(),
                ))
            }
        }
        self.schedule = self.schedule.map(|s| Schedule {
            cron: s.cron.trim().to_owned(),
            timezone: s.timezone.trim().to_owned(),
            ..s
        });
        match (self.kind, &self.schedule) {
            (TriggerKind::Schedule, Some(s))
                if !s.cron.is_empty()
                    && s.cron.chars().count() <= CRON_MAX_CHARS
                    && !s.timezone.is_empty()
                    && s.timezone.chars().count() <= TIMEZONE_MAX_CHARS => {}
            (TriggerKind::Schedule, _) => {
                return Err(AppError::Invalid(format!(
                    "A schedule needs a cron expression (at most {CRON_MAX_CHARS} characters, \
                     such as 0 2 * * *) and a time zone (such as Europe/Paris)."
                )))
            }
            (_, None) => {}
            (_, Some(_)) => {
                return Err(AppError::Invalid(
                    "Only a schedule trigger has times.".into(),
                ))
            }
        }
        Ok(self)
    }
}

/// A trigger as stored (its secrets never leave the server but once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: TriggerId,
    pub template: TemplateId,
    #[serde(flatten)]
    pub draft: TriggerDraft,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// Until when the secret before the last rotation is still accepted.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// A schedule's next times to run (none while it is paused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_runs: Vec<DateTime<Utc>>,
}

/// The path a trigger's sender posts to.
pub fn trigger_path(id: TriggerId) -> String {
    format!("/hooks/{id}")
}

/// A trigger with its secret, as shown once: when it is made, and when its
/// secret is rotated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriggerSecret {
    pub trigger: Trigger,
    /// 32 random bytes: `whsec_` and their base64 (Standard Webhooks),
    /// their hex (GitHub), or base64url (an email trigger's URL
    /// password); none for Twilio, whose key its sender holds, or a
    /// schedule.
    pub secret: Option<String>,
    /// The path to post to (on the server's public URL).
    pub path: String,
}

impl TriggerSecret {
    /// Where the sender posts, on `origin` (`https://host`): for email,
    /// with the secret as the URL's password.
    pub fn url(&self, origin: &str) -> String {
        match (self.trigger.draft.kind.url_password(), &self.secret) {
            (true, Some(secret)) => {
                let (scheme, host) = origin.split_once("://").unwrap_or(("https", origin));
                format!("{scheme}://{URL_USER}:{secret}@{host}{}", self.path)
            }
            _ => format!("{origin}{}", self.path),
        }
    }
}

/// One delivery a trigger accepted, and what came of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub trigger: TriggerId,
    /// The sender's id for it (`webhook-id`).
    pub id: String,
    pub received_at: DateTime<Utc>,
    /// The status it was answered with (a repeat of it gets the same).
    pub status: u16,
    /// What was done, in words.
    pub outcome: String,
    pub session: Option<SessionId>,
}

/// A trigger with its newest deliveries, as its template's page lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriggerRow {
    pub trigger: Trigger,
    pub deliveries: Vec<Delivery>,
}

/// A template's triggers as its page shows them, and whether the viewer
/// sets them up (its owner, signed in); anyone else who may use the
/// template only reads them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriggerPanel {
    pub rows: Vec<TriggerRow>,
    pub yours: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> TriggerDraft {
        TriggerDraft {
            name: "  builds ".into(),
            kind: TriggerKind::Webhook,
            prompt: "Fix {{ payload.job }}".into(),
            conversation: Some("  ".into()),
            permission_mode: PermissionMode::Ask,
            paused: false,
            handle: None,
            schedule: None,
        }
    }

    #[test]
    fn drafts_are_trimmed_and_bounded() {
        let ok = draft().validate().unwrap();
        assert_eq!(ok.name, "builds");
        assert_eq!(ok.conversation, None);
        let github = TriggerDraft {
            kind: TriggerKind::Github,
            handle: Some(" @paddock-bot ".into()),
            ..draft()
        };
        assert_eq!(
            github.validate().unwrap().handle.as_deref(),
            Some("paddock-bot")
        );
        for bad in [
            TriggerDraft {
                name: " ".into(),
                ..draft()
            },
            TriggerDraft {
                name: "a\u{7}".into(),
                ..draft()
            },
            TriggerDraft {
                prompt: String::new(),
                ..draft()
            },
            TriggerDraft {
                prompt: "x".repeat(PROMPT_TEMPLATE_MAX_BYTES + 1),
                ..draft()
            },
            TriggerDraft {
                conversation: Some("k".repeat(CONVERSATION_MAX_BYTES + 1)),
                ..draft()
            },
            TriggerDraft {
                kind: TriggerKind::Github,
                ..draft()
            },
            TriggerDraft {
                kind: TriggerKind::Github,
                handle: Some("a--b".into()),
                ..draft()
            },
            TriggerDraft {
                handle: Some("bot".into()),
                ..draft()
            },
            TriggerDraft {
                kind: TriggerKind::Schedule,
                ..draft()
            },
            TriggerDraft {
                kind: TriggerKind::Schedule,
                schedule: Some(Schedule {
                    cron: " ".into(),
                    timezone: "UTC".into(),
                    missed: MissedRuns::Skip,
                }),
                ..draft()
            },
            TriggerDraft {
                schedule: Some(Schedule {
                    cron: "0 2 * * *".into(),
                    timezone: "UTC".into(),
                    missed: MissedRuns::Skip,
                }),
                ..draft()
            },
        ] {
            assert!(bad.validate().is_err());
        }
    }
}
