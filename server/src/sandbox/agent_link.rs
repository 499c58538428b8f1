//! The server's end of each Docker sandbox's agent
//! ([`paddock_sandbox_agent`]), reached one of two ways:
//! - On this server's Docker host: a Unix socket for each agent started,
//!   in a host folder (`<workspace root>/<session>.agent`) mounted
//!   read-only into the sandbox, which the agent dials. Each has a name of
//!   its own: replicas sharing the workspace root may start a session's
//!   agent at once, each dialled by its own. Its first line must be the
//!   agent's secret (256 random bits, made here, handed to the agent on its stdin
//!   when it is started): anything else, such as a process of the sandbox
//!   trying its luck, is dropped unanswered.
//! - On a remote Docker host: the streams of the `docker exec` that started
//!   the agent with `--stdio` ([`AgentLinks::attach`]), carried by the
//!   Docker API's own connection (mutual TLS).
//!
//! Then the connection is HTTP/2 with the server as the client, and every
//! command of the session is one request on it
//! ([`agent_call`](super::agent_call)).

use crate::secret::{random_hex, same};
use crate::sync::lock;
use app::domain::SessionId;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http2::SendRequest;
use paddock_sandbox_agent::{PROTOCOL, SECRET_LINE_MAX, SOCKET_DIR, STDIO_HELLO};
use std::collections::HashMap;
use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// How long a connection may take to say its secret (and an agent's error
/// answer to be read).
pub(super) const SECRET_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the connection is pinged, and how long an answer may take: a
/// stopped agent is noticed within half a minute, and a sandbox the server
/// itself pauses for a moment (host-side git) is not taken for one.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Flow-control windows of the agent's answers: per stream, and for the
/// whole connection (more than all of a session's terminals together).
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// A live connection to an agent: requests are sent on clones of it.
pub type AgentConnection = SendRequest<RequestBody>;
/// A request's body: whole (`/exec`) or streamed (`/spawn`'s stdin).
pub type RequestBody = BoxBody<Bytes, Infallible>;

pub struct AgentLinks {
    root: PathBuf,
    links: Mutex<HashMap<SessionId, Link>>,
    /// The session of each agent that connects, as it does.
    arrivals: broadcast::Sender<SessionId>,
}

struct Link {
    connection: watch::Sender<Option<Arrival>>,
    cancel: CancellationToken,
}

/// The connection that said the secret, and the process that made it (its
/// pid on this host, where the kernel says it).
#[derive(Clone)]
pub struct Arrival {
    pub connection: AgentConnection,
    pub peer: Option<i32>,
}

