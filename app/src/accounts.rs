//! Who uses Paddock and what each person may do: accounts and their roles,
//! the [`Caller`] of a request, what a caller may do with a session
//! ([`Access`]), shares, API tokens, saved credentials and the audit log.
//! The one definition of these rules, used by the server's every door and by
//! the dashboard to show only the buttons that will work.

use crate::domain::{check_name_within, string_enum, AppError, SessionId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest login accepted, in characters.
pub const LOGIN_MAX_CHARS: usize = 64;
/// Longest display name accepted, in characters.
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;
/// Shortest password accepted, in characters (NIST SP 800-63B's minimum
/// for a password the user chose).
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Longest password accepted, in bytes: hashing is deliberately slow, and a
/// huge password must not make it slower.
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Longest API token name, in characters.
pub const TOKEN_NAME_MAX_CHARS: usize = 100;

string_enum! {
    /// What a person may do in this Paddock.
    ///
    /// - `admin`: users, credentials, settings and every session;
    /// - `member`: creates and runs their own sessions, and works in those
    ///   shared with them;
    /// - `viewer`: reads the sessions shared with them.
    Role {
        Admin => "admin",
        Member => "member",
        Viewer => "viewer",
    }
}

string_enum! {
    /// How a session is shared with someone: to follow it, or to work in it
    /// too (prompt, stop, answer permission requests).
    ShareLevel {
        Watch => "watch",
        Operate => "operate",
    }
}

/// What a caller may do with one session, each level including the ones
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Access {
    /// Read the session and its transcript, follow it live.
    Watch,
    /// Also prompt it, stop it and answer its permission requests.
    Operate,
    /// Also share, rename and delete it: its owner, or an admin.
    Own,
}

impl Access {
    /// Refuses what needs more than this access, with a message that says
    /// what was missing.
    pub fn require(self, needed: Access) -> Result<(), AppError> {
        if self >= needed {
            return Ok(());
        }
        Err(AppError::Forbidden(
            match needed {
                Access::Watch => "You may not see this session.",
                Access::Operate => {
                    "This session is shared with you to watch only: you cannot prompt it, stop it \
                     or answer its permission requests."
                }
                Access::Own => "Only the session's owner or an admin may do this.",
            }
            .into(),
        ))
    }
}

/// Who makes a request, resolved once at the door (a browser session or an
/// API token) and passed to everything that touches a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Caller {
    /// `None` for the local operator of a Paddock that runs with sign-in
    /// off (`PADDOCK_AUTH=off`, loopback only): one trusted person.
    pub user: Option<UserId>,
    pub login: String,
    pub display_name: String,
    pub role: Role,
    /// Where the request came from, for the audit log (never sent to the
    /// browser).
    #[serde(skip)]
    pub address: Option<std::net::IpAddr>,
    /// Whether the request proved itself with an API token rather than a
    /// signed-in browser (set at the door, never sent to the browser).
    #[serde(skip)]
    pub by_token: bool,
}

