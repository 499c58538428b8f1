//! `paddock-sandbox-agent --connect <socket>`: started in a sandbox with its
//! secret on stdin, it hides itself from the sandbox's other processes (not
//! dumpable: its memory and environment unreadable to them), dials the
//! server, proves itself with the secret, and runs what the server asks
//! until the connection ends. One static binary, so it runs in any image.
//!
//! `paddock-sandbox-agent --stdio`: the same, served on its own stdin and
//! stdout, the streams of the `docker exec` that started it (a sandbox on a
//! remote Docker host); they are the server's alone, so no secret is said.
//!
//! `paddock-sandbox-agent --pty-shell` is how it starts a terminal's shell
//! ([`pty`]): itself again, on the terminal, which it makes its controlling
//! one before it becomes the shell. `--kill-session <pid>` kills a
//! terminal's shell and its jobs, for the server to end them through
//! `docker exec` should the agent be gone.

mod files;
mod pty;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use paddock_sandbox_agent::{
    record, Exec, ExecExit, Kind, ProcessSignal, Records, SignalGroup, GROUP_HEADER, PROTOCOL,
    START_MAX, STDIO_HELLO,
};
use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use std::collections::HashMap;
use std::convert::Infallible;
use std::os::fd::AsFd;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How long output may still come once the command ended and its group was
/// killed (a pipe held by a process that left the group).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// An answer's body; an error resets the answer's stream (a file that
/// could not be read to its end).
type Body = BoxBody<Bytes, std::io::Error>;

/// Where the agent meets the server.
enum Meeting {
    /// The server's socket, dialled, with the secret.
    Socket(String),
    /// This process's stdin and stdout.
    Stdio,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let meeting = match (args.next().as_deref(), args.next()) {
        (Some("--connect"), Some(socket)) => Meeting::Socket(socket),
        (Some("--stdio"), None) => Meeting::Stdio,
        (Some("--pty-shell"), None) => return pty::become_shell(),
        (Some("--kill-session"), Some(leader)) => {
            return match leader.parse().ok().and_then(Pid::from_raw) {
                Some(leader) => {
                    pty::kill_session(leader);
                    ExitCode::SUCCESS
                }
                None => ExitCode::from(2),
            }
        }
        _ => {
            eprintln!(
                "usage: paddock-sandbox-agent --connect <socket>  (the secret on stdin)\n       \
                 paddock-sandbox-agent --stdio\n       \
                 paddock-sandbox-agent --kill-session <pid>"
            );
            return ExitCode::from(2);
        }
    };
    // Before the secret comes: nobody else in the sandbox may read it from
    // this process (its memory, its stdin through /proc).
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        eprintln!("paddock-sandbox-agent: cannot hide from the sandbox: {e}");
        return ExitCode::from(1);
    }
    let first_line = match &meeting {
        Meeting::Socket(_) => {
            let mut secret = String::new();
            if std::io::stdin().read_line(&mut secret).is_err() || secret.trim().is_empty() {
                eprintln!("paddock-sandbox-agent: no secret on stdin");
                return ExitCode::from(2);
            }
            format!("{} {PROTOCOL}\n", secret.trim())
        }
        Meeting::Stdio => format!("{STDIO_HELLO} {PROTOCOL}\n"),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("paddock-sandbox-agent: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(meet(meeting, first_line)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paddock-sandbox-agent: {e}");
            ExitCode::from(1)
        }
    }
}

/// What runs now, by the pid that leads it: killed when the connection
/// ends, so none outlives its server's hold on it.
type Groups = Arc<Mutex<HashMap<i32, Reach>>>;

/// What a command's pid leads.
#[derive(Clone)]
enum Reach {
    /// Its process group (`/exec`, `/spawn`), and whether `/signal` has
    /// asked it to end.
    Group(Arc<AtomicBool>),
    /// Its session: a terminal's shell and every job it started.
    Session,
}

/// Kills everything `leader` leads.
fn end(leader: i32, reach: &Reach) {
    let Some(pid) = Pid::from_raw(leader) else {
        return;
    };
    match reach {
        Reach::Group(_) => {
            let _ = kill_process_group(pid, Signal::KILL);
        }
        Reach::Session => pty::kill_session(pid),
    }
}

fn forget(groups: &Groups, id: Option<i32>) {
    if let (Ok(mut groups), Some(id)) = (groups.lock(), id) {
        groups.remove(&id);
    }
}

