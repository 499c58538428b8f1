//! The sandbox agent's side of its one connection with the Paddock server,
//! shared by both ends: how the agent proves itself, and what `/exec`,
//! `/spawn`, `/signal`, `/pty` and the `/fs/` operations take and answer.
//!
//! The connection is one of two:
//! - **A Unix socket** (a sandbox on the server's own Docker host): the
//!   agent dials the server's socket for its sandbox (a host folder
//!   mounted read-only into the sandbox), writes the secret it was given at
//!   start and its [`PROTOCOL`] on one line. A process in the sandbox that
//!   connects without the secret is dropped before a byte of HTTP is
//!   exchanged.
//! - **Its own stdin and stdout** (`--stdio`: a sandbox on a remote Docker
//!   host, which the server reaches only through the Docker API, over
//!   mutual TLS): the server started it with `docker exec` and holds the
//!   exec's streams, which nothing else in the sandbox can reach. The agent
//!   writes [`STDIO_HELLO`] and its [`PROTOCOL`] on one line.
//!
//! Then the agent serves HTTP/2 on that connection: the server is the
//! client.

pub mod archive;
pub mod folder;
pub mod search;
pub mod watch;

use serde::{Deserialize, Serialize};

/// Where the agent's binary is in a sandbox: [`AGENT_DIR`], then
/// [`AGENT_NAME`] (mounted there, or uploaded into a volume there).
pub const AGENT_PATH: &str = "/opt/paddock/sandbox-agent";
pub const AGENT_DIR: &str = "/opt/paddock";
pub const AGENT_NAME: &str = "sandbox-agent";
/// Where the server's socket folder is mounted in a sandbox.
pub const SOCKET_DIR: &str = "/run/paddock-agent";
/// Longest first line (the secret and the protocol) the server reads.
pub const SECRET_LINE_MAX: usize = 128;
/// The version of what is said here, after the secret on the first line:
/// an agent of another (a sandbox made before the binary changed) is not
/// used.
pub const PROTOCOL: u32 = 4;
/// What an agent started with `--stdio` says first, before its protocol.
pub const STDIO_HELLO: &str = "paddock-sandbox-agent";
/// The answer's header naming the command's process group, so the server
/// can end it another way should the agent stop answering.
pub const GROUP_HEADER: &str = "x-paddock-group";

/// The status of a file operation's refusal, whose body is the
/// [`folder::FileError`] as JSON.
pub const FILE_ERROR_STATUS: u16 = 422;
/// `/fs/read`'s header: the file's size, which its body is.
pub const SIZE_HEADER: &str = "x-paddock-size";
/// Largest file `/fs/write` takes (an upload's whole size).
pub const WRITE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// `POST /fs/read` (the file's bytes, any size), `/fs/list` (its
/// [`folder::Entry`]s as JSON), `/fs/delete`, and `/fs/write`'s start
/// record (then the file's bytes in stdin records): a path of the
/// workspace, as the agent's tools give it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilePath {
    pub path: String,
}

/// `POST /fs/archive`: the workspace as a gzipped tar, every path under
/// `top/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Archive {
    pub top: String,
}

/// `POST /exec` (and `/spawn`'s start record): one program and its
/// arguments (a shell command is `bash -c` and the command), run in its own
/// process group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    /// The program (looked up in `PATH` unless it names a path), then its
    /// arguments.
    pub argv: Vec<String>,
    /// Set for the command besides the sandbox's own environment (the
    /// agent's, which holds nothing of the server's).
    pub env: Vec<(String, String)>,
    pub cwd: String,
    /// The whole process group is killed when it passes.
    pub timeout_ms: u64,
}

/// `POST /signal`: a signal for the process group of a command the agent
/// runs (`/exec`, `/spawn`), named by the pid that leads it
/// ([`GROUP_HEADER`]); no other process can be named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalGroup {
    pub leader: i32,
    pub signal: ProcessSignal,
}

/// The signals the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProcessSignal {
    Int,
    Term,
    Hup,
    Quit,
    Kill,
    Usr1,
    Usr2,
}

/// `POST /pty`'s start record: a login shell on a new pseudo-terminal, in a
/// session of its own (its jobs included, all of it ends with the request).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pty {
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub size: TerminalSize,
}

/// A terminal's size in character cells: `/pty`'s start, and its resize
/// records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

impl TerminalSize {
    /// Whether a terminal may be this size: 1 to 1000 cells each way.
    pub fn is_sane(self) -> bool {
        (1..=1000).contains(&self.rows) && (1..=1000).contains(&self.cols)
    }
}

/// How `/exec`'s answer ended the command: its last record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecExit {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Processes the sandbox's memory limit killed while it ran.
    pub oom_kills: u64,
}

