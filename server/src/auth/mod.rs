//! Accounts and sign-in: who a request comes from.
//!
//! A request is made by a signed-in browser (a tower-sessions cookie:
//! HttpOnly, SameSite=Lax, `Secure` behind an https public URL, a new id at
//! every sign-in, idle and absolute expiry) or by a script with a personal
//! API token (`Authorization: Bearer pdk_…`, stored as its SHA-256). With
//! sign-in off (`PADDOCK_AUTH=off`, allowed on loopback only) every request
//! is the one local operator. [`Auth::identify`] resolves this once per
//! request, at the door (`http/request_guard.rs`); everything after it works
//! with the [`Caller`] it found.
//!
//! Every open stream checks its caller again when access changes
//! ([`Auth::still_valid`]), so a revoked token, a sign-out everywhere or a
//! disabled account ends it at once.

mod browser_store;
mod limiter;
mod password;
mod tokens;
mod users;

pub use browser_store::BrowserSessions;
pub use limiter::{PER_ADDRESS_PER_MINUTE, PER_LOGIN_PER_MINUTE};
pub use tokens::TOKEN_PREFIX;

use crate::hub::Hub;
use crate::secret;
use crate::store::accounts::NewAuditEntry;
use crate::store::{Store, StoreError};
use app::accounts::{AuditAction, Caller, Login, Role};
use app::domain::AppError;
use app::domain::UserId;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
pub use limiter::RefusalLimiter;
use limiter::SignInLimiter;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The browser session cookie's name…
pub const SESSION_COOKIE: &str = "paddock_session";
/// …and behind an https public URL, where the `__Host-` prefix has
/// browsers take it only from this host itself, secure, for every path: a
/// page on a sibling subdomain (or, on plain http, any other port of the
/// same host) could otherwise plant its own session cookie beside it, and
/// the browser would be signed in as someone else.
pub const SECURE_SESSION_COOKIE: &str = "__Host-paddock_session";
/// A browser session ends after this long without a request…
pub const IDLE_TIMEOUT: chrono::Duration = chrono::Duration::days(7);
/// …and this long after sign-in, whatever happens.
pub const ABSOLUTE_TIMEOUT: chrono::Duration = chrono::Duration::days(30);
/// How stale a session's "last seen" may get before a request renews it
/// (renewing writes, so not on every request).
const SEEN_REFRESH: chrono::Duration = chrono::Duration::minutes(10);
/// The key of the signed-in account in a browser session's record.
const ACCOUNT_KEY: &str = "account";
/// The message of every failed sign-in, whatever failed.
const WRONG_CREDENTIALS: &str = "Wrong login or password.";

/// What a signed-in browser session holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SignedIn {
    user: UserId,
    signed_in_at: DateTime<Utc>,
    seen_at: DateTime<Utc>,
    /// Which password it signed in with ([`password_mark`]): a session
    /// that signed in with one changed since holds no more, even one whose
    /// check of the old password was under way as it changed. (Sessions
    /// from before this was kept have none.)
    #[serde(default)]
    password: Option<String>,
}

/// A mark of a password's hash, kept with the sessions signed in with it.
fn password_mark(password_hash: &str) -> String {
    secret::sha256_hex(password_hash)[..16].to_owned()
}

impl SignedIn {
    /// Whether it signed in with the password whose hash is `now`.
    fn with_password(&self, now: &str) -> bool {
        self.password
            .as_deref()
            .is_none_or(|mark| secret::same(mark, &password_mark(now)))
    }
}

/// How a request proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// Sign-in is off: the local operator.
    SignInOff,
    /// A browser session cookie (its id).
    Browser(String),
    /// An API token (its id).
    Token(uuid::Uuid),
}

/// A request's caller and how they proved it.
#[derive(Clone, Debug)]
pub struct Identity {
    pub caller: Caller,
    pub via: Via,
}

/// Sign-in, browser sessions, tokens and accounts.
pub struct Auth {
    store: Arc<dyn Store>,
    hub: Hub,
    enabled: bool,
    /// The one-time token of the first-admin setup link, while no account
    /// exists.
    setup: Mutex<Option<String>>,
    limiter: SignInLimiter,
    refusals: RefusalLimiter,
}

fn internal(e: tower_sessions::session::Error) -> AppError {
    use tower_sessions::{session::Error, session_store::Error as StoreError};
    if let Error::Store(StoreError::Backend(said)) = &e {
        if said.starts_with(browser_store::PASSING) {
            tracing::warn!("browser session: {e}");
            return AppError::Unavailable(
                "The database does not answer; try again in a moment.".into(),
            );
        }
    }
    tracing::error!("browser session: {e}");
    AppError::Internal
}