/// Meets the server, says `first_line`, and serves it until it leaves.
async fn meet(meeting: Meeting, first_line: String) -> std::io::Result<()> {
    match meeting {
        Meeting::Socket(socket) => {
            let mut stream = tokio::net::UnixStream::connect(socket).await?;
            stream.write_all(first_line.as_bytes()).await?;
            serve(stream).await
        }
        Meeting::Stdio => {
            // Pipes (a `docker exec` without a terminal), read and written
            // without blocking the agent's one thread.
            let input = tokio::net::unix::pipe::Receiver::from_owned_fd(
                std::io::stdin().as_fd().try_clone_to_owned()?,
            )?;
            let mut output = tokio::net::unix::pipe::Sender::from_owned_fd(
                std::io::stdout().as_fd().try_clone_to_owned()?,
            )?;
            output.write_all(first_line.as_bytes()).await?;
            serve(tokio::io::join(input, output)).await
        }
    }
}

async fn serve(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
) -> std::io::Result<()> {
    let groups = Groups::default();
    let served = {
        let groups = groups.clone();
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            // A request body left unread (keys for a terminal whose job does
            // not read them) holds a small part of what the connection may,
            // so the others' bodies keep coming.
            .initial_stream_window_size(256 * 1024)
            .initial_connection_window_size(4 * 1024 * 1024)
            .serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper::service::service_fn(move |request| route(request, groups.clone())),
            )
            .await
    };
    for (leader, reach) in groups.lock().map(|g| g.clone()).unwrap_or_default() {
        end(leader, &reach);
    }
    served.map_err(std::io::Error::other)
}

async fn route(request: Request<Incoming>, groups: Groups) -> Result<Response<Body>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::POST, "/exec") => match read_json::<Exec>(request).await {
            Ok(exec) => run(exec, None, groups),
            Err(why) => answer(StatusCode::BAD_REQUEST, &why),
        },
        (&Method::POST, "/spawn") => {
            let mut body = request.into_body();
            match read_start(&mut body).await {
                Ok((exec, records)) => run(exec, Some((body, records)), groups),
                Err(why) => answer(StatusCode::BAD_REQUEST, &why),
            }
        }
        (&Method::POST, "/signal") => match read_json::<SignalGroup>(request).await {
            Ok(asked) => signal(asked, &groups),
            Err(why) => answer(StatusCode::BAD_REQUEST, &why),
        },
        (&Method::POST, "/pty") => {
            let mut body = request.into_body();
            match read_start(&mut body).await {
                Ok((start, records)) => pty::open(start, body, records, groups),
                Err(why) => answer(StatusCode::BAD_REQUEST, &why),
            }
        }
        (&Method::POST, "/fs/read") => files::read(request).await,
        (&Method::POST, "/fs/list") => files::list(request).await,
        (&Method::POST, "/fs/write") => files::write(request).await,
        (&Method::POST, "/fs/archive") => files::archive(request).await,
        (&Method::POST, "/fs/delete") => files::delete(request).await,
        (&Method::POST, "/fs/watch") => files::watch().await,
        (&Method::POST, "/fs/stat") => files::stat(request).await,
        (&Method::POST, "/fs/glob") => files::glob(request).await,
        (&Method::POST, "/fs/grep") => files::grep(request).await,
        _ => answer(StatusCode::NOT_FOUND, "no such operation"),
    })
}

/// `/signal`: the signal, to the whole group of a command this agent runs
/// (never a terminal's session, nor any other process). One that asks it
/// to end (`INT`, `TERM`, `HUP`, `QUIT`) lets the rest of the group finish
/// ending should the command end first ([`run`]).
fn signal(asked: SignalGroup, groups: &Groups) -> Response<Body> {
    let asked_to_end = groups.lock().ok().and_then(|g| match g.get(&asked.leader) {
        Some(Reach::Group(asked_to_end)) => Some(asked_to_end.clone()),
        _ => None,
    });
    let Some((leader, asked_to_end)) = Pid::from_raw(asked.leader).zip(asked_to_end) else {
        return answer(StatusCode::NOT_FOUND, "no such command runs");
    };
    if matches!(
        asked.signal,
        ProcessSignal::Int | ProcessSignal::Term | ProcessSignal::Hup | ProcessSignal::Quit
    ) {
        asked_to_end.store(true, Ordering::SeqCst);
    }
    let signal = match asked.signal {
        ProcessSignal::Int => Signal::INT,
        ProcessSignal::Term => Signal::TERM,
        ProcessSignal::Hup => Signal::HUP,
        ProcessSignal::Quit => Signal::QUIT,
        ProcessSignal::Kill => Signal::KILL,
        ProcessSignal::Usr1 => Signal::USR1,
        ProcessSignal::Usr2 => Signal::USR2,
    };
    match kill_process_group(leader, signal) {
        Ok(()) => answer(StatusCode::NO_CONTENT, ""),
        Err(e) => answer(StatusCode::GONE, &format!("the command ended: {e}")),
    }
}

