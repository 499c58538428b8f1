//! Calls on a sandbox's agent ([`paddock_sandbox_agent`]), over the
//! connection [`agent_link`](super::agent_link) holds: a command (`/exec`),
//! its output streamed and capped, a process with its stdin attached
//! (`/spawn`), a terminal (`/pty`), and the workspace's changes
//! (`/fs/watch`).

use super::agent_link::{AgentConnection, RequestBody, SECRET_TIMEOUT};
use super::{
    shell, CappedOutput, ExecOutcome, ExecRequest, OutputSink, OutputStream, Process,
    ProcessControl, Resizer, Result, SandboxError, SpawnRequest, Terminal, MOUNT_POINT, STOP_GRACE,
};
use crate::sync::lock;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use paddock_sandbox_agent::watch::Changes as WorkspaceChanges;
use paddock_sandbox_agent::{
    record, Exec, ExecExit, Kind, ProcessSignal, Pty, Records, SignalGroup, TerminalSize,
    GROUP_HEADER, RECORD_MAX,
};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender};

/// Longest error the agent's answer may explain itself with.
const ERROR_MAX_BYTES: usize = 4096;

/// What to run, as the agent takes it.
fn start_of(argv: Vec<String>, env: &[(String, String)], timeout: Duration) -> Exec {
    Exec {
        argv,
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
/// comes. Cancelling `cancel` has the agent send the command's group
/// `SIGTERM` (`/signal`), and drops the request if it has not ended within
/// [`STOP_GRACE`]; the backstop past the time limit (should the agent not
/// end it) drops it at once. A dropped request has the agent kill the
/// group.
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
    let exec = start_of(shell(&request.command), &request.env, request.timeout);
    let signals = connection.clone();
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
    // Armed by a Stop.
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
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
            () = cancel.cancelled(), if !cancelled => {
                cancelled = true;
                match group {
                    Some(leader) => {
                        grace.as_mut().reset(tokio::time::Instant::now() + STOP_GRACE);
                        // Sent beside the reading of the answer, which goes
                        // on meanwhile.
                        tokio::spawn(terminate(signals.clone(), leader));
                    }
                    None => break,
                }
            }
            () = &mut grace, if cancelled => break,
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

/// Has the agent send `SIGTERM` to the group `leader` leads (it may have
/// ended meanwhile: then nothing is done).
async fn terminate(connection: AgentConnection, leader: u32) {
    let asked = SignalGroup {
        leader: leader as i32,
        signal: ProcessSignal::Term,
    };
    let body = serde_json::to_vec(&asked).unwrap_or_default();
    match ask(connection, "/signal", body, STOP_GRACE).await {
        Ok(answer) if answer.status().is_success() => {}
        Ok(answer) => tracing::debug!("no SIGTERM for group {leader}: {}", answer.status()),
        Err(why) => tracing::debug!("no SIGTERM for group {leader}: {why}"),
    }
}

/// Asks the agent `op` with `body`: its answer, once it starts within
/// `within`, or why not.
pub(super) async fn ask(
    connection: AgentConnection,
    op: &str,
    body: Vec<u8>,
    within: Duration,
) -> std::result::Result<hyper::Response<Incoming>, String> {
    let call = hyper::Request::post(op)
        .body::<RequestBody>(Full::new(Bytes::from(body)).boxed())
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(within, request(connection, call))
        .await
        .map_err(|_| "the sandbox agent did not answer in time".to_owned())?
        .map_err(|e| e.to_string())
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
    connection: AgentConnection,
    call: hyper::Request<RequestBody>,
) -> Result<(Option<u32>, Incoming)> {
    let response = request(connection, call).await?;
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

/// Sends `call` once the connection takes it: the agent's answer, whatever
/// it says.
pub(super) async fn request(
    mut connection: AgentConnection,
    call: hyper::Request<RequestBody>,
) -> Result<hyper::Response<Incoming>> {
    connection.ready().await.map_err(lost)?;
    connection.send_request(call).await.map_err(lost)
}

/// The workspace's changes as the agent sees them, a batch an item, until
/// the stream is dropped (the agent then stops watching).
pub async fn watch(
    connection: AgentConnection,
) -> Result<BoxStream<'static, Result<WorkspaceChanges>>> {
    let call = hyper::Request::post("/fs/watch")
        .body(Full::new(Bytes::new()).boxed())
        .map_err(|e| SandboxError::Failed(e.to_string()))?;
    let (_, body) = send(connection, call).await?;
    let batches =
        futures_util::stream::unfold(Some((body, Records::default())), |state| async move {
            let (mut body, mut records) = state?;
            loop {
                if let Some(record) = records.next_record() {
                    let batch = match record {
                        Ok((Kind::Stdout, json)) => {
                            serde_json::from_slice::<WorkspaceChanges>(&json)
                                .map_err(|e| garbled(e.to_string()))
                        }
                        Ok((other, _)) => Err(garbled(format!("a {other:?} record"))),
                        Err(why) => Err(garbled(why)),
                    };
                    // After a failure, nothing more is read.
                    let more = batch.is_ok().then_some((body, records));
                    return Some((batch, more));
                }
                match body.frame().await? {
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data() {
                            records.push(&data);
                        }
                    }
                    Err(e) => return Some((Err(lost(e)), None)),
                }
            }
        });
    Ok(batches.boxed())
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
    let start = start_of(request.argv.clone(), &request.env, request.timeout);
    let (process, group, _) = attached(connection, "/spawn", &start).await?;
    Ok((process, group))
}

/// Opens a terminal through the agent: a login shell on a pseudo-terminal
/// of `size`, in a session of its own. Its stdin is the keyboard and its
/// output what the terminal shows; with the shell's pid, which leads its
/// process group, for the caller to kill should the agent be gone.
pub async fn terminal(
    connection: AgentConnection,
    env: &[(String, String)],
    size: TerminalSize,
) -> Result<(Terminal, Option<u32>)> {
    let start = Pty {
        env: env.to_vec(),
        cwd: MOUNT_POINT.to_owned(),
        size,
    };
    let (process, group, records) = attached(connection, "/pty", &start).await?;
    let terminal = Terminal {
        process,
        resizer: Resizer(records),
    };
    Ok((terminal, group))
}

/// Starts what `start` says at `path` (`/spawn`, `/pty`) with its stdin
/// attached: the process, its group and where its records go.
async fn attached(
    connection: AgentConnection,
    path: &str,
    start: &impl serde::Serialize,
) -> Result<(Process, Option<u32>, mpsc::Sender<Bytes>)> {
    let start = serde_json::to_vec(start).map_err(|e| SandboxError::Failed(e.to_string()))?;
    let (stdin, records) = mpsc::channel::<Bytes>(16);
    stdin
        .send(Bytes::from(record(Kind::Start, &start)))
        .await
        .map_err(|_| SandboxError::Failed("the process's input closed".into()))?;
    let sent = StreamBody::new(futures_util::stream::unfold(
        records,
        |mut records| async move { records.recv().await.map(|r| (Ok(Frame::data(r)), records)) },
    ));
    let call = hyper::Request::post(path)
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
            records: PollSender::new(stdin.clone()),
        }),
        output,
        control: Box::new(AgentProcess { stop, exit }),
    };
    Ok((process, group, stdin))
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
