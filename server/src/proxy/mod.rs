//! The credential-injecting LLM proxy: how an agent inside a closed sandbox
//! reaches the model without ever holding the API key (invariant 2).
//!
//! A claude-code run gets a random 256-bit token, stored only as its SHA-256,
//! bound to its session, expiring, and revoked when the run ends (Stop
//! included) or the session is deleted. The proxy listens on a Unix socket
//! per session, in a host folder mounted read-only into that session's
//! `--network none` container (and never inside its workspace); socat inside
//! the container relays a loopback port to it. A request must come in on its
//! own session's socket with a live token of that session, so one session's
//! token can never be charged to another. Only `POST /v1/messages` and
//! `POST /v1/messages/count_tokens` pass; the token is swapped for the real
//! credential and the request forwarded to `ANTHROPIC_BASE_URL`, unless it
//! would have Anthropic's servers reach past the closed sandbox for it
//! (`outreach.rs`: server-run tools, MCP servers, content fetched from a
//! URL). The answer
//! streams back chunk by chunk as it arrives, while the usage in its SSE
//! events (`message_start`, `message_delta`) is read on the way past to meter
//! the session's tokens and cost, which is what its budget is checked against
//! before each call. The counts the CLI reports about itself are never used
//! for money: the sandbox is not trusted. What the sandbox can hold of the
//! server is bounded: a few connections, each given up once it leaves its
//! request unfinished for `PADDOCK_CLIENT_STALL_SECS`, and request bodies
//! of at most 32 MB, read whole within twice that time (after the token is
//! checked) to be checked.
//! The routes are `forward.rs`, the metering `meter.rs`.

mod forward;
mod meter;
mod outreach;

use crate::auth::RefusalLimiter;
use crate::config::Config;
use crate::journal::Journal;
use crate::listener;
use crate::secret::{random_hex, sha256_hex};
use crate::store::Store;
use crate::sync::lock;
use crate::vault::Vault;
use app::domain::{AppError, SessionId};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where the socket folder appears inside a sandbox.
pub const SOCKET_DIR: &str = "/run/paddock";
/// The socket's name, in its folder on the host and in the sandbox.
pub const SOCKET_NAME: &str = "llm.sock";
/// Connections a session's socket takes at once (a call on each: the CLI
/// and the subagents it runs side by side, and the idle ones the CLI keeps,
/// each closed once it has been idle for the stall); more wait to be
/// accepted.
const CONNECTIONS_PER_SESSION: usize = 32;

/// The proxy: its upstream, the live tokens' store, and the sockets it
/// listens on.
pub struct CredentialProxy {
    store: Arc<dyn Store>,
    /// Where metered usage is recorded.
    journal: Journal,
    client: reqwest::Client,
    upstream: String,
    /// Where the real credential of each request comes from.
    vault: Arc<Vault>,
    root: PathBuf,
    ttl: Duration,
    /// How long a client of the socket may leave a request unfinished.
    stall: Duration,
    /// Sessions with a listening socket, and how to stop it.
    listening: Mutex<HashMap<SessionId, CancellationToken>>,
    /// Refused tokens, counted per session, so that only a few a minute
    /// are logged.
    refused: RefusalLimiter,
    /// Request bodies held (read whole, then sent) by all sessions, in KiB.
    bodies: Arc<tokio::sync::Semaphore>,
}

/// A run's access to the proxy: the token for the sandbox, and its hash.
pub struct Lease {
    pub token: String,
    sha256: String,
}

/// Why a lease could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot prepare the proxy socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    App(#[from] AppError),
}

