//! The credential store: secrets Paddock keeps for its users (the
//! Anthropic key, and the secrets people give their agents), sealed at rest with
//! XChaCha20-Poly1305 under one master key, and opened only host-side, at
//! the moment a model call or the credential proxy needs one. No API ever
//! returns a saved value (only a hint), and none is logged.
//!
//! The master key comes from `PADDOCK_MASTER_KEY` (64 hex digits), or from
//! the key file (`PADDOCK_MASTER_KEY_FILE`), created with mode 0600 on
//! first run. A sealed check value in the database tells at start-up
//! whether the key is the one the credentials were sealed with: a wrong key
//! is a clear error, and nothing is decrypted with it. `paddock
//! credentials rotate-master-key` re-seals everything under a new key in
//! one transaction.
//!
//! Each value is sealed with its scope, kind and name as associated data, so a
//! row copied to another scope (someone's key made the server's) does not
//! open.

use crate::auth::Auth;
use crate::config::Config;
use crate::llm::LlmCredential;
use crate::seal::{open, seal, Sealer};
use crate::store::accounts::{Reseal, SealedCredential, MASTER_KEY_CHECK};
use crate::store::{SealedSecret, Store, StoreError};
use anyhow::Context;
use app::accounts::{
    secret_hint, AuditAction, CredentialId, CredentialInfo, CredentialKind, CredentialScope,
    CREDENTIAL_MAX_BYTES, SECRETS_MAX, SECRET_MIN_CHARS,
};
use app::domain::{check_variable_name, AppError, UserId};
use app::notifications::EndpointId;
use app::triggers::TriggerId;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use chrono::Utc;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

const CHECK_PLAINTEXT: &[u8] = b"paddock master key check, v1";
const CHECK_AAD: &[u8] = b"master-key-check";

