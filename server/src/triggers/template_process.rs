//! A delivery's prompt and conversation key are made by a process of
//! their own (this binary again, `paddock render-trigger-templates`), with
//! a bound on its memory and its time: a template may ask for any amount
//! of memory (`"x" * 100000000 ~ …` held in a variable, or a long chain of
//! `~`), which minijinja's fuel, counting instructions, does not bound.
//! In the server's own process one trigger's template could take all of
//! its memory, and with it every session's runs; here it ends its own
//! process, and its delivery is refused.

use super::prompt;
use rustix::process::{setrlimit, Resource, Rlimit};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// The memory a rendering process may take for its data (its heap and its
/// threads' stacks), and the processor time it may use.
const DATA_MAX_BYTES: u64 = 1024 * 1024 * 1024;
const CPU_MAX_SECS: u64 = 10;
/// How long a rendering may take, all told, before its process is killed.
const RENDER_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of what a rendering process says that is read: a prompt and a
/// key within their bounds, as JSON (each character at most six bytes).
const ANSWER_MAX_BYTES: u64 = 1024 * 1024;
/// Renderings at once in this server: each may hold its whole memory bound.
static AT_ONCE: Semaphore = Semaphore::const_new(2);

/// What a rendering process is asked: the templates and what they see.
#[derive(Serialize, Deserialize)]
struct Asked {
    prompt: String,
    conversation: Option<String>,
    seen: serde_json::Value,
}

/// What it answers: the prompt and the key, or why the templates make
/// none from this delivery.
type Answer = Result<(String, Option<String>), String>;

/// Why a delivery's templates made nothing.
pub enum Failed {
    /// The templates, with this delivery: refused (a template error, or a
    /// template past its memory or time).
    Refused(String),
    /// No process could be run or read: try again.
    Unavailable(String),
}

/// The prompt and the conversation key `seen` makes with the templates,
/// made by `renderer` (this server's binary) in a process of its own.
pub async fn render(
    renderer: &Path,
    prompt: String,
    conversation: Option<String>,
    seen: serde_json::Value,
) -> Result<(String, Option<String>), Failed> {
    let unavailable = |e: std::io::Error| Failed::Unavailable(format!("{e}"));
    let asked = serde_json::to_vec(&Asked {
        prompt,
        conversation,
        seen,
    })
    .map_err(|e| Failed::Unavailable(e.to_string()))?;
    let _turn = AT_ONCE
        .acquire()
        .await
        .map_err(|e| Failed::Unavailable(e.to_string()))?;
    let mut command = tokio::process::Command::new(renderer);
    command
        .arg("render-trigger-templates")
        // Nothing of the server's environment (its keys), and no log
        // on the answer's way.
        .env_clear()
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(unavailable)?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Failed::Unavailable("no pipes to the renderer".into()));
    };
    let talk = async {
        // Written while it is read: a process that dies first closes the
        // pipe, which then fails to take the rest.
        let write = async {
            let _ = stdin.write_all(&asked).await;
            drop(stdin);
        };
        let mut answer = Vec::new();
        let mut stdout = stdout.take(ANSWER_MAX_BYTES);
        let ((), read) = tokio::join!(write, stdout.read_to_end(&mut answer));
        read.map(|_| answer)
    };
    let answer = match tokio::time::timeout(RENDER_TIMEOUT, talk).await {
        Ok(answer) => answer.map_err(unavailable)?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(past_bounds());
        }
    };
    let status = child.wait().await.map_err(unavailable)?;
    if !status.success() {
        return Err(past_bounds());
    }
    match serde_json::from_slice::<Answer>(&answer) {
        Ok(answer) => answer.map_err(Failed::Refused),
        Err(e) => Err(Failed::Unavailable(format!(
            "the renderer's answer is not one: {e}"
        ))),
    }
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

/// The rendering process itself: bounds itself, then reads what it is
/// asked on its standard input and answers on its standard output.
pub fn serve_one() -> anyhow::Result<()> {
    let bound = |most| Rlimit {
        current: Some(most),
        maximum: Some(most),
    };
    setrlimit(Resource::Data, bound(DATA_MAX_BYTES))?;
    setrlimit(Resource::Cpu, bound(CPU_MAX_SECS))?;
    let mut asked = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut asked)?;
    let asked: Asked = serde_json::from_slice(&asked)?;
    let answer: Answer = (|| {
        let text = prompt::prompt(&asked.prompt, &asked.seen)
            .map_err(|e| format!("The prompt template failed: {e}"))?;
        let key = match &asked.conversation {
            Some(template) => prompt::conversation(template, &asked.seen)
                .map_err(|e| format!("The conversation key template failed: {e}"))?,
            None => None,
        };
        Ok((text, key))
    })();
    serde_json::to_writer(std::io::stdout().lock(), &answer)?;
    Ok(())
}