fn answer(status: StatusCode, text: &str) -> Response<Body> {
    whole(status, text.as_bytes().to_vec())
}

/// An answer of `bytes`, whole.
fn whole(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let body = Full::new(Bytes::from(bytes)).map_err(|never: Infallible| match never {});
    let mut response = Response::new(body.boxed());
    *response.status_mut() = status;
    response
}

async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, String> {
    let body = http_body_util::Limited::new(request.into_body(), START_MAX)
        .collect()
        .await
        .map_err(|e| format!("cannot read the request: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("not a request: {e}"))
}

/// `/spawn`'s and `/pty`'s first record: what to run; and the records read
/// after it.
async fn read_start<T: serde::de::DeserializeOwned>(
    body: &mut Incoming,
) -> Result<(T, Records), String> {
    let mut records = Records::of_request();
    loop {
        if let Some(record) = records.next_record() {
            return match record? {
                (Kind::Start, json) => serde_json::from_slice(&json)
                    .map(|start| (start, records))
                    .map_err(|e| format!("not a request: {e}")),
                _ => Err("the first record must say what to run".into()),
            };
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    records.push(&data);
                }
            }
            _ => return Err("the request ended before saying what to run".into()),
        }
    }
}

/// Copies the request's stdin records into the command's stdin, which
/// closes when the request's body ends.
async fn feed(mut body: Incoming, mut records: Records, mut stdin: tokio::process::ChildStdin) {
    loop {
        while let Some(record) = records.next_record() {
            match record {
                Ok((Kind::Stdin, bytes)) => {
                    if stdin.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    records.push(&data);
                }
            }
            _ => return,
        }
    }
}

/// Starts the command (its stdin fed from `stdin`'s records: `/spawn`, or
/// none: `/exec`) and answers with its output as it comes, then how it
/// ended. Its group is killed when it ends, at its time limit, and when the
/// server stops listening; a command asked to end (`/signal`, Stop) that
/// ends while others of its group still run leaves them until they end too
/// or the server stops listening, so that they finish ending (git removing
/// its lock file, under a shell that ended at once).
fn run(exec: Exec, stdin: Option<(Incoming, Records)>, groups: Groups) -> Response<Body> {
    let Some((program, args)) = exec.argv.split_first() else {
        return answer(StatusCode::BAD_REQUEST, "nothing to run: argv is empty");
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("PWD", &exec.cwd)
        .envs(exec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&exec.cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let oom_before = oom_kills();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("cannot start {program:?}: {e}"),
            )
        }
    };
    let id = child.id().map(|id| id as i32);
    let group = id.and_then(Pid::from_raw);
    let asked_to_end = Arc::new(AtomicBool::new(false));
    if let Some(id) = id {
        if let Ok(mut groups) = groups.lock() {
            groups.insert(id, Reach::Group(asked_to_end.clone()));
        }
    }
    let group_runs = move || group.is_some_and(|g| test_kill_process_group(g).is_ok());
    // Once the command is reaped and its group killed, its id may be
    // another's: nothing is killed through it any more.
    let reaped = Arc::new(AtomicBool::new(false));
    let kill = {
        let reaped = reaped.clone();
        move || {
            if let (Some(group), false) = (group, reaped.load(Ordering::SeqCst)) {
                let _ = kill_process_group(group, Signal::KILL);
            }
        }
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill();
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "no output pipes");
    };
    if let (Some((body, records)), Some(pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(feed(body, records, pipe));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let timeout = tokio::time::sleep(Duration::from_millis(exec.timeout_ms));
        tokio::pin!(timeout);
        // Armed when the command ends: what its pipes still hold is read
        // until then (a process that left the group may hold them open).
        let drain = tokio::time::sleep(Duration::from_secs(86_400 * 365));
        tokio::pin!(drain);
        let mut timed_out = false;
        let mut outputs = Outputs::new(stdout, stderr);
        let mut status = None;
        // The command ended when asked to, and others of its group run on.
        let mut lingering = false;
        let mut linger_check = tokio::time::interval(Duration::from_millis(50));
        linger_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Its entry, unless the pid is another command's by now.
        let forget_ours = || {
            if let (Ok(mut groups), Some(id)) = (groups.lock(), id) {
                if matches!(groups.get(&id), Some(Reach::Group(ours)) if Arc::ptr_eq(ours, &asked_to_end))
                {
                    groups.remove(&id);
                }
            }
        };
        while !(status.is_some() && outputs.done() && !lingering) {
            tokio::select! {
                read = outputs.next(), if !outputs.done() => {
                    if let Some(record) = read {
                        if tx.send(Bytes::from(record)).await.is_err() {
                            kill();
                        }
                    }
                }
                exited = child.wait(), if status.is_none() => {
                    lingering = asked_to_end.load(Ordering::SeqCst) && group_runs();
                    if !lingering {
                        // Whatever it left running in its group goes with it.
                        kill();
                        reaped.store(true, Ordering::SeqCst);
                        forget_ours();
                    }
                    status = Some(exited);
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                _ = linger_check.tick(), if lingering => {
                    if !group_runs() {
                        lingering = false;
                        reaped.store(true, Ordering::SeqCst);
                        forget_ours();
                        drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                    }
                }
                // The time limit holds for the rest of the group too.
                () = &mut timeout, if !timed_out && (status.is_none() || lingering) => {
                    timed_out = true;
                    kill();
                }
                () = &mut drain, if status.is_some() && !lingering => break,
                () = tx.closed() => {
                    kill();
                    if status.is_none() {
                        let _ = child.wait().await;
                    }
                    forget_ours();
                    return;
                }
            }
        }
        let oom = oom_kills().saturating_sub(oom_before);
        let _ = tx.send(exit_record(status, timed_out, oom)).await;
    });
    streamed(rx, id)
}

