//! The accounts half of the store: users, browser sessions, API tokens,
//! shares, sealed credentials and the audit log. Every database implements
//! it beside [`Store`](super::Store), which requires it.

use super::Result;
use app::accounts::{
    ApiToken, AuditAction, AuditEntry, CredentialId, CredentialInfo, Login, Role, Share,
    ShareLevel, User,
};
use app::domain::{SessionId, UserId};
use chrono::{DateTime, Utc};

/// The meta key of the master key's sealed check value (see the vault).
pub const MASTER_KEY_CHECK: &str = "master_key_check";

/// A rotation of the master key: seals a value again under the new key.
/// The store calls it inside its transaction, for every sealed value it
/// holds; an error leaves everything as it was.
pub trait Reseal: Sync {
    fn credential(&self, credential: &SealedCredential) -> Result<(Vec<u8>, Vec<u8>), String>;
    fn trigger_secret(&self, id: app::triggers::TriggerId, sealed: &str) -> Result<String, String>;
    fn endpoint_secret(
        &self,
        id: app::notifications::EndpointId,
        sealed: &str,
    ) -> Result<String, String>;
}

/// A user with what signing in needs.
#[derive(Clone, Debug)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: String,
}

/// What an API token's hash resolves to.
#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub token: ApiToken,
    pub user: UserId,
}

/// A credential as stored: sealed.
#[derive(Clone, Debug)]
pub struct SealedCredential {
    pub id: CredentialId,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub hint: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl SealedCredential {
    pub fn info(&self) -> CredentialInfo {
        CredentialInfo {
            id: self.id.clone(),
            hint: self.hint.clone(),
            updated_at: self.updated_at,
            updated_by: self.updated_by.clone(),
        }
    }
}

/// An audit entry to record.
#[derive(Clone, Debug)]
pub struct NewAuditEntry {
    pub actor: String,
    pub action: AuditAction,
    pub target: String,
    pub detail: String,
    pub address: Option<String>,
}

/// A change to an account.
#[derive(Clone, Debug, Default)]
pub struct UserChange {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
}

#[async_trait::async_trait]
pub trait Accounts: Send + Sync {
    async fn count_users(&self) -> Result<i64>;
    /// `Ok(None)` when the login is taken.
    async fn create_user(
        &self,
        login: &Login,
        display_name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<Option<User>>;
    async fn user_by_login(&self, login: &Login) -> Result<Option<UserRecord>>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    /// `Ok(None)` when no such user exists, or the change would leave no
    /// active admin (checked in the same transaction, one such change at a
    /// time: two admins demoting each other at once leave one).
    async fn change_user(&self, id: UserId, change: &UserChange) -> Result<Option<User>>;
    async fn set_last_sign_in(&self, id: UserId, at: DateTime<Utc>) -> Result<()>;

    /// A browser session's record (tower-sessions' JSON), if it has not
    /// expired.
    async fn load_browser_session(&self, id: &str) -> Result<Option<String>>;
    /// Updates a browser session; one that no longer exists stays gone.
    async fn save_browser_session(
        &self,
        id: &str,
        user: Option<UserId>,
        record: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// Inserts a new browser session; `false` if the id exists already.
    async fn create_browser_session(
        &self,
        id: &str,
        user: Option<UserId>,
        record: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool>;
    async fn delete_browser_session(&self, id: &str) -> Result<()>;
    /// Ends every browser session of a user; how many there were.
    async fn delete_browser_sessions_of(&self, user: UserId) -> Result<u64>;

    async fn insert_api_token(&self, user: UserId, token: &ApiToken, sha256: &str) -> Result<()>;
    async fn api_token_by_hash(&self, sha256: &str) -> Result<Option<TokenRecord>>;
    async fn api_token(&self, id: uuid::Uuid) -> Result<Option<TokenRecord>>;
    async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiToken>>;
    /// Revokes the user's live token `id` (every one of theirs: `None`);
    /// how many were.
    async fn revoke_api_tokens(&self, user: UserId, id: Option<uuid::Uuid>) -> Result<u64>;
    async fn touch_api_token(&self, id: uuid::Uuid, at: DateTime<Utc>) -> Result<()>;

    async fn share_level(&self, session: SessionId, user: UserId) -> Result<Option<ShareLevel>>;
    /// The sessions shared with a user, and how.
    async fn shared_with(&self, user: UserId) -> Result<Vec<(SessionId, ShareLevel)>>;
    async fn shares_of(&self, session: SessionId) -> Result<Vec<Share>>;
    async fn set_share(&self, session: SessionId, user: UserId, level: ShareLevel) -> Result<()>;
    /// `false` when it was not shared with them.
    async fn remove_share(&self, session: SessionId, user: UserId) -> Result<bool>;

    async fn credential(&self, id: &CredentialId) -> Result<Option<SealedCredential>>;
    async fn list_credentials(&self) -> Result<Vec<SealedCredential>>;
    /// Saves it if `key_check` is still the master key's check value (the
    /// key it was sealed under), else [`StoreError::KeyChanged`](super::StoreError::KeyChanged).
    async fn put_credential(&self, credential: &SealedCredential, key_check: &str) -> Result<()>;
    /// `false` when there was none.
    async fn delete_credential(&self, id: &CredentialId) -> Result<bool>;
    /// Rotates the master key in one transaction: the check value goes from
    /// `old_check` to `new_check` first ([`StoreError::KeyChanged`](super::StoreError::KeyChanged)
    /// if it was not `old_check`), holding it, then every credential's,
    /// trigger's and notification endpoint's sealed value is read and
    /// written again as `reseal` makes it. A save waiting on the check
    /// finds it changed; one that held it first is read. Returns how many
    /// credentials.
    async fn rotate_master_key(
        &self,
        old_check: &str,
        new_check: &str,
        reseal: &dyn Reseal,
    ) -> Result<usize>;

    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<()>;
    /// The newest entries first, those with `id < before` when given.
    async fn audit_log(&self, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>>;
}
