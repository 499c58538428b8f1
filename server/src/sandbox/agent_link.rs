//! The server's end of each Docker sandbox's agent
//! ([`paddock_sandbox_agent`]): one Unix socket per session, in a host
//! folder (`<workspace root>/<session>.agent`) mounted read-only into the
//! sandbox, which the agent dials. Its first line must be the session's
//! secret (256 random bits, made here, handed to the agent on its stdin when
//! it is started): anything else, such as a process of the sandbox trying
//! its luck, is dropped unanswered. Then the connection is HTTP/2 with the
//! server as the client, and every command of the session is one request
//! on it.

use super::{
    CappedOutput, ExecOutcome, ExecRequest, OutputSink, OutputStream, Process, ProcessControl,
    Result, SandboxError, SpawnRequest, MOUNT_POINT,
};
use crate::secret::{random_hex, same};
use crate::sync::lock;
use app::domain::SessionId;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use paddock_sandbox_agent::{record, Exec, ExecExit, Kind, Records, RECORD_MAX};
use paddock_sandbox_agent::{GROUP_HEADER, PROTOCOL, SECRET_LINE_MAX, SOCKET_DIR, SOCKET_NAME};
use std::collections::HashMap;
use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{ready, Poll};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::sync::PollSender;

/// How long a connection may take to say its secret.
const SECRET_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the connection is pinged, and how long an answer may take: a
/// stopped agent is noticed within half a minute, and a sandbox the server
/// itself pauses for a moment (host-side git) is not taken for one.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest error the agent's answer may explain itself with.
const ERROR_MAX_BYTES: usize = 4096;

/// A live connection to an agent: requests are sent on clones of it.
pub type AgentConnection = SendRequest<RequestBody>;
/// A request's body: whole (`/exec`) or streamed (`/spawn`'s stdin).
pub type RequestBody = BoxBody<Bytes, Infallible>;

pub struct AgentLinks {
    root: PathBuf,
    links: Mutex<HashMap<SessionId, Link>>,
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
        }
    }

    /// The host folder of a session's socket, mounted at [`SOCKET_DIR`].
    pub fn socket_dir(&self, session: SessionId) -> PathBuf {
        self.root.join(format!("{session}.agent"))
    }

    /// Where the agent dials, inside the sandbox.
    pub fn socket_in_sandbox() -> String {
        format!("{SOCKET_DIR}/{SOCKET_NAME}")
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

    /// Listens on the session's socket with a new secret, for one agent: the
    /// secret, and a way to wait for the connection that says it (then the
    /// socket is closed, so a secret taken later opens nothing).
    pub fn listen(
        &self,
        session: SessionId,
    ) -> std::io::Result<(String, watch::Receiver<Option<Arrival>>)> {
        self.forget(session);
        self.prepare(session)?;
        let path = self.socket_dir(session).join(SOCKET_NAME);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path)?;
        // The sandbox user connects; the secret is the lock.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        let secret = random_hex();
        let (connection, connected) = watch::channel(None);
        let cancel = CancellationToken::new();
        tokio::spawn(accept(
            session,
            listener,
            secret.clone(),
            connection.clone(),
            cancel.clone(),
        ));
        lock(&self.links).insert(session, Link { connection, cancel });
        Ok((secret, connected))
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

async fn accept(
    session: SessionId,
    listener: tokio::net::UnixListener,
    secret: String,
    connection: watch::Sender<Option<Arrival>>,
    cancel: CancellationToken,
) {
    let expected = format!("{secret} {PROTOCOL}");
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(PathBuf::from));
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
    drop(listener);
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
    let peer = stream.peer_cred().ok().and_then(|c| c.pid());
    let io = hyper_util::rt::TokioIo::new(stream);
    let handshake = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        // An agent that stops answering (stopped by the sandbox) ends its
        // connection, and so every command waiting on it.
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .handshake::<_, RequestBody>(io)
        .await;
    let (sender, driver) = match handshake {
        Ok(made) => made,
        Err(e) => {
            tracing::warn!(%session, "sandbox agent handshake: {e}");
            return;
        }
    };
    connection.send_replace(Some(Arrival {
        connection: sender,
        peer,
    }));
    tokio::select! {
        ended = driver => if let Err(e) = ended {
            tracing::debug!(%session, "sandbox agent connection ended: {e}");
        },
        () = cancel.cancelled() => {}
    }
}

