//! Notifications (see [`app::notifications`]): endpoints that hear when a
//! template's sessions (those of its owner), or one session, finish, fail
//! or ask for permission. A template's owner sets up its endpoints, signed
//! in; whoever may operate a session sets up that session's; only an
//! endpoint's maker (and an admin) sees it (a URL may be a secret of its
//! own), and it is told only while its maker may operate the session. Each endpoint
//! has a `whsec_` secret, shown once, sealed under the master key; its
//! messages are made from the sessions' event logs through a cursor of its
//! own ([`sender`]), never from what is broadcast live, so none is lost to
//! a restart, and are signed per Standard Webhooks.

mod client;
mod message;
pub mod sender;

use crate::paddock::Paddock;
use crate::store::notifications::{Redelivery, ENDPOINTS_MAX};
use crate::triggers::standard_webhooks;
use crate::vault::SecretOf;
use app::accounts::{Access, AuditAction, Caller};
use app::domain::AppError;
use app::notifications::{Endpoint, EndpointDraft, EndpointId, EndpointSecret, Message, Scope};
use chrono::Utc;

impl Paddock {
    /// Whether messages may go to loopback and private addresses: with
    /// sign-in off (one person's own machine), or where the operator
    /// allows it.
    fn private_notifications(&self) -> bool {
        self.config.notify_private_networks || !self.auth.enabled()
    }

    /// Refuses anyone who may not set up endpoints for `scope`: a
    /// template's are its owner's, signed in; a session's, whoever may
    /// operate it.
    async fn may_notify(&self, caller: &Caller, scope: Scope) -> Result<(), AppError> {
        match scope {
            Scope::Template(id) => self.as_template_owner(caller, id).await.map(drop),
            Scope::Session(id) => self
                .session_for(caller, id, Access::Operate)
                .await
                .map(drop),
        }
    }

    /// Refuses anyone who may not see endpoints of `scope`: an admin sees
    /// every scope's; anyone else, those of a scope they may set up
    /// endpoints for.
    async fn may_see(&self, caller: &Caller, scope: Scope) -> Result<(), AppError> {
        if !caller.is_admin() {
            return self.may_notify(caller, scope).await;
        }
        match scope {
            Scope::Template(id) => self.templates.get(caller, id).await.map(drop),
            Scope::Session(id) => self.session_for(caller, id, Access::Watch).await.map(drop),
        }
    }

    /// Whether the endpoint is the caller's to see and manage: its maker's
    /// (its URL may be a secret of its own), or an admin's.
    fn made_by(endpoint: &Endpoint, caller: &Caller) -> bool {
        endpoint.owner == caller.user || caller.is_admin()
    }

    /// The endpoint, if the caller may manage it; to anyone else, there is
    /// none.
    async fn endpoint_for(&self, caller: &Caller, id: EndpointId) -> Result<Endpoint, AppError> {
        let not_found = || AppError::NotFound(format!("Notification endpoint {id}"));
        let (endpoint, _) = self.store.get_endpoint(id).await?.ok_or_else(not_found)?;
        if !Self::made_by(&endpoint, caller) {
            return Err(not_found());
        }
        self.may_see(caller, endpoint.scope)
            .await
            .map_err(|_| not_found())?;
        Ok(endpoint)
    }

    async fn audit_endpoint(&self, caller: &Caller, id: EndpointId, what: &str) {
        self.auth
            .audit(
                &caller.label(),
                AuditAction::NotificationChanged,
                &id.to_string(),
                what,
                caller.address,
            )
            .await;
    }

    pub async fn endpoints_of(
        &self,
        caller: &Caller,
        scope: Scope,
    ) -> Result<Vec<Endpoint>, AppError> {
        self.may_see(caller, scope).await?;
        let all = self.store.list_endpoints(scope).await?;
        Ok(all
            .into_iter()
            .filter(|e| Self::made_by(e, caller))
            .collect())
    }

    /// A new endpoint with its secret (shown this once).
    pub async fn add_endpoint(
        &self,
        caller: &Caller,
        scope: Scope,
        draft: EndpointDraft,
    ) -> Result<EndpointSecret, AppError> {
        self.may_notify(caller, scope).await?;
        // A template's endpoints hear of sessions that run as its owner: a
        // viewer (who runs none) makes none, and keeps removing theirs.
        if matches!(scope, Scope::Template(_)) {
            caller.may_create_sessions()?;
        }
        let draft = draft.validate()?;
        // Counted per maker: the endpoints someone else made here, which
        // the caller cannot see, take none of the caller's places.
        let made = self.store.list_endpoints(scope).await?;
        if made.iter().filter(|e| e.owner == caller.user).count() >= ENDPOINTS_MAX {
            return Err(AppError::Conflict(format!(
                "At most {ENDPOINTS_MAX} notification endpoints each: delete one first."
            )));
        }
        if let Some(why) = client::refused_address(&draft.url, self.private_notifications()) {
            return Err(AppError::Invalid(format!(
                "{why}; PADDOCK_NOTIFY_PRIVATE_NETWORKS=true lets them go to this network."
            )));
        }
        let id = uuid::Uuid::now_v7();
        let secret = standard_webhooks::new_secret();
        let sealed = self.vault.seal_secret(SecretOf::Endpoint(id), &secret)?;
        let endpoint = self
            .store
            .create_endpoint(id, scope, caller.user, &draft, &sealed, &caller.label())
            .await?;
        // Its host only: a URL's path or user part may be its secret.
        let host = client::host_of(&draft.url).unwrap_or_default();
        self.audit_endpoint(caller, id, &format!("created for {host}"))
            .await;
        Ok(EndpointSecret { endpoint, secret })
    }

    pub async fn remove_endpoint(&self, caller: &Caller, id: EndpointId) -> Result<(), AppError> {
        self.endpoint_for(caller, id).await?;
        if !self.store.delete_endpoint(id).await? {
            return Err(AppError::NotFound(format!("Notification endpoint {id}")));
        }
        self.audit_endpoint(caller, id, "deleted").await;
        Ok(())
    }

    pub async fn endpoint_messages(
        &self,
        caller: &Caller,
        id: EndpointId,
    ) -> Result<Vec<Message>, AppError> {
        self.endpoint_for(caller, id).await?;
        Ok(self.store.messages(id).await?)
    }

    /// Sends a message again, in its turn: the endpoint's sender takes it
    /// next.
    pub async fn redeliver_message(
        &self,
        caller: &Caller,
        id: EndpointId,
        message: &str,
    ) -> Result<(), AppError> {
        self.endpoint_for(caller, id).await?;
        let missing = || AppError::NotFound(format!("Message {message:?}"));
        if !message::could_be_message_id(message) {
            return Err(missing());
        }
        match self.store.redeliver(id, message, Utc::now()).await? {
            Redelivery::Queued => {}
            Redelivery::Pending => {
                return Err(AppError::Conflict(format!(
                    "Message {message:?} is being sent now."
                )))
            }
            Redelivery::Missing => return Err(missing()),
        }
        self.audit_endpoint(caller, id, &format!("redeliver {message}"))
            .await;
        Ok(())
    }
}
