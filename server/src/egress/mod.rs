//! The egress proxy: how a session whose owner listed hosts (its network
//! allowlist, [`app::egress`]) reaches those hosts, and only those, from a
//! sandbox that still has no network, no DNS and no route out.
//!
//! The proxy listens on a Unix socket per session, in a host folder
//! mounted read-only into that session's container (beside its workspace,
//! never in it); socat inside the container relays a loopback port to it,
//! and `HTTP_PROXY`/`HTTPS_PROXY` point there (`localhost` and loopback
//! addresses excepted, so the agent's own servers stay its own). Each
//! connection is an HTTP proxy request, checked and relayed by
//! [`connection`]: names are resolved here, and only public addresses are
//! reached unless the operator names other networks
//! (`PADDOCK_EGRESS_NETWORKS`, [`address`]). Every connection is a
//! transcript event (host, port, bytes each way, or why it was refused),
//! within a rate: past [`CONNECTIONS_PER_MINUTE`] new connections a
//! minute, or [`CONNECTIONS_AT_ONCE`] open, more are refused (429), said
//! once a minute.

mod address;
mod connection;
mod metered;
mod refusal;
mod request_body;

pub use address::{is_cloud_metadata, own_addresses, reachable, unreachable_why, Network};

use crate::journal::Journal;
use crate::sandbox::{Mount, ProxyRelay};
use crate::sync::lock;
use app::domain::{EventKind, SessionId, UserId};
use app::egress::EgressRule;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Where the socket folder appears inside a sandbox.
const SOCKET_DIR: &str = "/run/paddock-egress";
const SOCKET_NAME: &str = "egress.sock";
/// The loopback port of the proxy inside a sandbox.
const PORT: u16 = 3128;
/// New connections a session may open in a minute.
pub const CONNECTIONS_PER_MINUTE: u32 = 300;
/// Connections a session may hold open at once.
pub const CONNECTIONS_AT_ONCE: usize = 64;
/// Names a session may have looked up at once (each on a thread of the
/// server's until the resolver answers or gives up).
pub const LOOKUPS_AT_ONCE: usize = 4;
/// Connections one person's sessions may hold open at once, together: so
/// that no one holds the server's room for all.
pub const CONNECTIONS_PER_PERSON: usize = 128;
/// Connections all sessions may hold open at once: each holds two of the
/// server's file descriptors, which the server needs for its own work too.
pub const CONNECTIONS_ON_SERVER: usize = 512;

pub struct EgressProxy {
    /// Each session's socket folder is `<root>/<session>.egress`.
    root: PathBuf,
    networks: Arc<[Network]>,
    journal: Journal,
    listening: Mutex<HashMap<SessionId, Arc<SessionEgress>>>,
    /// Room for [`CONNECTIONS_PER_PERSON`], by the sessions' owner.
    per_person: Mutex<HashMap<Option<UserId>, Arc<Semaphore>>>,
    /// Room for [`CONNECTIONS_ON_SERVER`].
    on_server: Arc<Semaphore>,
}

/// One session's side of the proxy.
struct SessionEgress {
    session: SessionId,
    rules: Vec<EgressRule>,
    networks: Arc<[Network]>,
    journal: Journal,
    cancel: CancellationToken,
    /// The socket file this listens on (device and inode): replicas share
    /// the folder, and another's may have taken the path since.
    bound: (u64, u64),
    open: Arc<Semaphore>,
    /// Room for [`LOOKUPS_AT_ONCE`].
    lookups: Arc<Semaphore>,
    owners: Arc<Semaphore>,
    on_server: Arc<Semaphore>,
    /// This minute's start, its new connections, and whether a refusal was
    /// recorded in it.
    minute: Mutex<(Instant, u32, bool)>,
}

impl SessionEgress {
    async fn record(&self, kind: EventKind) {
        if let Err(e) = self.journal.record(self.session, kind).await {
            tracing::warn!(session = %self.session, "cannot record a connection: {e}");
        }
    }

    /// Admits a new connection within the minute's rate and the open
    /// connections' bounds, the session's, its owner's and the server's
    /// (its permits), or says why not, and whether this is the minute's
    /// first refusal (said in the transcript; later ones only counted).
    fn admit(&self) -> Result<[OwnedSemaphorePermit; 3], (String, bool)> {
        let mut minute = lock(&self.minute);
        if minute.0.elapsed() >= Duration::from_secs(60) {
            *minute = (Instant::now(), 0, false);
        }
        let permits = (
            self.open.clone().try_acquire_owned(),
            self.owners.clone().try_acquire_owned(),
            self.on_server.clone().try_acquire_owned(),
        );
        let refused = match permits {
            _ if minute.1 >= CONNECTIONS_PER_MINUTE => {
                format!("too many new connections (at most {CONNECTIONS_PER_MINUTE} a minute)")
            }
            (Ok(own), Ok(owner), Ok(server)) => {
                minute.1 += 1;
                return Ok([own, owner, server]);
            }
            (Err(_), _, _) => {
                format!("too many connections open at once (at most {CONNECTIONS_AT_ONCE})")
            }
            (_, Err(_), _) => format!(
                "too many connections open at once in its owner's sessions (at most \
                 {CONNECTIONS_PER_PERSON} together)"
            ),
            (_, _, Err(_)) => format!(
                "too many connections open on this server at once (at most \
                 {CONNECTIONS_ON_SERVER}, all sessions together)"
            ),
        };
        let first = !minute.2;
        minute.2 = true;
        Err((refused, first))
    }
}