/// The first line of a connection, without its newline; `None` when it is
/// longer than a secret's or ends first.
async fn read_line(stream: &mut tokio::net::UnixStream) -> Option<String> {
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

/// What to run, as the agent takes it.
fn start_of(command: &str, env: &[(String, String)], timeout: Duration) -> Exec {
    Exec {
        command: command.to_owned(),
        env: env.to_vec(),
        cwd: MOUNT_POINT.to_owned(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

/// How a command through the agent went: its outcome, and its process
/// group when the agent could not be counted on to have ended it (it went
/// away, or it let the time limit pass), for the caller to end another way.
pub struct AgentRun {
    pub outcome: Result<ExecOutcome>,
    pub orphaned_group: Option<u32>,
}

/// Runs `request` through the agent: output to `sink` and capped as it
/// comes; cancelling `cancel` (or the backstop past the time limit, should
/// the agent not end it) drops the request, and the agent kills the
/// command's group.
pub async fn exec(
    connection: AgentConnection,
    request: &ExecRequest,
    cancel: &CancellationToken,
    sink: OutputSink<'_>,
) -> AgentRun {
    let ran = |outcome: Result<ExecOutcome>, group| AgentRun {
        outcome,
        orphaned_group: group,
    };
    let exec = start_of(&request.command, &request.env, request.timeout);
    let call = serde_json::to_vec(&exec)
        .map_err(|e| SandboxError::Failed(e.to_string()))
        .and_then(|body| {
            hyper::Request::post("/exec")
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)).boxed())
                .map_err(|e| SandboxError::Failed(e.to_string()))
        });
    let call = match call {
        Ok(call) => call,
        Err(e) => return ran(Err(e), None),
    };
    let backstop = tokio::time::sleep(request.timeout + Duration::from_secs(5));
    tokio::pin!(backstop);
    let cut_short = |timed_out: bool, cancelled: bool| {
        ExecOutcome::new(None, CappedOutput::new(0), timed_out, cancelled, false)
    };
    let (group, mut body) = tokio::select! {
        sent = send(connection, call) => match sent {
            Ok(answer) => answer,
            Err(e) => return ran(Err(e), None),
        },
        () = cancel.cancelled() => return ran(Ok(cut_short(false, true)), None),
        () = &mut backstop => return ran(Ok(cut_short(true, false)), None),
    };
    let mut captured = CappedOutput::new(request.output_cap);
    let mut records = Records::default();
    let mut ended: Option<ExecExit> = None;
    let (mut cancelled, mut backstop_fired) = (false, false);
    while ended.is_none() {
        tokio::select! {
            frame = body.frame() => {
                let data = match frame {
                    None => break,
                    Some(Err(e)) => return ran(Err(lost(e)), group),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue,
                    },
                };
                records.push(&data);
                while let Some(record) = records.next_record() {
                    match record {
                        Ok((Kind::Stdout, bytes)) => output(OutputStream::Stdout, &bytes, sink, &mut captured),
                        Ok((Kind::Stderr, bytes)) => output(OutputStream::Stderr, &bytes, sink, &mut captured),
                        Ok((Kind::Exit, json)) => match exit_of(&json) {
                            Ok(exit) => ended = Some(exit),
                            Err(e) => return ran(Err(e), group),
                        },
                        Ok((other, _)) => return ran(Err(garbled(format!("a {other:?} record"))), group),
                        Err(why) => return ran(Err(garbled(why)), group),
                    }
                }
            }
            () = cancel.cancelled() => { cancelled = true; break }
            () = &mut backstop => { backstop_fired = true; break }
        }
    }
    // Dropping the answer resets the request: the agent kills the group.
    drop(body);
    match ended {
        Some(exit) => ran(
            Ok(ExecOutcome::new(
                exit_code(&exit),
                captured,
                exit.timed_out,
                cancelled,
                exit.oom_kills > 0 && (exit.signal == Some(9) || exit.code == Some(137)),
            )),
            None,
        ),
        None if cancelled => ran(
            Ok(ExecOutcome::new(None, captured, false, true, false)),
            None,
        ),
        None if backstop_fired => ran(
            Ok(ExecOutcome::new(None, captured, true, false, false)),
            group,
        ),
        None => ran(
            Err(SandboxError::Failed(
                "the sandbox agent went away mid-command".into(),
            )),
            group,
        ),
    }
}

/// The exit code as a shell gives it: 128 + the signal for a command a
/// signal ended.
fn exit_code(exit: &ExecExit) -> Option<i64> {
    exit.code
        .map(i64::from)
        .or(exit.signal.map(|s| 128 + i64::from(s)))
}

fn output(stream: OutputStream, bytes: &[u8], sink: OutputSink<'_>, captured: &mut CappedOutput) {
    sink(stream, bytes);
    captured.push(bytes);
}

fn lost(e: hyper::Error) -> SandboxError {
    SandboxError::Failed(format!("the sandbox agent: {e}"))
}

fn garbled(why: String) -> SandboxError {
    SandboxError::Failed(format!("the sandbox agent said something else: {why}"))
}

fn exit_of(json: &[u8]) -> Result<ExecExit> {
    serde_json::from_slice(json).map_err(|e| garbled(e.to_string()))
}