/// A 256-bit master key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// From 64 hex digits.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .context(
                "a master key is 64 hex digits (256 bits), such as `openssl rand -hex 32` prints",
            )?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The configured key: `PADDOCK_MASTER_KEY`, else the key file, created
    /// (mode 0600) with a new random key when missing.
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        if let Some(text) = &config.master_key {
            return Self::parse(text).context("PADDOCK_MASTER_KEY");
        }
        let path = &config.master_key_file;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        "the master key file {} can be read by other users (mode {:o}); \
                         chmod 600 it",
                        path.display(),
                        mode & 0o777
                    );
                }
                Self::parse(&text)
                    .with_context(|| format!("the master key file {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                key.write_new(path)?;
                tracing::info!(
                    "created the master key file {} (keep it, and back it up apart from the \
                     database: the saved credentials cannot be opened without it)",
                    path.display()
                );
                Ok(key)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the key to a new file, readable by its owner only.
    pub fn write_new(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        writeln!(file, "{}", self.to_hex())?;
        file.sync_all()?;
        Ok(())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// What seals the messages of one use of this key besides the store's
    /// (`purpose`: the bus between replicas), under a key derived for it.
    pub fn sealer(&self, purpose: &'static str) -> Sealer {
        use sha2::{Digest, Sha256};
        let key = Sha256::new()
            .chain_update(b"paddock key for ")
            .chain_update(purpose)
            .chain_update(self.0)
            .finalize();
        Sealer::new(key.into(), purpose)
    }
}

/// What a value is sealed with besides the key: where it belongs, so it
/// opens nowhere else.
fn aad(id: &CredentialId) -> Vec<u8> {
    id.to_string().into_bytes()
}

/// Refuses a credential's name that its kind cannot have: a secret's or a
/// git token's is a variable's name; the others have none.
fn check_credential_name(id: &CredentialId) -> Result<(), AppError> {
    if id.kind.is_named() {
        check_variable_name(&id.name)
    } else if id.name.is_empty() {
        Ok(())
    } else {
        Err(AppError::Invalid(format!("A {} has no name.", id.kind)))
    }
}

/// Refuses a secret that is too short to mask, or not one line where it
/// must be.
fn check_secret(id: &CredentialId, value: &str) -> Result<(), AppError> {
    // A git token goes into an HTTP header: one line.
    let multiline = id.kind == CredentialKind::Secret;
    let shaped = value.chars().count() >= SECRET_MIN_CHARS
        && value.len() <= CREDENTIAL_MAX_BYTES
        && !value
            .chars()
            .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t')));
    if !shaped && !multiline {
        return Err(AppError::Invalid(format!(
            "A git token is {SECRET_MIN_CHARS} characters to {} KiB on one line: the token, or \
             user:token.",
            CREDENTIAL_MAX_BYTES / 1024
        )));
    }
    if !shaped {
        return Err(AppError::Invalid(format!(
            "A secret is {SECRET_MIN_CHARS} characters to {} KiB of text (shorter ones would mask \
             ordinary words wherever they appear).",
            CREDENTIAL_MAX_BYTES / 1024
        )));
    }
    Ok(())
}

/// The check value sealed under a key (its cipher), as stored in meta.
fn key_check(cipher: &XChaCha20Poly1305) -> anyhow::Result<String> {
    seal_hex(cipher, CHECK_PLAINTEXT, CHECK_AAD)
}

fn key_matches(cipher: &XChaCha20Poly1305, check: &str) -> bool {
    open_hex(cipher, check, CHECK_AAD).as_deref() == Some(CHECK_PLAINTEXT)
}

/// Saved credentials, sealed under the master key.
pub struct Vault {
    cipher: XChaCha20Poly1305,
    /// The master key's check value as this server found it: every sealed
    /// value is written only while it is still the database's.
    check: String,
    store: Arc<dyn Store>,
    /// `ANTHROPIC_API_KEY` / `ANTHROPIC_AUTH_TOKEN` from the environment:
    /// used when nothing is saved.
    environment: Option<LlmCredential>,
}

impl Vault {
    /// Opens the vault, refusing a key that is not the one the database's
    /// credentials were sealed with (a first start records the key's check
    /// value).
    pub async fn open(
        key: &MasterKey,
        store: Arc<dyn Store>,
        config: &Config,
    ) -> anyhow::Result<Self> {
        let check = store
            .meta_or_insert(MASTER_KEY_CHECK, key_check(&key.cipher())?)
            .await?;
        if !key_matches(&key.cipher(), &check) {
            anyhow::bail!(
                "the master key (PADDOCK_MASTER_KEY, or the key file {}) is not the one this \
                 database's credentials were saved with; nothing was decrypted. Start with the \
                 right key (rotate it with `paddock credentials rotate-master-key`).",
                config.master_key_file.display()
            );
        }
        // A variable set empty (`${ANTHROPIC_API_KEY:-}` in a compose file)
        // is no credential.
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let environment = match (
            given(&config.anthropic_api_key),
            given(&config.anthropic_auth_token),
        ) {
            (Some(key), _) => Some(LlmCredential::ApiKey(key)),
            (None, Some(token)) => Some(LlmCredential::AuthToken(token)),
            (None, None) => None,
        };
        Ok(Self {
            cipher: key.cipher(),
            check,
            store,
            environment,
        })
    }

    /// Saves a credential for `actor` (the dashboard's caller, or the
    /// command line) and records it in the audit log, with its hint only.
    pub async fn save_audited(
        &self,
        auth: &Auth,
        actor: &str,
        address: Option<std::net::IpAddr>,
        id: CredentialId,
        value: &str,
    ) -> Result<CredentialInfo, AppError> {
        let sealed = self.save(id, value, actor).await?;
        auth.audit(
            actor,
            AuditAction::CredentialSaved,
            &sealed.id.to_string(),
            &sealed.hint,
            address,
        )
        .await;
        Ok(sealed.info())
    }

    /// Deletes a saved credential, recorded in the audit log.
    pub async fn delete_audited(
        &self,
        auth: &Auth,
        actor: &str,
        address: Option<std::net::IpAddr>,
        id: &CredentialId,
    ) -> Result<(), AppError> {
        check_credential_name(id)?;
        if !self.store.delete_credential(id).await? {
            return Err(AppError::NotFound(format!("The saved credential {id}")));
        }
        auth.audit(
            actor,
            AuditAction::CredentialDeleted,
            &id.to_string(),
            "",
            address,
        )
        .await;
        Ok(())
    }

    /// Seals and saves a credential; what is returned is only its hint.
    async fn save(
        &self,
        id: CredentialId,
        value: &str,
        by: &str,
    ) -> Result<SealedCredential, AppError> {
        // A browser's text area sends its line breaks as CR LF.
        let value = value.trim().replace("\r\n", "\n");
        let value = value.as_str();
        check_credential_name(&id)?;
        let hint = if id.kind.is_named() {
            check_secret(&id, value)?;
            let others = self.store.list_credentials().await?;
            let counted = others
                .iter()
                .filter(|c| c.id.scope == id.scope && c.id.kind == id.kind && c.id != id);
            if counted.count() >= SECRETS_MAX {
                return Err(AppError::Invalid(format!(
                    "At most {SECRETS_MAX} secrets can be saved: remove one first."
                )));
            }
            "••••".to_owned()
        } else {
            if value.is_empty()
                || value.len() > CREDENTIAL_MAX_BYTES
                || value.chars().any(char::is_control)
            {
                return Err(AppError::Invalid(format!(
                    "A key is 1 to {CREDENTIAL_MAX_BYTES} bytes of text on one line."
                )));
            }
            secret_hint(value)
        };
        let (nonce, ciphertext) = seal(&self.cipher, value.as_bytes(), &aad(&id)).map_err(|e| {
            tracing::error!("{e}");
            AppError::Internal
        })?;
        let sealed = SealedCredential {
            id,
            nonce,
            ciphertext,
            hint,
            updated_at: Utc::now(),
            updated_by: by.to_owned(),
        };
        self.store.put_credential(&sealed, &self.check).await?;
        Ok(sealed)
    }

    /// The saved value, opened: `Err` for one saved that does not open
    /// with this server's master key (rotated since it started).
    async fn saved(&self, id: &CredentialId) -> Result<Option<Result<String, ()>>, StoreError> {
        let Some(sealed) = self.store.credential(id).await? else {
            return Ok(None);
        };
        let plain = open(&self.cipher, &sealed.nonce, &sealed.ciphertext, &aad(id))
            .and_then(|p| String::from_utf8(p).ok());
        if plain.is_none() {
            tracing::error!(credential = %id, "a saved credential does not open with the master key");
        }
        Ok(Some(plain.ok_or(())))
    }

    /// The saved value, opened; one that does not open is an error that
    /// says so (saving it again would be refused too, until a restart).
    async fn value(&self, id: &CredentialId) -> Result<Option<String>, AppError> {
        match self.saved(id).await? {
            Some(Ok(value)) => Ok(Some(value)),
            Some(Err(())) => Err(AppError::Unavailable(format!(
                "The saved {} {} does not open with this server's master key, which was \
                 rotated since it started: restart Paddock.",
                id.kind, id.name
            ))),
            None => Ok(None),
        }
    }

    /// The model credential for a session owned by `owner`: the owner's own
    /// saved key, else the server's, else the environment's. One saved
    /// that does not open is an error, not a reason to spend the next.
    pub async fn llm_credential(
        &self,
        owner: Option<UserId>,
    ) -> Result<Option<LlmCredential>, StoreError> {
        let mine = owner.map(|user| CredentialId::model_key(CredentialScope::User(user)));
        let server = CredentialId::model_key(CredentialScope::Server);
        for id in mine.iter().chain([&server]) {
            match self.saved(id).await? {
                Some(Ok(key)) => return Ok(Some(LlmCredential::ApiKey(key))),
                Some(Err(())) => {
                    return Err(StoreError::Corrupt(format!(
                        "the saved model key {id} does not open with this server's master key \
                         (rotated since it started? restart it)"
                    )))
                }
                None => {}
            }
        }
        Ok(self.environment.clone())
    }

    /// The owner's saved git token of that name (the server's, for a
    /// session without an owner), for host-side git only.
    pub async fn git_token(&self, owner: Option<UserId>, name: &str) -> Result<String, AppError> {
        let scope = owner.map_or(CredentialScope::Server, CredentialScope::User);
        let id = CredentialId::named(scope, CredentialKind::GitToken, name);
        self.value(&id).await?.ok_or_else(|| {
            AppError::Invalid(format!(
                "The git token {name} is not saved: save it under Credentials (Git tokens)."
            ))
        })
    }

    /// The values of the secrets a session of `owner` lists, as variables:
    /// the owner's own (the server's, for a session without an owner). A
    /// secret that is not saved any more is a clear error, before anything
    /// runs.
    pub async fn secrets(
        &self,
        owner: Option<UserId>,
        names: &[String],
    ) -> Result<Vec<(String, String)>, AppError> {
        let scope = owner.map_or(CredentialScope::Server, CredentialScope::User);
        let mut vars = Vec::with_capacity(names.len());
        for name in names {
            let value = self.value(&CredentialId::secret(scope, name)).await?;
            let value = value.ok_or_else(|| {
                AppError::Invalid(format!(
                    "The secret {name} is not saved any more: save it again under Credentials \
                     (or start a session without it)."
                ))
            })?;
            vars.push((name.clone(), value));
        }
        Ok(vars)
    }

    /// Whether a model credential would run the sessions of `owner` (as
    /// [`Vault::llm_credential`] picks one), for the dashboard's "no
    /// credentials" warning: someone else's own key runs none of theirs.
    pub async fn has_llm_credential(&self, owner: Option<UserId>) -> Result<bool, StoreError> {
        if self.environment.is_some() {
            return Ok(true);
        }
        // Looked up by their ids: asked on every page, it does not read
        // every credential of every person.
        let usable = [
            Some(CredentialId::model_key(CredentialScope::Server)),
            owner.map(|user| CredentialId::model_key(CredentialScope::User(user))),
        ];
        for id in usable.iter().flatten() {
            if self.store.credential(id).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Whose secret a sealed secret is (a trigger's, a notification
/// endpoint's): it is sealed with that besides the key, so it opens only
/// as theirs.
#[derive(Clone, Copy, Debug)]
pub enum SecretOf {
    Trigger(TriggerId),
    Endpoint(EndpointId),
}

impl SecretOf {
    fn aad(self) -> Vec<u8> {
        match self {
            Self::Trigger(id) => format!("trigger:{id}").into_bytes(),
            Self::Endpoint(id) => format!("notification:{id}").into_bytes(),
        }
    }
}

/// A value sealed as the store keeps it: hex of the nonce and the
/// ciphertext.
fn seal_hex(cipher: &XChaCha20Poly1305, plaintext: &[u8], aad: &[u8]) -> anyhow::Result<String> {
    let (nonce, ciphertext) = seal(cipher, plaintext, aad)?;
    Ok(hex::encode([nonce, ciphertext].concat()))
}

fn open_hex(cipher: &XChaCha20Poly1305, sealed: &str, aad: &[u8]) -> Option<Vec<u8>> {
    let bytes = hex::decode(sealed).ok()?;
    (bytes.len() > 24)
        .then(|| open(cipher, &bytes[..24], &bytes[24..], aad))
        .flatten()
}

impl Vault {
    /// A trigger's or an endpoint's secret sealed for the store: it opens
    /// only as theirs.
    pub fn seal_secret(&self, of: SecretOf, secret: &str) -> Result<SealedSecret, AppError> {
        let sealed = seal_hex(&self.cipher, secret.as_bytes(), &of.aad()).map_err(|e| {
            tracing::error!("cannot seal a secret of {of:?}: {e}");
            AppError::Internal
        })?;
        Ok(SealedSecret {
            sealed,
            key_check: self.check.clone(),
        })
    }

    /// A secret as sealed by [`Vault::seal_secret`].
    pub fn open_secret(&self, of: SecretOf, sealed: &str) -> Option<String> {
        open_hex(&self.cipher, sealed, &of.aad()).and_then(|b| String::from_utf8(b).ok())
    }
}

/// Re-seals every credential, trigger and endpoint secret under `new` in one
/// transaction (the check value with them); `old` must be the current key.
/// Returns how many credentials.
pub async fn rotate(store: &dyn Store, old: &MasterKey, new: &MasterKey) -> anyhow::Result<usize> {
    let (check, sealed_under) = check_of(store, old).await?;
    anyhow::ensure!(
        sealed_under,
        "the current master key is not the one the credentials were saved with; nothing changed"
    );
    let rotation = Rotation {
        old: old.cipher(),
        new: new.cipher(),
    };
    match store
        .rotate_master_key(&check, &key_check(&rotation.new)?, &rotation)
        .await
    {
        Err(StoreError::KeyChanged) => {
            anyhow::bail!(
                "the master key was rotated by another command meanwhile; nothing changed"
            )
        }
        done => Ok(done?),
    }
}

/// Whether what the store holds is sealed under `key` (a store that holds
/// nothing sealed yet takes it as its key).
pub async fn seals(store: &dyn Store, key: &MasterKey) -> anyhow::Result<bool> {
    Ok(check_of(store, key).await?.1)
}

/// The store's key check value, and whether `key` is the one it checks.
async fn check_of(store: &dyn Store, key: &MasterKey) -> anyhow::Result<(String, bool)> {
    let check = store
        .meta_or_insert(MASTER_KEY_CHECK, key_check(&key.cipher())?)
        .await?;
    let matches = key_matches(&key.cipher(), &check);
    Ok((check, matches))
}

/// A rotation's ciphers: each value opened under the old key, sealed under
/// the new one with the same associated data.
struct Rotation {
    old: XChaCha20Poly1305,
    new: XChaCha20Poly1305,
}

impl Rotation {
    fn reseal_secret(&self, of: SecretOf, sealed: &str) -> Result<String, String> {
        let aad = of.aad();
        let plain = open_hex(&self.old, sealed, &aad)
            .ok_or_else(|| format!("the secret of {of:?} does not open; nothing changed"))?;
        seal_hex(&self.new, &plain, &aad).map_err(|e| e.to_string())
    }
}

impl Reseal for Rotation {
    fn credential(&self, c: &SealedCredential) -> Result<(Vec<u8>, Vec<u8>), String> {
        let aad = aad(&c.id);
        let plain = open(&self.old, &c.nonce, &c.ciphertext, &aad)
            .ok_or_else(|| format!("the credential {} does not open; nothing changed", c.id))?;
        seal(&self.new, &plain, &aad).map_err(|e| e.to_string())
    }

    fn trigger_secret(&self, id: TriggerId, sealed: &str) -> Result<String, String> {
        self.reseal_secret(SecretOf::Trigger(id), sealed)
    }

    fn endpoint_secret(&self, id: EndpointId, sealed: &str) -> Result<String, String> {
        self.reseal_secret(SecretOf::Endpoint(id), sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A use's sealer has a key of its own: what it seals opens neither
    /// with another use's nor with the master key itself.
    #[test]
    fn each_use_of_the_key_seals_with_its_own() {
        let key = MasterKey::generate();
        let sealed = key.sealer("one use").seal(b"notice").unwrap();
        assert_eq!(key.sealer("one use").open(&sealed).unwrap(), b"notice");
        assert!(MasterKey::generate()
            .sealer("one use")
            .open(&sealed)
            .is_none());
        assert!(key.sealer("another use").open(&sealed).is_none());
        assert!(Sealer::new(key.0, "one use").open(&sealed).is_none());
        let (nonce, ciphertext) = sealed.split_at(24);
        assert!(open(&key.cipher(), nonce, ciphertext, b"one use").is_none());
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_place() {
        let key = MasterKey::generate();
        let other = MasterKey::generate();
        let aad = aad(&CredentialId::model_key(CredentialScope::Server));
        let (nonce, ct) = seal(&key.cipher(), b"sk-ant-secret", &aad).unwrap();
        assert_eq!(
            open(&key.cipher(), &nonce, &ct, &aad).unwrap(),
            b"sk-ant-secret"
        );
        assert!(open(&other.cipher(), &nonce, &ct, &aad).is_none());
        let elsewhere = super::aad(&CredentialId::model_key(CredentialScope::User(
            uuid::Uuid::from_u128(1),
        )));
        let as_secret = super::aad(&CredentialId::secret(CredentialScope::Server, "KEY"));
        assert!(open(&key.cipher(), &nonce, &ct, &as_secret).is_none());
        assert!(open(&key.cipher(), &nonce, &ct, &elsewhere).is_none());
        assert!(!ct.windows(6).any(|w| w == b"sk-ant"));
        let check = key_check(&key.cipher()).unwrap();
        assert!(key_matches(&key.cipher(), &check));
        assert!(!key_matches(&other.cipher(), &check));
        assert!(!key_matches(&key.cipher(), "zz"));
        assert!(MasterKey::parse("abc").is_err());
        assert_eq!(MasterKey::parse(&key.to_hex()).unwrap().0, key.0);
    }
}