impl Caller {
    /// The one person of a Paddock with sign-in off.
    pub fn local_operator() -> Self {
        Caller {
            user: None,
            login: "local".into(),
            display_name: "Local operator".into(),
            role: Role::Admin,
            address: None,
            by_token: false,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses a caller who is not an admin.
    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::Forbidden("Only an admin may do this.".into()))
        }
    }

    /// Refuses a request made with an API token: tokens work sessions, and
    /// what hands out access (new tokens, passwords, accounts, stored
    /// credentials) needs the person, signed in. A leaked token so cannot
    /// outlive its revocation or expiry by minting another.
    pub fn require_signed_in(&self) -> Result<(), AppError> {
        if self.by_token {
            Err(AppError::Forbidden(
                "An API token cannot do this: sign in to the dashboard (or use the paddock \
                 command on the server)."
                    .into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Whether this caller may create sessions (and so own them).
    pub fn may_create_sessions(&self) -> Result<(), AppError> {
        match self.role {
            Role::Admin | Role::Member => Ok(()),
            Role::Viewer => Err(AppError::Forbidden(
                "Viewers read the sessions shared with them; they cannot create sessions.".into(),
            )),
        }
    }

    /// What this caller may do with a session owned by `owner` and shared
    /// with them at `share` (if at all); `None`: nothing, not even know it
    /// exists. A viewer never gets more than [`Access::Watch`], whatever a
    /// share says.
    pub fn access(&self, owner: Option<UserId>, share: Option<ShareLevel>) -> Option<Access> {
        let owns = self.user.is_some() && owner == self.user;
        let granted = if self.is_admin() || owns {
            Access::Own
        } else {
            match share? {
                ShareLevel::Watch => Access::Watch,
                ShareLevel::Operate => Access::Operate,
            }
        };
        Some(match self.role {
            Role::Viewer => granted.min(Access::Watch),
            Role::Admin | Role::Member => granted,
        })
    }

    /// How this caller is named in transcripts and the audit log.
    pub fn label(&self) -> String {
        if self.display_name.is_empty() || self.display_name == self.login {
            self.login.clone()
        } else {
            format!("{} ({})", self.display_name, self.login)
        }
    }
}

/// An account as shown to admins (never its password hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub login: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn caller(&self) -> Caller {
        Caller {
            user: Some(self.id),
            login: self.login.clone(),
            display_name: self.display_name.clone(),
            role: self.role,
            address: None,
            by_token: false,
        }
    }
}

/// A login as people type it: trimmed, compared without case, and made of
/// letters, digits and `.-_@` so it can be shown and typed anywhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Login(String);

impl Login {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Login {
    type Err = AppError;
    fn from_str(s: &str) -> Result<Self, AppError> {
        let login = s.trim().to_lowercase();
        let allowed = |c: char| c.is_alphanumeric() || ".-_@".contains(c);
        if login.is_empty()
            || login.chars().count() > LOGIN_MAX_CHARS
            || !login.chars().all(allowed)
        {
            return Err(AppError::Invalid(format!(
                "A login is 1 to {LOGIN_MAX_CHARS} letters, digits or the characters . - _ @."
            )));
        }
        Ok(Login(login))
    }
}

/// A display name: trimmed, at most [`DISPLAY_NAME_MAX_CHARS`], no control
/// characters nor hidden ones (which would turn what the audit log or a
/// transcript says around them: [`check_name_within`]); empty means "the
/// login".
pub fn display_name(name: &str, login: &Login) -> Result<String, AppError> {
    if name.trim().is_empty() {
        return Ok(login.to_string());
    }
    check_name_within("person", name, DISPLAY_NAME_MAX_CHARS)
}

/// Checks a new password's length (its strength beyond that is the user's
/// choice, as NIST advises).
pub fn check_new_password(password: &str) -> Result<(), AppError> {
    if password.chars().count() < PASSWORD_MIN_CHARS || password.len() > PASSWORD_MAX_BYTES {
        return Err(AppError::Invalid(format!(
            "A password is at least {PASSWORD_MIN_CHARS} characters (and at most \
             {PASSWORD_MAX_BYTES} bytes)."
        )));
    }
    Ok(())
}

/// Someone a session is shared with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub session: SessionId,
    pub user: UserId,
    pub login: String,
    pub display_name: String,
    pub level: ShareLevel,
}

/// Who may see a session, and who follows it right now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionPeople {
    /// What the caller asking may do with the session.
    pub access: Access,
    pub owner: Option<String>,
    pub shares: Vec<Share>,
    /// Display labels of those with the session open now, each once.
    pub watching: Vec<String>,
}

/// A personal access token as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: uuid::Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// Whether requests made with it are served now.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A token in its owner's list, with whether it still opens the door (the
/// browser has no clock of its own to tell an expired one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListedToken {
    pub token: ApiToken,
    pub live: bool,
}

/// A token just created: its secret is shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewApiToken {
    pub token: ApiToken,
    pub secret: String,
}

string_enum! {
    /// The credentials Paddock can keep for its users.
    CredentialKind {
        AnthropicApiKey => "anthropic_api_key",
        /// A value a person gives their agents: set, under its name, in the
        /// environment of the commands of each session that lists it, and
        /// masked wherever the transcript would show it.
        Secret => "secret",
        /// A token for git over HTTPS (`token`, or `user:token`) that the
        /// server clones and pushes a session's repository with; it never
        /// enters a sandbox.
        GitToken => "git_token",
    }
}

impl CredentialKind {
    /// Whether credentials of this kind are told apart by a name (several
    /// per scope) rather than being the scope's one.
    pub fn is_named(self) -> bool {
        matches!(self, CredentialKind::Secret | CredentialKind::GitToken)
    }
}

/// Whose a saved credential is: the server's (set by an admin, used by
/// everyone) or one user's (used for their own sessions, before the
/// server's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CredentialScope {
    Server,
    User(UserId),
}

impl fmt::Display for CredentialScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialScope::Server => f.write_str("server"),
            CredentialScope::User(id) => write!(f, "user:{id}"),
        }
    }
}

impl FromStr for CredentialScope {
    type Err = AppError;
    fn from_str(s: &str) -> Result<Self, AppError> {
        match s.strip_prefix("user:") {
            None if s == "server" => Ok(CredentialScope::Server),
            Some(id) => id
                .parse()
                .map(CredentialScope::User)
                .map_err(|_| AppError::Invalid(format!("unknown credential scope {s:?}"))),
            None => Err(AppError::Invalid(format!("unknown credential scope {s:?}"))),
        }
    }
}

/// Which saved credential: whose, of what kind, and a secret's name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CredentialId {
    pub scope: CredentialScope,
    pub kind: CredentialKind,
    /// A secret's name, which is its variable's; empty for the model key.
    #[serde(default)]
    pub name: String,
}

impl CredentialId {
    /// The scope's Anthropic API key.
    pub fn model_key(scope: CredentialScope) -> Self {
        Self {
            scope,
            kind: CredentialKind::AnthropicApiKey,
            name: String::new(),
        }
    }

    /// The scope's secret of that name.
    pub fn secret(scope: CredentialScope, name: &str) -> Self {
        Self::named(scope, CredentialKind::Secret, name)
    }

