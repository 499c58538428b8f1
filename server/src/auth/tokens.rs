//! Personal access tokens for scripts: `pdk_` and 256 random bits, shown
//! once at creation and stored as their SHA-256; named, with an optional
//! expiry and the time of their last use; revoked at once (the next
//! request fails, and an open stream made with one ends).

use super::{Auth, Identity, Via};
use crate::secret;
use app::accounts::{
    ApiToken, AuditAction, Caller, ListedToken, NewApiToken, TOKEN_NAME_MAX_CHARS,
};
use app::domain::AppError;
use axum::http::{header, HeaderMap};
use chrono::Utc;
use std::net::IpAddr;

/// What every token starts with, so it is recognised in a leak scan.
pub const TOKEN_PREFIX: &str = "pdk_";
/// Longest expiry a token may get, in days.
const MAX_EXPIRY_DAYS: i64 = 366;
/// Tokens one person may have in use (not revoked, not expired).
const TOKENS_PER_PERSON: usize = 100;
/// How stale a token's "last used" may get before a request updates it.
const LAST_USED_REFRESH: chrono::Duration = chrono::Duration::minutes(1);

fn refused() -> AppError {
    AppError::Unauthenticated(
        "The API token is not valid: it is unknown, revoked or expired.".into(),
    )
}

/// The API token an `Authorization: Bearer pdk_…` header carries. Other
/// credentials in that header (a proxy's `Basic`, an identity provider's
/// bearer token passed on) are not Paddock's: they leave the request to its
/// cookie.
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.starts_with(TOKEN_PREFIX)).then_some(token)
}

fn signed_in_user(caller: &Caller) -> Result<app::domain::UserId, AppError> {
    caller.user.ok_or_else(|| {
        AppError::Invalid("Sign-in is off: tokens belong to accounts, and there are none.".into())
    })
}

impl Auth {
    /// The caller an API token names.
    pub(super) async fn by_token(&self, token: &str) -> Result<Identity, AppError> {
        let record = self
            .store
            .api_token_by_hash(&secret::sha256_hex(token))
            .await?
            .ok_or_else(refused)?;
        let now = Utc::now();
        if !record.token.is_live(now) {
            return Err(refused());
        }
        let user = self
            .store
            .user_by_id(record.user)
            .await?
            .filter(|u| !u.user.disabled)
            .ok_or_else(refused)?;
        if record
            .token
            .last_used_at
            .is_none_or(|at| now - at > LAST_USED_REFRESH)
        {
            // Only a note: a request is not refused for it (a full disk
            // would refuse every one, as each would try again).
            if let Err(e) = self.store.touch_api_token(record.token.id, now).await {
                tracing::warn!(token = %record.token.id, "cannot note when a token was last used: {e}");
            }
        }
        Ok(Identity {
            caller: user.user.caller(),
            via: Via::Token(record.token.id),
        })
    }

    /// Creates a token for the caller; its secret is in the answer only.
    pub async fn create_token(
        &self,
        caller: &Caller,
        name: &str,
        expires_in_days: Option<i64>,
        address: Option<IpAddr>,
    ) -> Result<NewApiToken, AppError> {
        let user = signed_in_user(caller)?;
        let name = app::domain::check_name_within("token", name, TOKEN_NAME_MAX_CHARS)?;
        let expires_at = match expires_in_days {
            None => None,
            Some(days) if (1..=MAX_EXPIRY_DAYS).contains(&days) => {
                Some(Utc::now() + chrono::Duration::days(days))
            }
            Some(_) => {
                return Err(AppError::Invalid(format!(
                    "A token expires in 1 to {MAX_EXPIRY_DAYS} days, or never."
                )))
            }
        };
        let now = Utc::now();
        let tokens = self.store.list_api_tokens(user).await?;
        if tokens.iter().filter(|t| t.is_live(now)).count() >= TOKENS_PER_PERSON {
            return Err(AppError::Conflict(format!(
                "A person has at most {TOKENS_PER_PERSON} tokens in use: revoke one first."
            )));
        }
        let secret = format!("{TOKEN_PREFIX}{}", secret::random_hex());
        let token = ApiToken {
            id: uuid::Uuid::now_v7(),
            name,
            created_at: Utc::now(),
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        self.store
            .insert_api_token(user, &token, &secret::sha256_hex(&secret))
            .await?;
        self.audit(
            &caller.label(),
            AuditAction::TokenCreated,
            &token.name,
            &format!("id {}", token.id),
            address,
        )
        .await;
        Ok(NewApiToken { token, secret })
    }

    pub async fn list_tokens(&self, caller: &Caller) -> Result<Vec<ListedToken>, AppError> {
        let now = Utc::now();
        Ok(self
            .store
            .list_api_tokens(signed_in_user(caller)?)
            .await?
            .into_iter()
            .map(|token| ListedToken {
                live: token.is_live(now),
                token,
            })
            .collect())
    }

    /// Revokes one of the caller's own tokens; open streams made with it end.
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        id: uuid::Uuid,
        address: Option<IpAddr>,
    ) -> Result<(), AppError> {
        let user = signed_in_user(caller)?;
        if self.store.revoke_api_tokens(user, Some(id)).await? == 0 {
            return Err(AppError::NotFound(format!("Live token {id}")));
        }
        self.hub.access_changed(user);
        self.audit(
            &caller.label(),
            AuditAction::TokenRevoked,
            &id.to_string(),
            "",
            address,
        )
        .await;
        Ok(())
    }
}