impl EgressProxy {
    pub fn new(root: PathBuf, networks: &[Network], journal: Journal) -> Self {
        Self {
            root,
            networks: networks.into(),
            journal,
            listening: Mutex::new(HashMap::new()),
            per_person: Mutex::new(HashMap::new()),
            on_server: Arc::new(Semaphore::new(CONNECTIONS_ON_SERVER)),
        }
    }

    fn socket_dir(&self, session: SessionId) -> PathBuf {
        self.root.join(format!("{session}.egress"))
    }

    /// Opens the session's socket for `allowlist` (unless it is open) and
    /// says how its sandbox reaches it: the socket folder to mount and the
    /// relay to run. `owner`'s sessions share their room.
    pub fn open(
        &self,
        session: SessionId,
        owner: Option<UserId>,
        allowlist: &[String],
    ) -> std::io::Result<(Mount, ProxyRelay)> {
        let dir = self.socket_dir(session);
        let mount = Mount {
            host: dir.clone(),
            target: SOCKET_DIR.into(),
            read_only: true,
        };
        let relay = ProxyRelay {
            socket: format!("{SOCKET_DIR}/{SOCKET_NAME}"),
            port: PORT,
        };
        let path = dir.join(SOCKET_NAME);
        let mut listening = lock(&self.listening);
        if let Some(egress) = listening.get(&session) {
            // Still the file this listens on: another replica sharing the
            // folder may have bound its own there since, and gone.
            if file_id(&path).is_ok_and(|id| id == egress.bound) {
                return Ok((mount, relay));
            }
            egress.cancel.cancel();
            listening.remove(&session);
        }
        let rules = allowlist
            .iter()
            .map(|entry| entry.parse::<EgressRule>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        // A socket left by an earlier server or another replica: ours to
        // replace.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path)?;
        // The sandbox user connects; the allowlist is the lock.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        let egress = Arc::new(SessionEgress {
            session,
            rules,
            networks: self.networks.clone(),
            journal: self.journal.clone(),
            cancel: CancellationToken::new(),
            bound: file_id(&path)?,
            open: Arc::new(Semaphore::new(CONNECTIONS_AT_ONCE)),
            lookups: Arc::new(Semaphore::new(LOOKUPS_AT_ONCE)),
            owners: lock(&self.per_person)
                .entry(owner)
                .or_insert_with(|| Arc::new(Semaphore::new(CONNECTIONS_PER_PERSON)))
                .clone(),
            on_server: self.on_server.clone(),
            minute: Mutex::new((Instant::now(), 0, false)),
        });
        listening.insert(session, egress.clone());
        tokio::spawn(accept(listener, egress));
        Ok((mount, relay))
    }

    /// For a sandbox stopped: its socket closed (a descriptor of the
    /// server's each), its connections cut; [`EgressProxy::open`] binds
    /// it again for the next start.
    pub fn close(&self, session: SessionId) {
        if let Some(egress) = lock(&self.listening).remove(&session) {
            egress.cancel.cancel();
        }
    }

    /// The sessions whose socket is open here.
    pub fn open_sessions(&self) -> Vec<SessionId> {
        lock(&self.listening).keys().copied().collect()
    }

    /// For a deleted session: closed, and its folder removed.
    pub fn forget(&self, session: SessionId) -> std::io::Result<()> {
        self.close(session);
        match std::fs::remove_dir_all(self.socket_dir(session)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A file's device and inode.
fn file_id(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

async fn accept(listener: tokio::net::UnixListener, egress: Arc<SessionEgress>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(session = %egress.session, "egress proxy: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = egress.cancel.cancelled() => return,
        };
        match egress.admit() {
            Ok(permits) => {
                let egress = egress.clone();
                tokio::spawn(async move {
                    connection::serve(stream, &egress).await;
                    drop(permits);
                });
            }
            // Answered here, one at a time: a flood holds one descriptor
            // of the server's at once, and slows only its own session.
            Err((reason, first)) => connection::refuse_busy(stream, &egress, reason, first).await,
        }
    }
}