    /// The scope's credential of a named kind.
    pub fn named(scope: CredentialScope, kind: CredentialKind, name: &str) -> Self {
        Self {
            scope,
            kind,
            name: name.to_owned(),
        }
    }
}

/// `scope/kind`, and `/name` for a secret: how the audit log names it.
impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.scope, self.kind)?;
        if !self.name.is_empty() {
            write!(f, "/{}", self.name)?;
        }
        Ok(())
    }
}

/// A saved credential as listed: never its value, only a hint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CredentialInfo {
    #[serde(flatten)]
    pub id: CredentialId,
    /// The last four characters of a key, so people can tell keys apart
    /// (never any of a secret's).
    pub hint: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// Longest credential value accepted, in bytes.
pub const CREDENTIAL_MAX_BYTES: usize = 4096;
/// Shortest secret accepted, in characters: a secret is masked wherever
/// its exact value appears, which for a shorter one would hide ordinary
/// words.
pub const SECRET_MIN_CHARS: usize = 6;
/// Secrets one scope may keep.
pub const SECRETS_MAX: usize = 100;

/// The hint shown for a secret: its last four characters, and only when it
/// is long enough that they give little away.
pub fn secret_hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "••••".into();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("••••{tail}")
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who did it: a caller's label, or what they claimed to be on a failed
    /// sign-in.
    pub actor: String,
    pub action: AuditAction,
    pub target: String,
    pub detail: String,
    pub address: Option<String>,
}

string_enum! {
    /// What the audit log records.
    AuditAction {
        SignIn => "sign_in",
        SignInFailed => "sign_in_failed",
        SignOut => "sign_out",
        SignOutEverywhere => "sign_out_everywhere",
        PasswordChanged => "password_changed",
        UserCreated => "user_created",
        UserChanged => "user_changed",
        TokenCreated => "token_created",
        TokenRevoked => "token_revoked",
        CredentialSaved => "credential_saved",
        CredentialDeleted => "credential_deleted",
        MasterKeyRotated => "master_key_rotated",
        Shared => "shared",
        Unshared => "unshared",
        PermissionDecided => "permission_decided",
        SettingsChanged => "settings_changed",
        AccessRefused => "access_refused",
        TriggerChanged => "trigger_changed",
        DeliveryRefused => "delivery_refused",
        NotificationChanged => "notification_changed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            user: Some(uuid::Uuid::from_u128(1)),
            login: "a".into(),
            display_name: "A".into(),
            role,
            address: None,
            by_token: false,
        }
    }

    #[test]
    fn a_display_name_shows_what_it_says() {
        let login: Login = "ada".parse().unwrap();
        assert_eq!(display_name("  ", &login).unwrap(), "ada");
        assert_eq!(display_name(" Ada L. ", &login).unwrap(), "Ada L.");
        for hostile in ["Ada\u{202E}nimda", "Ada\u{200B}", "Ada\nroot"] {
            assert!(display_name(hostile, &login).is_err(), "{hostile:?}");
        }
    }

    #[test]
    fn access_follows_role_ownership_and_share() {
        let me = Some(uuid::Uuid::from_u128(1));
        let other = Some(uuid::Uuid::from_u128(2));
        let member = caller(Role::Member);
        assert_eq!(member.access(me, None), Some(Access::Own));
        assert_eq!(member.access(other, None), None);
        assert_eq!(member.access(None, None), None);
        assert_eq!(
            member.access(other, Some(ShareLevel::Watch)),
            Some(Access::Watch)
        );
        assert_eq!(
            member.access(other, Some(ShareLevel::Operate)),
            Some(Access::Operate)
        );
        let viewer = caller(Role::Viewer);
        assert_eq!(
            viewer.access(other, Some(ShareLevel::Operate)),
            Some(Access::Watch)
        );
        assert_eq!(viewer.access(me, None), Some(Access::Watch));
        assert_eq!(caller(Role::Admin).access(other, None), Some(Access::Own));
        assert_eq!(
            Caller::local_operator().access(None, None),
            Some(Access::Own)
        );
        assert!(Access::Watch.require(Access::Operate).is_err());
        assert!(Access::Own.require(Access::Operate).is_ok());
    }

    #[test]
    fn logins_are_normalised_and_checked() {
        assert_eq!(
            "  Ada@Example.com ".parse::<Login>().unwrap().as_str(),
            "ada@example.com"
        );
        for bad in ["", "  ", "a b", "<script>", "a/b", &"x".repeat(65)] {
            assert!(bad.parse::<Login>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hints_hide_short_secrets() {
        assert_eq!(secret_hint("short"), "••••");
        assert_eq!(secret_hint("sk-ant-api03-abcdWXYZ"), "••••WXYZ");
    }

    #[test]
    fn scopes_round_trip() {
        let id = uuid::Uuid::from_u128(7);
        for s in [CredentialScope::Server, CredentialScope::User(id)] {
            assert_eq!(s.to_string().parse::<CredentialScope>().unwrap(), s);
        }
        assert!("user:x".parse::<CredentialScope>().is_err());
        assert!("root".parse::<CredentialScope>().is_err());
    }
}