impl CredentialProxy {
    /// The proxy to `ANTHROPIC_BASE_URL` with the configured credential,
    /// keeping its sockets under `PADDOCK_CLAUDE_CODE_ROOT` (absolute:
    /// [`Paddock::open`](crate::paddock::Paddock::open) makes it so).
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        journal: Journal,
        vault: Arc<Vault>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            // A redirect would take the real credential (`x-api-key`,
            // which reqwest keeps across hosts) wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            store,
            journal,
            client,
            upstream: config.anthropic_base_url.trim_end_matches('/').to_owned(),
            vault,
            root: config.claude_code_root.clone(),
            ttl: Duration::from_secs(config.claude_code_run_secs),
            stall: config.client_stall(),
            listening: Mutex::new(HashMap::new()),
            refused: RefusalLimiter::default(),
            bodies: Arc::new(tokio::sync::Semaphore::new(forward::BODIES_KIB)),
        })
    }

    /// The host folder of a session's socket (mounted at [`SOCKET_DIR`]).
    pub fn socket_dir(&self, session: SessionId) -> PathBuf {
        self.session_dir(session).join("proxy")
    }

    /// Everything the claude-code engine keeps on the host for a session.
    pub fn session_dir(&self, session: SessionId) -> PathBuf {
        self.root.join(session.to_string())
    }

    fn stop_listening(&self, session: SessionId) {
        if let Some(cancel) = lock(&self.listening).remove(&session) {
            cancel.cancel();
        }
    }
}

/// Creates a folder the sandbox user can enter but not write to.
fn create_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl CredentialProxy {
    /// Opens the session's socket (if it is not open yet) and issues a new
    /// token for one run.
    pub async fn open(self: &Arc<Self>, session: SessionId) -> Result<Lease, ProxyError> {
        self.listen(session)?;
        let token = random_hex();
        let sha256 = sha256_hex(&token);
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        let expires = chrono::Utc::now()
            .checked_add_signed(ttl)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        if let Err(e) = self
            .store
            .insert_proxy_token(&sha256, session, expires)
            .await
        {
            // Nothing is left listening for a run that cannot start, nor
            // a folder of a session deleted meanwhile.
            self.stop_listening(session);
            if e.names_a_gone_row() {
                let _ = std::fs::remove_dir_all(self.socket_dir(session));
                let _ = std::fs::remove_dir(self.session_dir(session));
            }
            return Err(AppError::from(e).into());
        }
        Ok(Lease { token, sha256 })
    }

    /// Ends a run's access: its token is revoked and the socket closed.
    pub async fn close(&self, session: SessionId, lease: Lease) {
        if let Err(e) = self
            .store
            .revoke_proxy_tokens(session, Some(&lease.sha256))
            .await
        {
            tracing::error!(%session, "cannot revoke a proxy token: {e}");
        }
        self.stop_listening(session);
    }

    /// For a deleted session: every token revoked, the socket closed, its
    /// home and socket folder removed.
    pub async fn forget(&self, session: SessionId) -> std::io::Result<()> {
        if let Err(e) = self.store.revoke_proxy_tokens(session, None).await {
            tracing::error!(%session, "cannot revoke proxy tokens: {e}");
        }
        self.stop_listening(session);
        match std::fs::remove_dir_all(self.session_dir(session)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn listen(self: &Arc<Self>, session: SessionId) -> Result<(), ProxyError> {
        let mut listening = lock(&self.listening);
        if listening.contains_key(&session) {
            return Ok(());
        }
        let dir = self.socket_dir(session);
        let path = dir.join(SOCKET_NAME);
        let socket_error = |source| ProxyError::Socket {
            path: path.clone(),
            source,
        };
        create_dir(&self.session_dir(session), 0o755).map_err(socket_error)?;
        create_dir(&dir, 0o755).map_err(socket_error)?;
        // A socket left by an earlier run or server: ours to replace.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(socket_error(e)),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path).map_err(socket_error)?;
        // The sandbox user must be able to connect; the token is the lock.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(socket_error)?;
        let cancel = CancellationToken::new();
        listening.insert(session, cancel.clone());
        let app = forward::router(self.clone(), session);
        // A request at a time on each of a few connections: what one
        // sandbox may hold of the server.
        let limits = listener::Limits {
            stall: self.stall,
            connections: Some(CONNECTIONS_PER_SESSION),
        };
        tokio::spawn(listener::serve(
            listener,
            app,
            limits,
            cancel.cancelled_owned(),
        ));
        Ok(())
    }
}
