//! Accounts as admins (and the `paddock user` command) manage them:
//! adding, changing roles, disabling and resetting passwords. Every change
//! is audited, and one that takes access away ends the person's browser
//! sessions and open streams at once. The last active admin cannot be
//! demoted or disabled, so a Paddock always has someone who can manage it.

use super::{password, Auth};
use crate::store::accounts::UserChange;
use crate::store::StoreError;
use app::accounts::{check_new_password, display_name, AuditAction, Login, Role, User};
use app::domain::{AppError, Session, UserId};
use std::net::IpAddr;

fn no_such_user(id: UserId) -> AppError {
    AppError::NotFound(format!("User {id}"))
}

fn last_admin() -> AppError {
    AppError::Invalid("This is the last active admin: make someone else an admin first.".into())
}

impl Auth {
    /// Adds an account; `actor` says who did it, for the audit log.
    pub async fn add_user(
        &self,
        actor: &str,
        login: &str,
        name: &str,
        role: Role,
        new_password: &str,
        address: Option<IpAddr>,
    ) -> Result<User, AppError> {
        let login: Login = login.parse()?;
        let name = display_name(name, &login)?;
        check_new_password(new_password)?;
        let hash = password::hash(new_password.to_owned()).await?;
        let user = self
            .store
            .create_user(&login, &name, role, &hash)
            .await?
            .ok_or_else(|| AppError::Conflict(format!("The login {login} is taken.")))?;
        self.audit(
            actor,
            AuditAction::UserCreated,
            &login.to_string(),
            role.as_str(),
            address,
        )
        .await;
        Ok(user)
    }

    pub async fn list_users(&self) -> Result<Vec<User>, AppError> {
        Ok(self.store.list_users().await?)
    }

    /// `user` as the one whose sessions run, if they still may run
    /// sessions (an account that is not disabled, nor a viewer's).
    pub async fn runner(&self, user: UserId) -> Result<Option<User>, StoreError> {
        Ok(self
            .store
            .user_by_id(user)
            .await?
            .map(|r| r.user)
            .filter(|u| !u.disabled && u.caller().may_create_sessions().is_ok()))
    }

    /// Refuses to run anything in a session whose owner may no longer run
    /// sessions (disabled, or made a viewer): what runs there runs on the
    /// owner's model key, secrets and git token, whoever it is shared with.
    pub async fn owner_may_run(&self, session: &Session) -> Result<(), AppError> {
        let Some(owner) = session.owner else {
            return Ok(());
        };
        match self.runner(owner).await? {
            Some(_) => Ok(()),
            None => Err(AppError::Conflict(
                "The session's owner cannot run sessions any more (disabled, or a viewer): \
                 nothing runs on their credentials. An admin may delete the session."
                    .into(),
            )),
        }
    }

    pub async fn user_by_login(&self, login: &str) -> Result<User, AppError> {
        let login: Login = login.parse()?;
        self.store
            .user_by_login(&login)
            .await?
            .map(|r| r.user)
            .ok_or_else(|| AppError::NotFound(format!("User {login}")))
    }

    /// Sets `user`'s password, ending their browser sessions; its hash.
    pub(super) async fn set_password(
        &self,
        user: UserId,
        new_password: &str,
    ) -> Result<String, AppError> {
        check_new_password(new_password)?;
        let hash = password::hash(new_password.to_owned()).await?;
        let change = UserChange {
            password_hash: Some(hash.clone()),
            ..UserChange::default()
        };
        self.store
            .change_user(user, &change)
            .await?
            .ok_or_else(|| no_such_user(user))?;
        self.store.delete_browser_sessions_of(user).await?;
        self.hub.access_changed(user);
        Ok(hash)
    }

    /// Sets someone's password (an admin, or the command line), as when
    /// it may be known to someone else: their browser sessions end, and
    /// their API tokens are revoked (one made with the password would
    /// outlive it).
    pub async fn reset_password(
        &self,
        actor: &str,
        user: UserId,
        new_password: &str,
        address: Option<IpAddr>,
    ) -> Result<(), AppError> {
        let login = self
            .store
            .user_by_id(user)
            .await?
            .ok_or_else(|| no_such_user(user))?
            .user
            .login;
        self.set_password(user, new_password).await?;
        let revoked = self.store.revoke_api_tokens(user, None).await?;
        self.hub.access_changed(user);
        self.audit(
            actor,
            AuditAction::UserChanged,
            &login,
            &format!("password reset, {revoked} API tokens revoked"),
            address,
        )
        .await;
        Ok(())
    }

    /// Changes someone's name, role or whether they may sign in.
    pub async fn change_user(
        &self,
        actor: &str,
        user: UserId,
        mut change: UserChange,
        address: Option<IpAddr>,
    ) -> Result<User, AppError> {
        change.password_hash = None;
        let before = self
            .store
            .user_by_id(user)
            .await?
            .ok_or_else(|| no_such_user(user))?
            .user;
        if let Some(name) = &change.display_name {
            change.display_name = Some(display_name(name, &before.login.parse()?)?);
        }
        let Some(after) = self.store.change_user(user, &change).await? else {
            // Gone meanwhile, or the last active admin (the store checks
            // that with the change, so two admins demoting each other at
            // once leave one).
            return Err(match self.store.user_by_id(user).await? {
                Some(_) => last_admin(),
                None => no_such_user(user),
            });
        };
        if after.disabled {
            self.store.delete_browser_sessions_of(user).await?;
        }
        self.hub.access_changed(user);
        let detail = format!(
            "role {} → {}, disabled {} → {}",
            before.role, after.role, before.disabled, after.disabled
        );
        self.audit(
            actor,
            AuditAction::UserChanged,
            &after.login,
            &detail,
            address,
        )
        .await;
        Ok(after)
    }
}