/// Sends `call` once the connection takes it: the command's process group
/// (its header) and the answer's body, or what the agent said was wrong.
async fn send(
    mut connection: AgentConnection,
    call: hyper::Request<RequestBody>,
) -> Result<(Option<u32>, Incoming)> {
    connection.ready().await.map_err(lost)?;
    let response = connection.send_request(call).await.map_err(lost)?;
    let status = response.status();
    let group = response
        .headers()
        .get(GROUP_HEADER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = response.into_body();
    if status.is_success() {
        return Ok((group, body));
    }
    let said = http_body_util::Limited::new(body, ERROR_MAX_BYTES).collect();
    let text = match tokio::time::timeout(SECRET_TIMEOUT, said).await {
        Ok(Ok(text)) => text.to_bytes(),
        _ => Bytes::new(),
    };
    Err(SandboxError::Failed(format!(
        "the sandbox agent: {}",
        String::from_utf8_lossy(&text)
    )))
}

/// Starts `request` through the agent with its stdin attached: what is
/// written to the process's stdin goes as records on the request's body,
/// its output comes as the answer's records, and killing it (or dropping
/// it) drops the request, so the agent kills its group. With its process
/// group, for the caller to kill should the agent be gone.
pub async fn spawn(
    connection: AgentConnection,
    request: &SpawnRequest,
) -> Result<(Process, Option<u32>)> {
    let start = start_of(&request.command, &request.env, request.timeout);
    let start = serde_json::to_vec(&start).map_err(|e| SandboxError::Failed(e.to_string()))?;
    let (stdin, records) = mpsc::channel::<Bytes>(16);
    stdin
        .send(Bytes::from(record(Kind::Start, &start)))
        .await
        .map_err(|_| SandboxError::Failed("the process's input closed".into()))?;
    let sent = StreamBody::new(futures_util::stream::unfold(
        records,
        |mut records| async move { records.recv().await.map(|r| (Ok(Frame::data(r)), records)) },
    ));
    let call = hyper::Request::post("/spawn")
        .body(BodyExt::boxed(sent))
        .map_err(|e| SandboxError::Failed(e.to_string()))?;
    let (group, body) = send(connection, call).await?;
    let stop = CancellationToken::new();
    let exit: Arc<Mutex<Option<ExecExit>>> = Arc::default();
    let reading = Reading {
        body,
        records: Records::default(),
        stop: stop.clone(),
        exit: exit.clone(),
    };
    let output = futures_util::stream::unfold(Some(reading), |reading| async move {
        let mut reading = reading?;
        let item = reading.next().await?;
        // After a failure, nothing more is read.
        let more = item.is_ok().then_some(reading);
        Some((item, more))
    })
    .boxed();
    let process = Process {
        stdin: Box::pin(StdinRecords {
            records: PollSender::new(stdin),
        }),
        output,
        control: Box::new(AgentProcess { stop, exit }),
    };
    Ok((process, group))
}

/// A spawned process's answer as it is read.
struct Reading {
    body: Incoming,
    records: Records,
    stop: CancellationToken,
    exit: Arc<Mutex<Option<ExecExit>>>,
}

impl Reading {
    /// The next piece of output; `None` at the end (its exit noted), or once
    /// the process is killed.
    async fn next(&mut self) -> Option<Result<(OutputStream, Bytes)>> {
        loop {
            if let Some(record) = self.records.next_record() {
                return match record {
                    Ok((Kind::Stdout, bytes)) => {
                        Some(Ok((OutputStream::Stdout, Bytes::from(bytes))))
                    }
                    Ok((Kind::Stderr, bytes)) => {
                        Some(Ok((OutputStream::Stderr, Bytes::from(bytes))))
                    }
                    Ok((Kind::Exit, json)) => match exit_of(&json) {
                        Ok(ended) => {
                            *lock(&self.exit) = Some(ended);
                            None
                        }
                        Err(e) => Some(Err(e)),
                    },
                    Ok((other, _)) => Some(Err(garbled(format!("a {other:?} record")))),
                    Err(why) => Some(Err(garbled(why))),
                };
            }
            let frame = tokio::select! {
                frame = self.body.frame() => frame?,
                () = self.stop.cancelled() => return None,
            };
            match frame {
                Err(e) => return Some(Err(lost(e))),
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.records.push(&data);
                    }
                }
            }
        }
    }
}

/// A spawned process's stdin: each write a stdin record on the request.
struct StdinRecords {
    records: PollSender<Bytes>,
}

impl AsyncWrite for StdinRecords {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let closed = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        if ready!(self.records.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(closed()));
        }
        let chunk = &buf[..buf.len().min(RECORD_MAX - 8)];
        self.records
            .send_item(Bytes::from(record(Kind::Stdin, chunk)))
            .map_err(|_| closed())?;
        Poll::Ready(Ok(chunk.len()))
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Closes the process's stdin.
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.records.close();
        Poll::Ready(Ok(()))
    }
}

struct AgentProcess {
    stop: CancellationToken,
    exit: Arc<Mutex<Option<ExecExit>>>,
}

#[async_trait::async_trait]
impl ProcessControl for AgentProcess {
    async fn kill(&self) {
        self.stop.cancel();
    }

    async fn exit_code(&self) -> Result<Option<i64>> {
        let exit = *lock(&self.exit);
        Ok(exit
            .as_ref()
            .and_then(exit_code)
            .filter(|_| !self.stop.is_cancelled()))
    }
}