/// What a record holds. Records use the framing of Docker's own attach
/// streams (an 8-byte header, the kind then three zero bytes and the length,
/// big-endian, then that many bytes). `/exec` and `/spawn` answer with
/// output records as it comes and a last one with the [`ExecExit`] as JSON;
/// `/spawn`'s request body is a start record, then stdin records (its end
/// closes the command's stdin); `/pty`'s the same with resize records too,
/// and its output is all stdout (the terminal's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes for the command's stdin (`/spawn`'s request), or of the file
    /// `/fs/write` writes.
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    Exit = 3,
    /// What to run, as the [`Exec`] JSON: `/spawn`'s first record (and
    /// the [`Pty`] JSON, `/pty`'s).
    Start = 4,
    /// A terminal's new [`TerminalSize`] as JSON (`/pty`'s request).
    Resize = 5,
}

/// Largest record read; output comes in reads of at most 16 KiB.
pub const RECORD_MAX: usize = 64 * 1024;
/// Largest [`Kind::Start`] record read, and request read whole: what to
/// run with its variables, which a session may make about 6 MiB of JSON
/// (32 values of 32 KiB, each control character escaped in six bytes).
pub const START_MAX: usize = 8 * 1024 * 1024;

/// One record: header and bytes.
pub fn record(kind: Kind, bytes: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(8 + bytes.len());
    record.extend_from_slice(&[kind as u8, 0, 0, 0]);
    record.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    record.extend_from_slice(bytes);
    record
}

/// Records out of a stream's bytes as they arrive.
pub struct Records {
    pending: Vec<u8>,
    /// Where the next record starts in `pending`.
    at: usize,
    /// The largest [`Kind::Start`] record taken.
    start_max: usize,
}

impl Default for Records {
    /// Records of at most [`RECORD_MAX`], whatever their kind.
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            at: 0,
            start_max: RECORD_MAX,
        }
    }
}

impl Records {
    /// Records of a request saying what to run: its [`Kind::Start`] may be
    /// [`START_MAX`] (the agent's side; what the server reads from the
    /// sandbox stays at [`RECORD_MAX`]).
    pub fn of_request() -> Self {
        Self {
            start_max: START_MAX,
            ..Self::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        // What was read goes before more is kept, not record by record.
        self.pending.drain(..self.at);
        self.at = 0;
        self.pending.extend_from_slice(bytes);
    }

    /// Whether bytes of a record not yet whole are kept.
    pub fn has_partial(&self) -> bool {
        self.at < self.pending.len()
    }

    /// The next whole record, or why the stream is not one.
    pub fn next_record(&mut self) -> Option<Result<(Kind, Vec<u8>), String>> {
        let rest = &self.pending[self.at..];
        let header: [u8; 8] = rest.get(..8)?.try_into().ok()?;
        let kind = match header[0] {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Exit,
            4 => Kind::Start,
            5 => Kind::Resize,
            other => return Some(Err(format!("a record of unknown kind {other}"))),
        };
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let max = match kind {
            Kind::Start => self.start_max,
            _ => RECORD_MAX,
        };
        if len > max {
            return Some(Err(format!("a record of {len} bytes")));
        }
        let bytes = rest.get(8..8 + len)?.to_vec();
        self.at += 8 + len;
        Some(Ok((kind, bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_path_is_its_folder_and_name() {
        assert_eq!(AGENT_PATH, format!("{AGENT_DIR}/{AGENT_NAME}"));
    }

    #[test]
    fn records_survive_any_split_and_bad_ones_are_named() {
        let stream = [
            record(Kind::Stdout, b"hello "),
            record(Kind::Stderr, b""),
            record(
                Kind::Exit,
                br#"{"code":0,"signal":null,"timed_out":false,"oom_kills":0}"#,
            ),
        ]
        .concat();
        for cut in 0..stream.len() {
            let mut records = Records::default();
            let mut seen = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                records.push(part);
                while let Some(r) = records.next_record() {
                    seen.push(r.unwrap());
                }
            }
            assert_eq!(seen.len(), 3, "cut at {cut}");
            assert_eq!(seen[0], (Kind::Stdout, b"hello ".to_vec()));
            assert_eq!(seen[1], (Kind::Stderr, Vec::new()));
            let exit: ExecExit = serde_json::from_slice(&seen[2].1).unwrap();
            assert_eq!(exit.code, Some(0));
        }
        let mut bad = Records::default();
        bad.push(&[9, 0, 0, 0, 0, 0, 0, 0]);
        assert!(bad.next_record().unwrap().is_err());
        let mut huge = Records::default();
        huge.push(&[1, 0, 0, 0, 255, 255, 255, 255]);
        assert!(huge.next_record().unwrap().is_err());
        // What to run may be larger than output or input ever comes.
        let start = vec![b'x'; RECORD_MAX * 2];
        let mut records = Records::of_request();
        records.push(&record(Kind::Start, &start));
        assert_eq!(
            records.next_record().unwrap().unwrap(),
            (Kind::Start, start.clone())
        );
        // Not from the sandbox's side.
        let mut records = Records::default();
        records.push(&record(Kind::Start, &start));
        assert!(records.next_record().unwrap().is_err());
        let mut records = Records::default();
        records.push(&record(Kind::Stdin, &vec![0; RECORD_MAX + 1]));
        assert!(records.next_record().unwrap().is_err());
        let mut records = Records::of_request();
        records.push(&record(Kind::Start, &vec![0; START_MAX + 1]));
        assert!(records.next_record().unwrap().is_err());
    }
}