impl AgentLinks {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            links: Mutex::new(HashMap::new()),
            arrivals: broadcast::channel(64).0,
        }
    }

    /// The session's live connection once its agent is connected: now, or
    /// when one next connects (never starting one).
    pub async fn connected(&self, session: SessionId) -> AgentConnection {
        let mut arrivals = self.arrivals.subscribe();
        loop {
            if let Some(connection) = self.connection(session) {
                return connection;
            }
            if let Err(broadcast::error::RecvError::Closed) = arrivals.recv().await {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The host folder of a session's socket, mounted at [`SOCKET_DIR`].
    pub fn socket_dir(&self, session: SessionId) -> PathBuf {
        self.root.join(format!("{session}.agent"))
    }

    /// Makes the session's socket folder (before its container, which
    /// mounts it).
    pub fn prepare(&self, session: SessionId) -> std::io::Result<()> {
        let dir = self.socket_dir(session);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
    }

    /// The session's live connection, if its agent is connected.
    pub fn connection(&self, session: SessionId) -> Option<AgentConnection> {
        let links = lock(&self.links);
        let arrival = links.get(&session)?.connection.borrow().clone();
        arrival.map(|a| a.connection).filter(|c| !c.is_closed())
    }

    /// Listens on a new socket of the session with a new secret, for one
    /// agent: [`Listening`]. Once the connection that says the secret is
    /// made, or the listening stops, the socket is gone, so a secret taken
    /// later opens nothing.
    pub fn listen(&self, session: SessionId) -> std::io::Result<Listening> {
        self.forget(session);
        self.prepare(session)?;
        let name = format!("agent-{}.sock", &random_hex()[..16]);
        let path = self.socket_dir(session).join(&name);
        let listener = tokio::net::UnixListener::bind(&path)?;
        let socket = SocketFile(path);
        // The sandbox user connects; the secret is the lock.
        std::fs::set_permissions(&socket.0, std::fs::Permissions::from_mode(0o666))?;
        let secret = random_hex();
        let (connection, connected) = watch::channel(None);
        let cancel = CancellationToken::new();
        tokio::spawn(accept(
            session,
            (listener, socket),
            secret.clone(),
            (connection.clone(), self.arrivals.clone()),
            cancel.clone(),
        ));
        lock(&self.links).insert(session, Link { connection, cancel });
        Ok(Listening {
            socket_in_sandbox: format!("{SOCKET_DIR}/{name}"),
            secret,
            connected,
        })
    }

    /// Takes the streams of an agent started with `--stdio` as the
    /// session's connection, once the agent has said it speaks this
    /// [`PROTOCOL`].
    pub async fn attach(
        &self,
        session: SessionId,
        mut io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    ) -> Result<AgentConnection, String> {
        self.forget(session);
        let expected = format!("{STDIO_HELLO} {PROTOCOL}");
        match tokio::time::timeout(SECRET_TIMEOUT, read_line(&mut io)).await {
            Ok(Some(line)) if line == expected => {}
            Ok(Some(line)) if line.starts_with(STDIO_HELLO) => {
                return Err(format!(
                    "it speaks another protocol ({line:?}, not {expected:?}): its binary on \
                     this server is not the one it was made with"
                ))
            }
            _ => return Err("it did not say hello".into()),
        }
        let (arrival, driver) = handshake(io, None)
            .await
            .map_err(|e| format!("its handshake: {e}"))?;
        let (connection, _) = watch::channel(Some(arrival.clone()));
        let cancel = CancellationToken::new();
        tokio::spawn(drive(session, driver, cancel.clone()));
        lock(&self.links).insert(session, Link { connection, cancel });
        let _ = self.arrivals.send(session);
        Ok(arrival.connection)
    }

    /// Stops listening for the session; its connection closes.
    pub fn forget(&self, session: SessionId) {
        if let Some(link) = lock(&self.links).remove(&session) {
            link.cancel.cancel();
        }
    }

    /// For a deleted session: the socket folder too.
    pub fn remove(&self, session: SessionId) -> std::io::Result<()> {
        self.forget(session);
        match std::fs::remove_dir_all(self.socket_dir(session)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// An agent to start: where it dials inside the sandbox, the secret it
/// says, and a way to wait for its connection.
pub struct Listening {
    pub socket_in_sandbox: String,
    pub secret: String,
    pub connected: watch::Receiver<Option<Arrival>>,
}

/// A socket's file, removed when it is dropped: once its agent is
/// connected, or no longer awaited.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn accept(
    session: SessionId,
    (listener, socket): (tokio::net::UnixListener, SocketFile),
    secret: String,
    (connection, arrivals): (watch::Sender<Option<Arrival>>, broadcast::Sender<SessionId>),
    cancel: CancellationToken,
) {
    let expected = format!("{secret} {PROTOCOL}");
    let stream = loop {
        let mut stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(%session, "sandbox agent socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => return,
        };
        match tokio::time::timeout(SECRET_TIMEOUT, read_line(&mut stream)).await {
            Ok(Some(line)) if same(&line, &expected) => break stream,
            Ok(Some(line)) if line.split(' ').next().is_some_and(|s| same(s, &secret)) => {
                tracing::warn!(%session, "the sandbox's agent speaks another protocol (a sandbox made before the agent changed)");
                return;
            }
            _ => {
                tracing::debug!(%session, "a connection to the sandbox agent's socket without the secret was dropped")
            }
        }
    };
    // One agent: nobody dials in after it.
    drop((listener, socket));
    let peer = stream.peer_cred().ok().and_then(|c| c.pid());
    match handshake(stream, peer).await {
        Ok((arrival, driver)) => {
            connection.send_replace(Some(arrival));
            let _ = arrivals.send(session);
            drive(session, driver, cancel).await;
        }
        Err(e) => tracing::warn!(%session, "sandbox agent handshake: {e}"),
    }
}

/// The driver of an agent's connection: run until it ends.
type Driver<IO> = hyper::client::conn::http2::Connection<
    hyper_util::rt::TokioIo<IO>,
    RequestBody,
    hyper_util::rt::TokioExecutor,
>;

/// HTTP/2 over `io` with the server as the client: the connection (made by
/// `peer`, where the kernel says), and its driver.
async fn handshake<IO>(io: IO, peer: Option<i32>) -> Result<(Arrival, Driver<IO>), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let (connection, driver) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            // An agent that stops answering (stopped by the sandbox) ends
            // its connection, and so every command waiting on it.
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            // What one stream may hold unread (a terminal whose viewer is
            // slow) is a small part of what the connection may: the other
            // commands' output keeps coming (at most `PER_SESSION`
            // terminals).
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, RequestBody>(io)
            .await?;
    Ok((Arrival { connection, peer }, driver))
}

/// Runs a connection until it ends or the session's link is forgotten.
async fn drive<IO>(session: SessionId, driver: Driver<IO>, cancel: CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::select! {
        ended = driver => if let Err(e) = ended {
            tracing::debug!(%session, "sandbox agent connection ended: {e}");
        },
        () = cancel.cancelled() => {}
    }
}

/// The first line of a connection, without its newline; `None` when it is
/// longer than a secret's or ends first.
async fn read_line(stream: &mut (impl AsyncRead + Unpin)) -> Option<String> {
    let mut line = Vec::with_capacity(SECRET_LINE_MAX);
    let mut byte = [0u8; 1];
    while line.len() <= SECRET_LINE_MAX {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        if byte[0] == b'\n' {
            return String::from_utf8(line).ok();
        }
        line.push(byte[0]);
    }
    None
}
