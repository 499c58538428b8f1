//! [`Accounts`] in SQL.

use super::{hold_key_check, timestamp, SqlStore, StoredTime};
use crate::store::accounts::{
    Accounts, NewAuditEntry, Reseal, SealedCredential, TokenRecord, UserChange, UserRecord,
    MASTER_KEY_CHECK,
};
use crate::store::{Result, StoreError};
use app::accounts::{ApiToken, AuditEntry, CredentialId, Login, Role, Share, ShareLevel, User};
use app::domain::{SessionId, UserId};
use chrono::{DateTime, Utc};

const USER_COLUMNS: &str =
    "id, login, display_name, role, password_hash, disabled, created_at, last_sign_in_at";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    login: String,
    display_name: String,
    role: String,
    password_hash: String,
    disabled: i64,
    created_at: StoredTime,
    last_sign_in_at: Option<StoredTime>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl TryFrom<UserRow> for UserRecord {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self> {
        Ok(UserRecord {
            user: User {
                id: r.id.parse().map_err(|e| corrupt("user id", e))?,
                role: r.role.parse().map_err(|e| corrupt("user role", e))?,
                login: r.login,
                display_name: r.display_name,
                disabled: r.disabled != 0,
                created_at: r.created_at.into(),
                last_sign_in_at: r.last_sign_in_at.map(Into::into),
            },
            password_hash: r.password_hash,
        })
    }
}

const TOKEN_COLUMNS: &str = "id, user_id, name, created_at, expires_at, last_used_at, revoked_at";

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    user_id: String,
    name: String,
    created_at: StoredTime,
    expires_at: Option<StoredTime>,
    last_used_at: Option<StoredTime>,
    revoked_at: Option<StoredTime>,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self> {
        Ok(TokenRecord {
            token: ApiToken {
                id: r.id.parse().map_err(|e| corrupt("token id", e))?,
                name: r.name,
                created_at: r.created_at.into(),
                expires_at: r.expires_at.map(Into::into),
                last_used_at: r.last_used_at.map(Into::into),
                revoked_at: r.revoked_at.map(Into::into),
            },
            user: r.user_id.parse().map_err(|e| corrupt("token user", e))?,
        })
    }
}

const CREDENTIAL_COLUMNS: &str =
    "scope, kind, name, nonce, ciphertext, hint, updated_at, updated_by";

#[derive(sqlx::FromRow)]
struct CredentialRow {
    scope: String,
    kind: String,
    name: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    hint: String,
    updated_at: StoredTime,
    updated_by: String,
}

