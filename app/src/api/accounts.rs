//! Server functions for accounts: who is signed in, sharing, users, API
//! tokens, saved credentials and the audit log. Sign-in itself is not here:
//! it sets a cookie, so it is a plain form post to the server's `/auth/…`
//! routes, which works before (and without) the page's JavaScript.

#[cfg(feature = "ssr")]
use super::ssr;
use super::UrlInJsonOut;
use crate::accounts::{
    AuditEntry, Caller, CredentialInfo, ListedToken, NewApiToken, SessionPeople, Share, User,
};
#[cfg(feature = "ssr")]
use crate::accounts::{CredentialId, CredentialScope};
use crate::domain::AppError;
use leptos::prelude::*;

/// The signed-in caller, `None` for an anonymous visitor: one of the two
/// server functions the door serves without sign-in, and it tells nothing
/// else.
#[server(endpoint = "whoami", output = UrlInJsonOut)]
pub async fn whoami() -> Result<Option<Caller>, AppError> {
    Ok(ssr::signed_in())
}

/// Whether `token` opens the first-admin setup (the other server function
/// open to anonymous visitors: the setup page asks it before showing its
/// form). It tells only whether this token is that one.
#[server(endpoint = "setup_link", output = UrlInJsonOut)]
pub async fn setup_link_open(token: String) -> Result<bool, AppError> {
    Ok(ssr::backend()?.setup_link_open(&token))
}

#[server(endpoint = "session_people", output = UrlInJsonOut)]
pub async fn get_session_people(id: String) -> Result<SessionPeople, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .session_people(&ssr::caller()?, ssr::parse_id(&id)?)
                .await
        }
        .await,
    )
}

/// Shares a session with a login, as `watch` or `operate`; `none` stops
/// sharing it with them.
#[server(endpoint = "share_session", output = UrlInJsonOut)]
pub async fn share_session(
    id: String,
    login: String,
    level: String,
) -> Result<Vec<Share>, AppError> {
    ssr::respond(
        async {
            let level = match level.as_str() {
                "none" => None,
                other => Some(other.parse()?),
            };
            ssr::backend()?
                .share_session(&ssr::caller()?, ssr::parse_id(&id)?, login, level)
                .await
        }
        .await,
    )
}

#[server(endpoint = "list_users", output = UrlInJsonOut)]
pub async fn list_users() -> Result<Vec<User>, AppError> {
    ssr::respond(async { ssr::backend()?.list_users(&ssr::caller()?).await }.await)
}

#[server(endpoint = "add_user", output = UrlInJsonOut)]
pub async fn add_user(
    login: String,
    display_name: String,
    role: String,
    password: String,
) -> Result<User, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .add_user(
                    &ssr::caller()?,
                    login,
                    display_name,
                    role.parse()?,
                    password,
                )
                .await
        }
        .await,
    )
}

/// Changes a user's role and whether they may sign in; empty fields keep
/// what is there.
#[server(endpoint = "change_user", output = UrlInJsonOut)]
pub async fn change_user(
    id: String,
    role: Option<String>,
    disabled: Option<String>,
) -> Result<User, AppError> {
    ssr::respond(
        async {
            let role = role
                .filter(|r| !r.is_empty())
                .map(|r| r.parse())
                .transpose()?;
            let disabled = match disabled.as_deref() {
                None | Some("") => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(other) => {
                    return Err(AppError::Invalid(format!(
                        "disabled is true or false, not {other:?}"
                    )))
                }
            };
            ssr::backend()?
                .change_user(&ssr::caller()?, ssr::parse_user(&id)?, role, disabled)
                .await
        }
        .await,
    )
}

#[server(endpoint = "reset_password", output = UrlInJsonOut)]
pub async fn reset_password(id: String, password: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .reset_password(&ssr::caller()?, ssr::parse_user(&id)?, password)
                .await
        }
        .await,
    )
}

#[server(endpoint = "list_tokens", output = UrlInJsonOut)]
pub async fn list_tokens() -> Result<Vec<ListedToken>, AppError> {
    ssr::respond(async { ssr::backend()?.list_tokens(&ssr::caller()?).await }.await)
}

/// Creates an API token; `expires_in_days` empty means never.
#[server(endpoint = "create_token", output = UrlInJsonOut)]
pub async fn create_token(
    name: String,
    expires_in_days: Option<String>,
) -> Result<NewApiToken, AppError> {
    ssr::respond(
        async {
            let days =
                match expires_in_days.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(d) => Some(d.parse().map_err(|_| {
                        AppError::Invalid(format!("{d:?} is not a number of days."))
                    })?),
                };
            ssr::backend()?
                .create_token(&ssr::caller()?, name, days)
                .await
        }
        .await,
    )
}

#[server(endpoint = "revoke_token", output = UrlInJsonOut)]
pub async fn revoke_token(id: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            let id = id
                .parse()
                .map_err(|_| AppError::NotFound(format!("Token {id:?}")))?;
            ssr::backend()?.revoke_token(&ssr::caller()?, id).await
        }
        .await,
    )
}

#[server(endpoint = "list_credentials", output = UrlInJsonOut)]
pub async fn list_credentials() -> Result<Vec<CredentialInfo>, AppError> {
    ssr::respond(async { ssr::backend()?.list_credentials(&ssr::caller()?).await }.await)
}

/// Whose a credential is, as the form says it: `server`, or `mine`.
#[cfg(feature = "ssr")]
fn scope_of(caller: &Caller, scope: &str) -> Result<CredentialScope, AppError> {
    match scope {
        "server" => Ok(CredentialScope::Server),
        "mine" => caller.user.map(CredentialScope::User).ok_or_else(|| {
            AppError::Invalid("Sign-in is off: save the server's credential instead.".into())
        }),
        other => Err(AppError::Invalid(format!(
            "A credential belongs to \"server\" or \"mine\", not {other:?}."
        ))),
    }
}

/// The credential a form names: its scope as the form says it, its kind,
/// and a secret's name.
#[cfg(feature = "ssr")]
fn credential_of(
    caller: &Caller,
    scope: &str,
    kind: &str,
    name: Option<String>,
) -> Result<CredentialId, AppError> {
    Ok(CredentialId {
        scope: scope_of(caller, scope)?,
        kind: kind.parse()?,
        name: name.unwrap_or_default().trim().to_owned(),
    })
}

#[server(endpoint = "save_credential", output = UrlInJsonOut)]
pub async fn save_credential(
    scope: String,
    kind: String,
    #[server(default)] name: Option<String>,
    value: String,
) -> Result<CredentialInfo, AppError> {
    ssr::respond(
        async {
            let caller = ssr::caller()?;
            let id = credential_of(&caller, &scope, &kind, name)?;
            ssr::backend()?.save_credential(&caller, id, value).await
        }
        .await,
    )
}

#[server(endpoint = "delete_credential", output = UrlInJsonOut)]
pub async fn delete_credential(
    scope: String,
    kind: String,
    #[server(default)] name: Option<String>,
) -> Result<(), AppError> {
    ssr::respond(
        async {
            let caller = ssr::caller()?;
            let id = credential_of(&caller, &scope, &kind, name)?;
            ssr::backend()?.delete_credential(&caller, id).await
        }
        .await,
    )
}

#[server(endpoint = "audit_log", output = UrlInJsonOut)]
pub async fn audit_log(before: Option<i64>) -> Result<Vec<AuditEntry>, AppError> {
    ssr::respond(async { ssr::backend()?.audit_log(&ssr::caller()?, before).await }.await)
}
