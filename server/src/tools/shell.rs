//! The `bash` tool, and the quoting every tool that builds a command line
//! from the model's input relies on.

use super::{seconds, Args, ToolContext, ToolOutput};
use crate::sandbox::{ExecOutcome, ExecRequest, OutputSink};
use std::time::Duration;

/// `s` as one bash word that stands for exactly `s`: wrapped in single quotes,
/// inside which bash interprets nothing, and each `'` written as `'\''`
/// (close the quotes, an escaped quote, reopen). `$(…)`, backticks, `;`,
/// globs and newlines all stay plain text. (A NUL byte cannot be passed to a
/// program at all; callers refuse it.)
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

pub(super) async fn bash(
    ctx: &ToolContext<'_>,
    args: &Args,
    on_output: OutputSink<'_>,
) -> ToolOutput {
    let command = args.str("command");
    if command.trim().is_empty() {
        return ToolOutput::error("command is empty: give the bash command to run.");
    }
    if command.contains('\0') {
        return ToolOutput::error("command contains a NUL byte, which bash cannot run.");
    }
    let timeout = match args.opt_u64("timeout") {
        Some(secs) => Duration::from_secs(secs).min(ctx.exec_timeout),
        None => ctx.exec_timeout,
    };
    let request = ExecRequest {
        command: command.to_owned(),
        timeout,
        output_cap: ctx.output_cap,
    };
    match ctx
        .sandbox
        .exec(ctx.session, &request, ctx.cancel, on_output)
        .await
    {
        Ok(outcome) => report(outcome, timeout),
        Err(e) => ToolOutput::error(format!("The command could not be run: {e}")),
    }
}

/// The outcome as the model reads it: the output, then a last line saying
/// how it ended unless it exited 0.
fn report(outcome: ExecOutcome, timeout: Duration) -> ToolOutput {
    let status = if outcome.timed_out {
        Some(format!(
            "[timed out after {} s; the process tree was killed]",
            seconds(timeout)
        ))
    } else if outcome.oom_killed {
        Some("[killed: out of memory]".to_owned())
    } else if outcome.cancelled {
        Some("[cancelled]".to_owned())
    } else {
        match outcome.exit_code {
            Some(0) => None,
            Some(code) => Some(format!("[exit code {code}]")),
            None => Some("[killed]".to_owned()),
        }
    };
    let mut content = outcome.output;
    if let Some(status) = &status {
        if !content.is_empty() && !content.ends_with('\n') {
            content.push('\n');
        }
        content.push_str(status);
    } else if content.is_empty() {
        content.push_str("(no output)");
    }
    ToolOutput {
        content,
        is_error: status.is_some(),
        truncated: outcome.truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What bash makes of the quoted word.
    fn through_bash(s: &str) -> String {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(s)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoting_survives_hostile_strings() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let m = marker.display();
        for s in [
            String::new(),
            "plain".into(),
            "it's".into(),
            "'".into(),
            "''".into(),
            r"'\''".into(),
            format!("$(touch {m})"),
            format!("`touch {m}`"),
            format!("'; touch {m}; '"),
            format!("\"; touch {m}; \""),
            format!("x\ntouch {m}\n"),
            format!("a' $(touch {m}) 'b"),
            format!("\\'; touch {m} #"),
            "*".into(),
            "${HOME} $PATH !! \\ \t ~".into(),
            "-n".into(),
            "é ü 日本 🦀".into(),
        ] {
            assert_eq!(through_bash(&s), s, "{s:?}");
        }
        assert!(!marker.exists(), "a quoted string ran a command");
    }

    fn outcome(exit_code: Option<i64>, output: &str) -> ExecOutcome {
        ExecOutcome {
            exit_code,
            output: output.into(),
            truncated: false,
            total_bytes: output.len() as u64,
            timed_out: false,
            oom_killed: false,
            cancelled: false,
        }
    }

    #[test]
    fn reports_how_the_command_ended() {
        let t = Duration::from_secs(5);
        let ok = report(outcome(Some(0), "hi\n"), t);
        assert_eq!((ok.content.as_str(), ok.is_error), ("hi\n", false));
        assert_eq!(report(outcome(Some(0), ""), t).content, "(no output)");
        let failed = report(outcome(Some(3), "oops"), t);
        assert_eq!(failed.content, "oops\n[exit code 3]");
        assert!(failed.is_error);
        let oom = report(
            ExecOutcome {
                oom_killed: true,
                ..outcome(None, "")
            },
            t,
        );
        assert_eq!(oom.content, "[killed: out of memory]");
        let cancelled = report(
            ExecOutcome {
                cancelled: true,
                ..outcome(None, "partial\n")
            },
            t,
        );
        assert_eq!(cancelled.content, "partial\n[cancelled]");
    }
}
