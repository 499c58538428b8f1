//! `/pty`: a terminal in the sandbox. A pseudo-terminal pair, and a login
//! shell on it in a session of its own: the agent starts itself again with
//! `--pty-shell` on the terminal ([`become_shell`]), which leaves the
//! agent's session, takes the terminal as its controlling one and becomes
//! the shell. What the terminal shows is the answer's stdout records; the
//! request's stdin records are typed into it and its resize records resize
//! it (the shell's foreground job gets `SIGWINCH`). When the request ends
//! (the server closed the terminal, or went away), every process of the
//! shell's session is killed, background jobs included; so is the rest of
//! it when the shell exits.

use super::{answer, exit_record, forget, streamed, Body, Groups, Reach, DRAIN_AFTER_EXIT};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use paddock_sandbox_agent::{record, Kind, Pty, Records, TerminalSize};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::process::{kill_process, Pid, Signal};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// The shell a terminal runs: bash where the image has it.
const SHELLS: [&str; 2] = ["/bin/bash", "/bin/sh"];

/// `--pty-shell`: on the terminal (stdin, stdout and stderr), in a session
/// of its own with the terminal as its controlling one, becomes the shell.
pub fn become_shell() -> ExitCode {
    if let Err(e) =
        rustix::process::setsid().and_then(|_| rustix::process::ioctl_tiocsctty(std::io::stdin()))
    {
        eprintln!("paddock-sandbox-agent: cannot take the terminal: {e}");
        return ExitCode::from(126);
    }
    use std::os::unix::process::CommandExt;
    let shell = SHELLS
        .into_iter()
        .find(|s| std::path::Path::new(s).exists())
        .unwrap_or(SHELLS[1]);
    let e = std::process::Command::new(shell).arg("-l").exec();
    eprintln!("paddock-sandbox-agent: cannot start {shell}: {e}");
    ExitCode::from(127)
}

fn winsize(size: TerminalSize) -> Winsize {
    Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A new pseudo-terminal of `size`: its controlling side (this process's)
/// and the terminal (the shell's).
fn pair(size: TerminalSize) -> std::io::Result<(OwnedFd, OwnedFd)> {
    // Close-on-exec: no command started later (the agent's own, another
    // terminal's) may hold this terminal's other side.
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let terminal = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::termios::tcsetwinsize(&master, winsize(size))?;
    rustix::fs::fcntl_setfl(&master, OFlags::NONBLOCK)?;
    Ok((master, terminal))
}

/// Starts the shell and answers with what its terminal shows, then how it
/// ended.
pub fn open(start: Pty, body: Incoming, records: Records, groups: Groups) -> Response<Body> {
    if !start.size.is_sane() {
        return answer(
            StatusCode::BAD_REQUEST,
            "a terminal has 1 to 1000 rows and columns",
        );
    }
    let started = pair(start.size).and_then(|(master, terminal)| {
        // Deprecated for descriptors that may be closed behind its back;
        // an `OwnedFd` it owns cannot be (the safe alternative is `unsafe`).
        #[allow(deprecated)]
        let master = AsyncFd::new(master)?;
        let on_terminal = || terminal.try_clone().map(Stdio::from);
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command
            .arg("--pty-shell")
            .envs(start.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&start.cwd)
            .stdin(on_terminal()?)
            .stdout(on_terminal()?)
            .stderr(on_terminal()?)
            .kill_on_drop(false);
        let child = command.spawn()?;
        // Only the shell's session holds the terminal now: once it is gone,
        // reading the other side ends.
        drop(command);
        drop(terminal);
        Ok((master, child))
    });
    let (master, mut child) = match started {
        Ok(started) => started,
        Err(e) => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot open a terminal: {e}"),
            )
        }
    };
    let leader = child.id().map(|id| id as i32);
    if let (Some(leader), Ok(mut groups)) = (leader, groups.lock()) {
        groups.insert(leader, Reach::Session);
    }
    // Once the shell is reaped and its session killed, its pid may be
    // another's: nothing is killed through it any more.
    let reaped = Arc::new(AtomicBool::new(false));
    let kill = {
        let reaped = reaped.clone();
        move || {
            if let (Some(leader), false) = (leader, reaped.load(Ordering::SeqCst)) {
                // The shell itself first: until it has made its session (a
                // moment after it starts), the session has no members. Its
                // pid is not another's while it is this process's child.
                if let Some(pid) = Pid::from_raw(leader) {
                    let _ = kill_process(pid, Signal::KILL);
                }
                super::end(leader, &Reach::Session);
            }
        }
    };
    let master = Arc::new(master);
    tokio::spawn(type_into(body, records, master.clone()));
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let drain = tokio::time::sleep(Duration::from_secs(86_400 * 365));
        tokio::pin!(drain);
        let mut shown = vec![0u8; 16 * 1024];
        let mut showing = true;
        let mut status = None;
        while showing || status.is_none() {
            tokio::select! {
                n = read(&master, &mut shown), if showing => match n {
                    0 => showing = false,
                    n => {
                        if tx.send(Bytes::from(record(Kind::Stdout, &shown[..n]))).await.is_err() {
                            kill();
                        }
                    }
                },
                exited = child.wait(), if status.is_none() => {
                    kill();
                    reaped.store(true, Ordering::SeqCst);
                    forget(&groups, leader);
                    status = Some(exited);
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                () = &mut drain, if status.is_some() => break,
                () = tx.closed() => {
                    kill();
                    if status.is_none() {
                        let _ = child.wait().await;
                        forget(&groups, leader);
                    }
                    return;
                }
            }
        }
        let _ = tx.send(exit_record(status, false, 0)).await;
    });
    streamed(rx, leader)
}