/// The last record of a command's answer: how it ended (`status`: its
/// reaping, if it was reaped).
fn exit_record(
    status: Option<std::io::Result<std::process::ExitStatus>>,
    timed_out: bool,
    oom_kills: u64,
) -> Bytes {
    use std::os::unix::process::ExitStatusExt;
    let status = status.and_then(Result::ok);
    let exit = ExecExit {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        oom_kills,
    };
    let exit = serde_json::to_vec(&exit).unwrap_or_default();
    Bytes::from(record(Kind::Exit, &exit))
}

/// The answer of a command that runs: its records as they come, and the
/// pid that leads it.
fn streamed(records: mpsc::Receiver<Bytes>, leader: Option<i32>) -> Response<Body> {
    let body = StreamBody::new(futures_util::stream::unfold(
        records,
        |mut records| async move {
            let record = records.recv().await?;
            Some((Ok::<_, std::io::Error>(Frame::data(record)), records))
        },
    ));
    let mut response = Response::new(BodyExt::boxed(body));
    if let Some(leader) = leader {
        response.headers_mut().insert(GROUP_HEADER, leader.into());
    }
    response
}

/// A command's stdout and stderr, read together.
struct Outputs<O, E> {
    stdout: Option<O>,
    stderr: Option<E>,
}

impl<O: AsyncRead + Unpin, E: AsyncRead + Unpin> Outputs<O, E> {
    fn new(stdout: O, stderr: E) -> Self {
        Self {
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    fn done(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }

    /// The next chunk of either, as a record; `None` when one of them
    /// just ended.
    async fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = [0u8; 16 * 1024];
        let mut err = [0u8; 16 * 1024];
        tokio::select! {
            n = read(&mut self.stdout, &mut out), if self.stdout.is_some() => match n {
                0 => { self.stdout = None; None }
                n => Some(record(Kind::Stdout, &out[..n])),
            },
            n = read(&mut self.stderr, &mut err), if self.stderr.is_some() => match n {
                0 => { self.stderr = None; None }
                n => Some(record(Kind::Stderr, &err[..n])),
            },
        }
    }
}

/// Bytes read, 0 at the end (or on an error, which ends it too).
async fn read<R: AsyncRead + Unpin>(reader: &mut Option<R>, buf: &mut [u8]) -> usize {
    match reader {
        Some(r) => r.read(buf).await.unwrap_or(0),
        None => 0,
    }
}

/// Processes the sandbox's memory limit has killed so far (cgroup v2, else
/// v1).
fn oom_kills() -> u64 {
    [
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    })
    .unwrap_or(0)
}