impl TryFrom<CredentialRow> for SealedCredential {
    type Error = StoreError;
    fn try_from(r: CredentialRow) -> Result<Self> {
        Ok(SealedCredential {
            id: CredentialId {
                scope: r
                    .scope
                    .parse()
                    .map_err(|e| corrupt("credential scope", e))?,
                kind: r.kind.parse().map_err(|e| corrupt("credential kind", e))?,
                name: r.name,
            },
            nonce: r.nonce,
            ciphertext: r.ciphertext,
            hint: r.hint,
            updated_at: r.updated_at.into(),
            updated_by: r.updated_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: StoredTime,
    actor: String,
    action: String,
    target: String,
    detail: String,
    address: Option<String>,
}

fn optional_timestamp(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(timestamp)
}

#[async_trait::async_trait]
impl Accounts for SqlStore {
    async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn create_user(
        &self,
        login: &Login,
        display_name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "INSERT INTO users (id, login, display_name, role, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (login) DO NOTHING RETURNING {USER_COLUMNS}"
        ))
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(login.as_str())
        .bind(display_name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(timestamp(Utc::now()))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| UserRecord::try_from(r).map(|r| r.user))
            .transpose()
    }

    async fn user_by_login(&self, login: &Login) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE login = $1"
        ))
        .bind(login.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(UserRecord::try_from).transpose()
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(UserRecord::try_from).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows: Vec<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY login"))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| UserRecord::try_from(r).map(|r| r.user))
            .collect()
    }

    async fn change_user(&self, id: UserId, change: &UserChange) -> Result<Option<User>> {
        let mut tx = self.pool.begin().await?;
        // One change of roles at a time: a write to one row, which both
        // databases hold to the transaction's end (SQLite: the database).
        // The update's own read of the other admins then sees any change
        // made before it.
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('admins_lock', '') \
             ON CONFLICT (key) DO UPDATE SET value = meta.value",
        )
        .execute(&mut *tx)
        .await?;
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET display_name = COALESCE($1, display_name), role = COALESCE($2, role), \
             disabled = COALESCE($3, disabled), password_hash = COALESCE($4, password_hash) \
             WHERE id = $5 AND (NOT (role = 'admin' AND disabled = 0) \
               OR (COALESCE($2, role) = 'admin' AND COALESCE($3, disabled) = 0) \
               OR EXISTS (SELECT 1 FROM users o WHERE o.role = 'admin' AND o.disabled = 0 \
                          AND o.id <> $5)) \
             RETURNING {USER_COLUMNS}"
        ))
        .bind(change.display_name.as_deref())
        .bind(change.role.map(Role::as_str))
        .bind(change.disabled.map(i64::from))
        .bind(change.password_hash.as_deref())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|r| UserRecord::try_from(r).map(|r| r.user))
            .transpose()
    }

    async fn set_last_sign_in(&self, id: UserId, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE users SET last_sign_in_at = $1 WHERE id = $2")
            .bind(timestamp(at))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn load_browser_session(&self, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT record FROM browser_sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(timestamp(Utc::now()))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn save_browser_session(
        &self,
        id: &str,
        user: Option<UserId>,
        record: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE browser_sessions SET user_id = $1, record = $2, expires_at = $3 WHERE id = $4",
        )
        .bind(user.map(|u| u.to_string()))
        .bind(record)
        .bind(timestamp(expires_at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create_browser_session(
        &self,
        id: &str,
        user: Option<UserId>,
        record: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO browser_sessions (id, user_id, record, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(user.map(|u| u.to_string()))
        .bind(record)
        .bind(timestamp(expires_at))
        .execute(&self.pool)
        .await?;
        // Expired sessions go as new ones come, so the table stays small.
        sqlx::query("DELETE FROM browser_sessions WHERE expires_at <= $1")
            .bind(timestamp(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_browser_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM browser_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_browser_sessions_of(&self, user: UserId) -> Result<u64> {
        let done = sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_api_token(&self, user: UserId, token: &ApiToken, sha256: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_sha256, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.id.to_string())
        .bind(user.to_string())
        .bind(&token.name)
        .bind(sha256)
        .bind(timestamp(token.created_at))
        .bind(optional_timestamp(token.expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_token_by_hash(&self, sha256: &str) -> Result<Option<TokenRecord>> {
        let row: Option<TokenRow> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_sha256 = $1"
        ))
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TokenRecord::try_from).transpose()
    }

    async fn api_token(&self, id: uuid::Uuid) -> Result<Option<TokenRecord>> {
        let row: Option<TokenRow> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(TokenRecord::try_from).transpose()
    }

    async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC"
        ))
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| TokenRecord::try_from(r).map(|r| r.token))
            .collect()
    }

    async fn revoke_api_tokens(&self, user: UserId, id: Option<uuid::Uuid>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE ($2 = '' OR id = $2) AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(timestamp(Utc::now()))
        .bind(id.map(|id| id.to_string()).unwrap_or_default())
        .bind(user.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn touch_api_token(&self, id: uuid::Uuid, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(timestamp(at))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn share_level(&self, session: SessionId, user: UserId) -> Result<Option<ShareLevel>> {
        let level: Option<String> = sqlx::query_scalar(
            "SELECT level FROM session_shares WHERE session_id = $1 AND user_id = $2",
        )
        .bind(session.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await?;
        level
            .map(|l| l.parse().map_err(|e| corrupt("share level", e)))
            .transpose()
    }

    async fn shared_with(&self, user: UserId) -> Result<Vec<(SessionId, ShareLevel)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT session_id, level FROM session_shares WHERE user_id = $1")
                .bind(user.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(s, l)| {
                Ok((
                    s.parse().map_err(|e| corrupt("share session", e))?,
                    l.parse().map_err(|e| corrupt("share level", e))?,
                ))
            })
            .collect()
    }

    async fn shares_of(&self, session: SessionId) -> Result<Vec<Share>> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT u.id, u.login, u.display_name, s.level FROM session_shares s \
             JOIN users u ON u.id = s.user_id WHERE s.session_id = $1 ORDER BY u.login",
        )
        .bind(session.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, login, display_name, level)| {
                Ok(Share {
                    session,
                    user: id.parse().map_err(|e| corrupt("share user", e))?,
                    login,
                    display_name,
                    level: level.parse().map_err(|e| corrupt("share level", e))?,
                })
            })
            .collect()
    }

    async fn set_share(&self, session: SessionId, user: UserId, level: ShareLevel) -> Result<()> {
        sqlx::query(
            "INSERT INTO session_shares (session_id, user_id, level, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (session_id, user_id) DO UPDATE SET level = excluded.level",
        )
        .bind(session.to_string())
        .bind(user.to_string())
        .bind(level.as_str())
        .bind(timestamp(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_share(&self, session: SessionId, user: UserId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM session_shares WHERE session_id = $1 AND user_id = $2")
            .bind(session.to_string())
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn credential(&self, id: &CredentialId) -> Result<Option<SealedCredential>> {
        let row: Option<CredentialRow> = sqlx::query_as(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials \
             WHERE scope = $1 AND kind = $2 AND name = $3"
        ))
        .bind(id.scope.to_string())
        .bind(id.kind.as_str())
        .bind(&id.name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(SealedCredential::try_from).transpose()
    }

    async fn list_credentials(&self) -> Result<Vec<SealedCredential>> {
        let rows: Vec<CredentialRow> = sqlx::query_as(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY scope, kind, name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(SealedCredential::try_from).collect()
    }

    async fn put_credential(&self, c: &SealedCredential, key_check: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        hold_key_check(&mut tx, key_check).await?;
        put_credential_in(&mut *tx, c).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_credential(&self, id: &CredentialId) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM credentials WHERE scope = $1 AND kind = $2 AND name = $3")
                .bind(id.scope.to_string())
                .bind(id.kind.as_str())
                .bind(&id.name)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate_master_key(
        &self,
        old_check: &str,
        new_check: &str,
        reseal: &dyn Reseal,
    ) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let held = sqlx::query("UPDATE meta SET value = $1 WHERE key = $2 AND value = $3")
            .bind(new_check)
            .bind(MASTER_KEY_CHECK)
            .bind(old_check)
            .execute(&mut *tx)
            .await?;
        if held.rows_affected() == 0 {
            return Err(StoreError::KeyChanged);
        }
        let credentials: Vec<CredentialRow> =
            sqlx::query_as(&format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials"))
                .fetch_all(&mut *tx)
                .await?;
        let count = credentials.len();
        for row in credentials {
            let c = SealedCredential::try_from(row)?;
            let (nonce, ciphertext) = reseal.credential(&c).map_err(StoreError::Corrupt)?;
            sqlx::query(
                "UPDATE credentials SET nonce = $1, ciphertext = $2 \
                 WHERE scope = $3 AND kind = $4 AND name = $5",
            )
            .bind(nonce)
            .bind(ciphertext)
            .bind(c.id.scope.to_string())
            .bind(c.id.kind.as_str())
            .bind(&c.id.name)
            .execute(&mut *tx)
            .await?;
        }
        let triggers: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT id, secret, previous_secret FROM triggers")
                .fetch_all(&mut *tx)
                .await?;
        for (id, secret, previous) in triggers {
            let parsed = id.parse().map_err(|e| corrupt("trigger id", &e))?;
            let reseal = |sealed: &str| reseal.trigger_secret(parsed, sealed);
            // Every sealed value, expired or not: all are sealed again.
            sqlx::query("UPDATE triggers SET secret = $1, previous_secret = $2 WHERE id = $3")
                .bind(reseal(&secret).map_err(StoreError::Corrupt)?)
                .bind(
                    previous
                        .as_deref()
                        .map(reseal)
                        .transpose()
                        .map_err(StoreError::Corrupt)?,
                )
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        let endpoints: Vec<(String, String)> =
            sqlx::query_as("SELECT id, secret FROM notification_endpoints")
                .fetch_all(&mut *tx)
                .await?;
        for (id, secret) in endpoints {
            let parsed = id.parse().map_err(|e| corrupt("endpoint id", &e))?;
            sqlx::query("UPDATE notification_endpoints SET secret = $1 WHERE id = $2")
                .bind(
                    reseal
                        .endpoint_secret(parsed, &secret)
                        .map_err(StoreError::Corrupt)?,
                )
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(count)
    }

    async fn record_audit(&self, e: &NewAuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, detail, address) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(timestamp(Utc::now()))
        .bind(&e.actor)
        .bind(e.action.as_str())
        .bind(&e.target)
        .bind(&e.detail)
        .bind(e.address.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_log(&self, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, at, actor, action, target, detail, address FROM audit_log \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.id,
                    at: r.at.into(),
                    action: r.action.parse().map_err(|e| corrupt("audit action", e))?,
                    actor: r.actor,
                    target: r.target,
                    detail: r.detail,
                    address: r.address,
                })
            })
            .collect()
    }
}

async fn put_credential_in<'e, E>(executor: E, c: &SealedCredential) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO credentials (scope, kind, name, nonce, ciphertext, hint, updated_at, \
         updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (scope, kind, name) DO UPDATE SET \
         nonce = excluded.nonce, ciphertext = excluded.ciphertext, hint = excluded.hint, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(c.id.scope.to_string())
    .bind(c.id.kind.as_str())
    .bind(&c.id.name)
    .bind(&c.nonce)
    .bind(&c.ciphertext)
    .bind(&c.hint)
    .bind(timestamp(c.updated_at))
    .bind(&c.updated_by)
    .execute(executor)
    .await?;
    Ok(())
}
