//! A trigger delivery's prompt and conversation key are made by processes
//! of their own (this binary again, `paddock render-trigger-templates`), each
//! with a bound on its memory, and on its time for each delivery: a
//! template may ask for any amount of memory (`"x" * 100000000 ~ …` held in
//! a variable, or a long chain of `~`), which minijinja's fuel, counting
//! instructions, does not bound. In the server's own process one trigger's
//! template could take all of its memory, and with it every session's runs;
//! here it ends its own process, and its delivery is refused.
//!
//! A few such processes live on and take one delivery at a time each
//! (starting one per delivery would cost more than the rendering): a
//! message is its JSON's length (4 bytes, big-endian) and the JSON. One
//! that ends, or takes too long, is let go (and killed), and the next
//! delivery starts another.

use crate::sync::lock;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

/// The memory a rendering process may take for its data (its heap and its
/// threads' stacks), and the processor time one delivery may use of it.
const DATA_MAX_BYTES: u64 = 1024 * 1024 * 1024;
const CPU_MAX_SECS: u64 = 10;
/// How long one delivery's rendering may take, all told, before its
/// process is killed.
const RENDER_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of a message that is read: what is asked (a delivery's whole
/// context) one way, a prompt and a key within their bounds the other.
const MESSAGE_MAX_BYTES: u32 = 64 * 1024 * 1024;
/// Rendering processes: each may hold its whole memory bound.
const PROCESSES: usize = 2;
/// How long a delivery waits for a rendering process before it is put off
/// (503): a sender sends it again later.
const TURN_WAIT: Duration = Duration::from_secs(20);

/// What a rendering process is asked: the templates and what they see.
#[derive(Serialize, Deserialize)]
struct Asked {
    prompt: String,
    conversation: Option<String>,
    seen: serde_json::Value,
}

/// What it answers: the prompt and the key, or why the templates make
/// none from this delivery.
pub type Answer = Result<(String, Option<String>), String>;

/// Why a delivery's templates made nothing.
pub enum Failed {
    /// The templates, with this delivery: refused (a template error, or a
    /// template past its memory or time).
    Refused(String),
    /// No process could be started or spoken to: try again.
    Unavailable(String),
}

/// A rendering process, its pipes.
struct Process {
    _child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

/// The rendering processes of this server: a delivery takes one that
/// waits (or starts one) for its exchange, and gives it back only once
/// the exchange is whole: one cut off (its request gone, or past its time)
/// is dropped, and so killed, never left with an answer unread.
pub struct TemplateRenderers {
    /// The binary they run: this server's.
    renderer: PathBuf,
    /// A turn each, [`PROCESSES`] at once.
    turns: Semaphore,
    waiting: std::sync::Mutex<Vec<Process>>,
}

impl TemplateRenderers {
    /// Renderers running the binary `renderer` (this server's), started
    /// as deliveries come.
    pub fn new(renderer: PathBuf) -> Self {
        Self {
            renderer,
            turns: Semaphore::new(PROCESSES),
            waiting: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The prompt and the conversation key `seen` makes with the templates.
    pub async fn render(
        &self,
        prompt: String,
        conversation: Option<String>,
        seen: serde_json::Value,
    ) -> Result<(String, Option<String>), Failed> {
        let asked = serde_json::to_vec(&Asked {
            prompt,
            conversation,
            seen,
        })
        .map_err(|e| Failed::Unavailable(e.to_string()))?;
        let busy =
            || Failed::Unavailable("every template renderer is busy: try again shortly".into());
        let _turn = tokio::time::timeout(TURN_WAIT, self.turns.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let kept = lock(&self.waiting).pop();
        // One that ended while it waited (the system's memory killer, say)
        // takes nothing: another is started for this delivery, once.
        let mut process = kept;
        for fresh in [false, true] {
            let mut taken = match process.take() {
                Some(kept) if !fresh => kept,
                _ => self.start().map_err(|e| {
                    Failed::Unavailable(format!("cannot start a template renderer: {e}"))
                })?,
            };
            let answered = tokio::time::timeout(RENDER_TIMEOUT, exchange(&mut taken, &asked)).await;
            return match answered {
                Ok(Ok(answer)) => match serde_json::from_slice::<Answer>(&answer) {
                    Ok(answer) => {
                        lock(&self.waiting).push(taken);
                        answer.map_err(Failed::Refused)
                    }
                    Err(e) => Err(Failed::Unavailable(format!(
                        "a template renderer's answer is not one: {e}"
                    ))),
                },
                Ok(Err(Broke::Sending(_))) if !fresh => continue,
                Ok(Err(Broke::Sending(e))) => Err(Failed::Unavailable(format!(
                    "a template renderer takes nothing: {e}"
                ))),
                // It ended (out of memory or time) or took too long with
                // this delivery: dropped, killed.
                Ok(Err(Broke::Answering)) | Err(_) => Err(past_bounds()),
            };
        }
        Err(Failed::Unavailable("no template renderer".into()))
    }

    fn start(&self) -> std::io::Result<Process> {
        let mut child = tokio::process::Command::new(&self.renderer)
            .arg("render-trigger-templates")
            // Nothing of the server's environment (its keys), and no log
            // on the answers' way.
            .env_clear()
            .env("RUST_LOG", "off")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("no pipes to the renderer"));
        };
        Ok(Process {
            _child: child,
            to,
            from: BufReader::new(from),
        })
    }
}

/// How an exchange with a rendering process broke.
enum Broke {
    /// It took nothing: it had ended before.
    Sending(std::io::Error),
    /// It took the delivery, and gave no answer.
    Answering,
}

/// Sends one message, and reads one back.
async fn exchange(process: &mut Process, asked: &[u8]) -> Result<Vec<u8>, Broke> {
    let send = async {
        let len = u32::try_from(asked.len()).map_err(std::io::Error::other)?;
        process.to.write_all(&len.to_be_bytes()).await?;
        process.to.write_all(asked).await?;
        process.to.flush().await
    };
    send.await.map_err(Broke::Sending)?;
    let answer = async {
        let len = process.from.read_u32().await?;
        if len > MESSAGE_MAX_BYTES {
            return Err(std::io::Error::other("an answer too long"));
        }
        let mut answer = vec![0; len as usize];
        process.from.read_exact(&mut answer).await?;
        Ok(answer)
    };
    answer.await.map_err(|_| Broke::Answering)
}

/// A rendering process that ended without an answer: out of memory or
/// time (or killed by the system for it).
fn past_bounds() -> Failed {
    Failed::Refused(format!(
        "The trigger's templates took more than a delivery may ({} MiB of memory, {CPU_MAX_SECS} \
         s) with this delivery.",
        DATA_MAX_BYTES / 1024 / 1024
    ))
}

/// The rendering process itself: bounds its memory, then answers what it
/// is asked on its standard input with `make` (the prompt template, the
/// conversation key's, what they see), one delivery at a time, each within
/// its processor time, until the input ends.
pub fn serve(
    make: impl Fn(&str, Option<&str>, &serde_json::Value) -> Answer,
) -> anyhow::Result<()> {
    let bound = |most| Rlimit {
        current: Some(most),
        maximum: Some(most),
    };
    setrlimit(Resource::Data, bound(DATA_MAX_BYTES))?;
    // Ended for its bounds by design (an allocation refused aborts, past
    // its processor time the system ends it): no core file of a gigabyte
    // in the server's folder for each.
    setrlimit(Resource::Core, bound(0))?;
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    loop {
        let mut len = [0; 4];
        match input.read_exact(&mut len) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            read => read?,
        }
        let len = u32::from_be_bytes(len);
        anyhow::ensure!(len <= MESSAGE_MAX_BYTES, "a message too long");
        let mut asked = vec![0; len as usize];
        input.read_exact(&mut asked)?;
        let asked: Asked = serde_json::from_slice(&asked)?;
        // This delivery's processor time, from what the ones before used
        // (past it, the system ends the process).
        let used = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime).tv_sec;
        let limit = getrlimit(Resource::Cpu);
        setrlimit(
            Resource::Cpu,
            Rlimit {
                current: Some(u64::try_from(used).unwrap_or_default() + CPU_MAX_SECS),
                maximum: limit.maximum,
            },
        )?;
        let answer = serde_json::to_vec(&make(
            &asked.prompt,
            asked.conversation.as_deref(),
            &asked.seen,
        ))?;
        let len = u32::try_from(answer.len())?;
        output.write_all(&len.to_be_bytes())?;
        output.write_all(&answer)?;
        output.flush()?;
    }
}