/// The caller's own account, for a change to it: there is none with sign-in
/// off (`without_accounts` says what that means here), and an API token may
/// not make it.
fn own_account(identity: &Identity, without_accounts: &str) -> Result<UserId, AppError> {
    let Some(user) = identity.caller.user else {
        return Err(AppError::Invalid(format!(
            "Sign-in is off: {without_accounts}."
        )));
    };
    identity.caller.require_signed_in()?;
    Ok(user)
}

fn session_expired() -> AppError {
    AppError::Unauthenticated("Your session has ended. Sign in again.".into())
}

impl Auth {
    pub fn new(store: Arc<dyn Store>, hub: Hub, enabled: bool) -> Self {
        Self {
            store,
            hub,
            enabled,
            setup: Mutex::new(None),
            limiter: SignInLimiter::default(),
            refusals: RefusalLimiter::default(),
        }
    }

    /// Whether callers must sign in (`false`: `PADDOCK_AUTH=off`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The cookie layer that keeps browser sessions in the store.
    pub fn session_layer(&self, secure: bool) -> SessionManagerLayer<BrowserSessions> {
        let idle = time::Duration::seconds(IDLE_TIMEOUT.num_seconds());
        SessionManagerLayer::new(BrowserSessions(self.store.clone()))
            .with_name(match secure {
                true => SECURE_SESSION_COOKIE,
                false => SESSION_COOKIE,
            })
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(secure)
            .with_expiry(Expiry::OnInactivity(idle))
    }

    /// At start-up: when sign-in is on and no account exists yet, a token
    /// for the one-time setup link that creates the first admin (valid until
    /// used, or until the server restarts).
    pub async fn open_setup(&self) -> Result<Option<String>, StoreError> {
        if !self.enabled || self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let token = secret::random_hex();
        *crate::sync::lock(&self.setup) = Some(token.clone());
        Ok(Some(token))
    }

    /// Whether `token` is the live setup token.
    pub fn setup_token_valid(&self, token: &str) -> bool {
        crate::sync::lock(&self.setup)
            .as_deref()
            .is_some_and(|t| secret::same(t, token))
    }