/// Types the request's stdin records into the terminal and applies its
/// resize records, until the request ends.
async fn type_into(mut body: Incoming, mut records: Records, master: Arc<AsyncFd<OwnedFd>>) {
    loop {
        while let Some(record) = records.next_record() {
            match record {
                Ok((Kind::Stdin, bytes)) => {
                    if write_all(&master, &bytes).await.is_err() {
                        return;
                    }
                }
                Ok((Kind::Resize, json)) => {
                    if let Some(size) = serde_json::from_slice::<TerminalSize>(&json)
                        .ok()
                        .filter(|s| s.is_sane())
                    {
                        let _ = rustix::termios::tcsetwinsize(master.get_ref(), winsize(size));
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

/// Bytes the terminal showed; 0 once nothing holds it any more (the read
/// fails then, with EIO).
async fn read(master: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> usize {
    loop {
        let Ok(mut ready) = master.readable().await else {
            return 0;
        };
        match ready.try_io(|fd| rustix::io::read(fd.get_ref(), &mut *buf).map_err(Into::into)) {
            Ok(read) => return read.unwrap_or(0),
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(master: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let mut ready = master.writable().await?;
        if let Ok(written) =
            ready.try_io(|fd| rustix::io::write(fd.get_ref(), bytes).map_err(Into::into))
        {
            bytes = &bytes[written?..];
        }
    }
    Ok(())
}

/// Kills every process of the session `leader` leads (found through
/// `/proc`: a shell's jobs are process groups of their own), again while
/// any are left, since one may have forked as the others died. A process
/// that made a session of its own (`setsid`) is not the shell's any more.
pub fn kill_session(leader: Pid) {
    for _ in 0..8 {
        let members = members_of(leader);
        if members.is_empty() {
            return;
        }
        for pid in members {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

fn members_of(session: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
            // "pid (name) state ppid pgrp session …": the name may hold
            // anything (bytes that are not UTF-8 too: one cut mid-character,
            // one a process set), so the fields are read from its last
            // ')'. The dead (zombies, not yet reaped) are past killing.
            let after_name = stat.iter().rposition(|b| *b == b')')? + 1;
            let fields = std::str::from_utf8(&stat[after_name..]).ok()?;
            let mut fields = fields.split_whitespace();
            let state = fields.next()?;
            let sid: i32 = fields.nth(2)?.parse().ok()?;
            (sid == session.as_raw_nonzero().get() && state != "Z")
                .then(|| Pid::from_raw(pid))
                .flatten()
        })
        .collect()
}
