//! The `bash` tool.

use super::{seconds, Args, ToolContext, ToolOutput};
use crate::sandbox::{ExecOutcome, ExecRequest, OutputSink};
use std::time::Duration;

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
        env: ctx.env.to_vec(),
        timeout,
        output_cap: ctx.output_cap,
    };
    match ctx
        .sandbox
        .exec(ctx.session, &request, ctx.cancel, on_output)
        .await
    {
        Ok(outcome) => {
            let mut output = report(outcome, timeout);
            if output.content.contains(NO_SPACE) {
                if let Ok(disk) = ctx.sandbox.disk_use(ctx.session).await {
                    if disk.is_full() {
                        output.content.push_str(&format!(
                            "\n[the workspace is full: {} used; delete files to make room]",
                            disk.describe()
                        ));
                    }
                }
            }
            output
        }
        Err(e) => ToolOutput::error(format!("The command could not be run: {e}")),
    }
}

/// What a program says when a write does not fit (ENOSPC).
const NO_SPACE: &str = "No space left on device";

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