    /// Who makes a request: `Ok(None)` for an anonymous one, an error for
    /// credentials that do not hold (an unknown, revoked or expired token).
    /// A Paddock API token (`Bearer pdk_…`) wins over a cookie; a request
    /// that sends a bad one is refused, never served as someone else.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        session: Option<&Session>,
    ) -> Result<Option<Identity>, AppError> {
        if !self.enabled {
            return Ok(Some(Identity {
                caller: Caller::local_operator(),
                via: Via::SignInOff,
            }));
        }
        if let Some(token) = tokens::bearer_token(headers) {
            return self.by_token(token).await.map(Some);
        }
        match session {
            Some(session) => self.by_browser(session).await,
            None => Ok(None),
        }
    }

    async fn by_browser(&self, session: &Session) -> Result<Option<Identity>, AppError> {
        let Some(mut signed_in) = session
            .get::<SignedIn>(ACCOUNT_KEY)
            .await
            .map_err(internal)?
        else {
            return Ok(None);
        };
        let now = Utc::now();
        let user = self.store.user_by_id(signed_in.user).await?;
        let active = user.filter(|u| !u.user.disabled && signed_in.with_password(&u.password_hash));
        let Some(user) = active.filter(|_| now - signed_in.signed_in_at < ABSOLUTE_TIMEOUT) else {
            session.flush().await.map_err(internal)?;
            return Ok(None);
        };
        if now - signed_in.seen_at > SEEN_REFRESH {
            signed_in.seen_at = now;
            session
                .insert(ACCOUNT_KEY, &signed_in)
                .await
                .map_err(internal)?;
        }
        let Some(id) = session.id() else {
            return Ok(None);
        };
        Ok(Some(Identity {
            caller: user.user.caller(),
            via: Via::Browser(id.to_string()),
        }))
    }

    /// Audits an action refused to `caller`, a few a minute per account
    /// ([`limiter::REFUSALS_AUDITED_PER_MINUTE`]); the rest are logged.
    pub async fn audit_refusal(
        &self,
        caller: &Caller,
        action: AuditAction,
        target: &str,
        detail: &str,
    ) {
        let actor = caller.label();
        // By account: a label holds the display name, which its owner may
        // change.
        let key = caller
            .user
            .map_or_else(|| caller.login.clone(), |u| u.to_string());
        if self.refusals.told(&key) {
            self.audit(&actor, action, target, detail, caller.address)
                .await;
        } else {
            let action = action.as_str();
            tracing::info!(
                actor,
                action,
                target,
                detail,
                "refused (not audited: past the rate)"
            );
        }
    }

    /// Records a security event; a failure to record is logged, never
    /// shown to the caller.
    pub async fn audit(
        &self,
        actor: &str,
        action: AuditAction,
        target: &str,
        detail: &str,
        address: Option<IpAddr>,
    ) {
        // What a caller typed (a login that failed to sign in).
        let clean = crate::store::storable;
        let entry = NewAuditEntry {
            actor: clean(actor, 200),
            action,
            target: clean(target, 200),
            detail: clean(detail, 1000),
            address: address.map(|a| a.to_string()),
        };
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::error!(?entry, "cannot record an audit entry: {e}");
        }
    }

    /// Signs a browser session in, with a new session id (so an id planted
    /// before sign-in is worthless after it).
    pub async fn sign_in(
        &self,
        session: &Session,
        login: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Caller, AppError> {
        let claimed: String = login.trim().chars().take(100).collect();
        let login = claimed.parse::<Login>().ok();
        // Counted for the login as it is looked up: spaces the cut left at
        // the end, which the lookup trims, make no login of their own.
        let counted = login.as_ref().map_or(claimed.as_str(), Login::as_str);
        if let Err(e) = self.limiter.attempt(counted, address) {
            // Not audited: the limit is what keeps a flood of attempts from
            // filling the audit log.
            tracing::warn!(login = ?claimed, ?address, "sign-in refused: rate limited");
            return Err(e);
        }
        let record = match &login {
            Some(login) => self.store.user_by_login(login).await?,
            None => None,
        };
        let hash = record.as_ref().map(|r| r.password_hash.clone());
        let matches = password::verify(password.to_owned(), hash).await?;
        let (user, hash) = match record {
            Some(r) if matches && !r.user.disabled => (r.user, r.password_hash),
            _ => {
                // A few a minute from one address (an IPv6 site: its /64s
                // are many) are audited, the rest logged: guesses of ever
                // new logins (not held back by the logins' limits) must not
                // fill the audit log.
                let from =
                    address.map_or_else(String::new, |a| limiter::network_of(a, 48).to_string());
                if self.refusals.told(&format!("sign-in from {from}")) {
                    // What was typed, quoted with its hidden characters
                    // shown, unless it is a login.
                    let actor = login.map_or_else(|| format!("{claimed:?}"), |l| l.to_string());
                    self.audit(&actor, AuditAction::SignInFailed, "", "", address)
                        .await;
                } else {
                    tracing::warn!(login = ?claimed, ?address, "sign-in failed");
                }
                return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into()));
            }
        };
        // Written first: a sign-in whose writes fail leaves the browser
        // signed out, as it is told.
        self.store.set_last_sign_in(user.id, Utc::now()).await?;
        self.start_browser_session(session, user.id, &hash).await?;
        let caller = user.caller();
        self.audit(&caller.label(), AuditAction::SignIn, "", "", address)
            .await;
        Ok(caller)
    }

    /// Signs `session` in as `user`, with the password whose hash is
    /// `password_hash` (the one checked).
    async fn start_browser_session(
        &self,
        session: &Session,
        user: UserId,
        password_hash: &str,
    ) -> Result<(), AppError> {
        let now = Utc::now();
        // Whoever this browser was signed in as before: their open streams
        // check their caller at once (the cookie no longer signs them in).
        let before = session.get::<SignedIn>(ACCOUNT_KEY).await.ok().flatten();
        session.cycle_id().await.map_err(internal)?;
        session
            .insert(
                ACCOUNT_KEY,
                SignedIn {
                    user,
                    signed_in_at: now,
                    seen_at: now,
                    password: Some(password_mark(password_hash)),
                },
            )
            .await
            .map_err(internal)?;
        if let Some(before) = before {
            self.hub.access_changed(before.user);
        }
        Ok(())
    }

    /// Creates the first admin through the setup link, and signs them in.
    /// The link works once: afterwards, and once any account exists, it is
    /// refused.
    pub async fn set_up_first_admin(
        &self,
        session: &Session,
        token: &str,
        login: &str,
        display_name: &str,
        new_password: &str,
        address: Option<IpAddr>,
    ) -> Result<Caller, AppError> {
        let refused = || {
            AppError::Forbidden(
                "This setup link is not valid: it was used already, or Paddock restarted since \
                 it was printed. Sign in, or ask an admin for an account."
                    .into(),
            )
        };
        // Taken out while the admin is made, so a second request racing
        // this one finds no link; put back if this one fails.
        let taken = {
            let mut slot = crate::sync::lock(&self.setup);
            match slot.as_deref() {
                Some(live) if secret::same(live, token) => slot.take(),
                _ => None,
            }
        };
        let Some(taken) = taken else {
            return Err(refused());
        };
        match self.store.count_users().await {
            Ok(0) => {}
            Ok(_) => return Err(refused()),
            Err(e) => {
                // Not used: it still opens the setup.
                *crate::sync::lock(&self.setup) = Some(taken);
                return Err(e.into());
            }
        }
        let made = self
            .add_user(
                "setup link",
                login,
                display_name,
                Role::Admin,
                new_password,
                address,
            )
            .await;
        let user = match made {
            Ok(user) => user,
            Err(e) => {
                *crate::sync::lock(&self.setup) = Some(taken);
                return Err(e);
            }
        };
        let record = self
            .store
            .user_by_id(user.id)
            .await?
            .ok_or_else(session_expired)?;
        self.store.set_last_sign_in(user.id, Utc::now()).await?;
        self.start_browser_session(session, user.id, &record.password_hash)
            .await?;
        Ok(user.caller())
    }

    /// Ends this browser session.
    pub async fn sign_out(&self, session: &Session, identity: &Identity, address: Option<IpAddr>) {
        // No browser session (an API token, sign-in off): nothing to end,
        // and nothing to record.
        if session.id().is_none() {
            return;
        }
        if let Err(e) = session.flush().await {
            tracing::error!("cannot end a browser session: {e}");
        }
        if let Some(user) = identity.caller.user {
            self.hub.access_changed(user);
        }
        self.audit(
            &identity.caller.label(),
            AuditAction::SignOut,
            "",
            "",
            address,
        )
        .await;
    }

    /// Ends every browser session of the caller, on every device (their
    /// API tokens stay: those are revoked one by one).
    pub async fn sign_out_everywhere(
        &self,
        identity: &Identity,
        address: Option<IpAddr>,
    ) -> Result<(), AppError> {
        let user = own_account(identity, "there is nothing to sign out of")?;
        let ended = self.store.delete_browser_sessions_of(user).await?;
        self.hub.access_changed(user);
        self.audit(
            &identity.caller.label(),
            AuditAction::SignOutEverywhere,
            "",
            &format!("{ended} browser sessions ended"),
            address,
        )
        .await;
        Ok(())
    }

    /// Changes the caller's own password (the current one proves it is
    /// them); every other browser session of theirs ends, this one goes on
    /// under a new id.
    pub async fn change_password(
        &self,
        session: &Session,
        identity: &Identity,
        current: &str,
        new_password: &str,
        address: Option<IpAddr>,
    ) -> Result<(), AppError> {
        let user = own_account(identity, "there is no password to change")?;
        app::accounts::check_new_password(new_password)?;
        // Guessing the current password is guessing a password: limited
        // like sign-in.
        self.limiter.attempt(&identity.caller.login, address)?;
        let record = self
            .store
            .user_by_id(user)
            .await?
            .ok_or_else(session_expired)?;
        if !password::verify(current.to_owned(), Some(record.password_hash)).await? {
            self.audit(
                &identity.caller.label(),
                AuditAction::PasswordChanged,
                "",
                "refused: the current password was wrong",
                address,
            )
            .await;
            return Err(AppError::Forbidden("The current password is wrong.".into()));
        }
        let hash = self.set_password(user, new_password).await?;
        self.start_browser_session(session, user, &hash).await?;
        self.audit(
            &identity.caller.label(),
            AuditAction::PasswordChanged,
            "",
            "",
            address,
        )
        .await;
        Ok(())
    }

    /// Whether an identity still holds (for streams that outlive the
    /// request that opened them); an error when the store cannot tell.
    pub async fn still_valid(&self, identity: &Identity) -> Result<bool, StoreError> {
        let (user, signed_in) = match &identity.via {
            Via::SignInOff => return Ok(true),
            Via::Browser(id) => {
                let stored = self
                    .store
                    .load_browser_session(&browser_store::row_key(id))
                    .await?;
                match stored.as_deref().and_then(browser_store::signed_in_of) {
                    Some(s) if Utc::now() - s.signed_in_at < ABSOLUTE_TIMEOUT => (s.user, Some(s)),
                    _ => return Ok(false),
                }
            }
            Via::Token(id) => match self.store.api_token(*id).await? {
                Some(t) if t.token.is_live(Utc::now()) => (t.user, None),
                _ => return Ok(false),
            },
        };
        if identity.caller.user != Some(user) {
            return Ok(false);
        }
        Ok(matches!(
            self.store.user_by_id(user).await?,
            Some(r) if !r.user.disabled
                && r.user.role == identity.caller.role
                && signed_in.is_none_or(|s| s.with_password(&r.password_hash))
        ))
    }
}
