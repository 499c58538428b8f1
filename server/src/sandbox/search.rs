//! Searches of a [`HostWorkspace`](super::HostWorkspace), run in the
//! session's sandbox, where the files and ripgrep are, and which must stay
//! searches. Every value the model chose reaches bash single-quoted
//! ([`shell_quote`]): a glob pattern is assigned to a variable and expanded
//! unquoted, which globs but never runs anything, and ripgrep gets its
//! pattern after `-e` and its path after `--`. The folder searched is
//! checked, after resolving symlinks, to be inside the workspace, as the
//! host-side file operations check theirs.

use super::shell::shell_quote;
use super::workspace::{GlobMatches, GlobQuery, GrepMatches, GrepQuery, SearchError, SearchLimits};
use super::{ExecOutcome, ExecRequest, Sandbox};
use app::domain::SessionId;

/// Bytes of raw `glob` output read back from the sandbox.
const GLOB_RAW_CAP: usize = 8 * 1024 * 1024;
/// Characters of one matching line `grep` shows.
const GREP_MAX_COLUMNS: usize = 500;

// Exit codes of the checks the scripts make before searching (ripgrep and
// the glob loop never exit with these).
const EXIT_NOT_FOUND: i64 = 101;
const EXIT_OUTSIDE: i64 = 102;
const EXIT_NOT_DIRECTORY: i64 = 103;

pub(super) async fn glob(
    sandbox: &dyn Sandbox,
    session: SessionId,
    query: &GlobQuery<'_>,
    limits: SearchLimits<'_>,
) -> Result<GlobMatches, SearchError> {
    let quoted: Vec<String> = query.patterns.iter().map(|p| shell_quote(p)).collect();
    let mut script = String::from(
        "exec 2>/dev/null\nshopt -s globstar nullglob\nshopt -u dotglob failglob\nIFS=\nLC_ALL=C\nroot=$(pwd -P) || exit 1\n",
    );
    if query.dir != "." {
        script.push_str(&enter_dir(query.dir));
    }
    let max = query.max_results;
    script.push_str(&format!(
        r#"here=$(pwd -P); prefix=${{here#"$root"}}; prefix=${{prefix#/}}; [[ -n $prefix ]] && prefix+=/
n=0
for p in {}; do
  m=($p)
  # A pattern without wildcards stays as it is, whether or not it exists.
  if (( ${{#m[@]}} == 1 )) && [[ ! -e ${{m[0]}} && ! -L ${{m[0]}} ]]; then continue; fi
  n=$((n + ${{#m[@]}}))
  for f in "${{m[@]:0:{max}}}"; do
    f=${{f%/}}
    if [[ -d $f ]]; then printf '%s%s/\0' "$prefix" "$f"; else printf '%s%s\0' "$prefix" "$f"; fi
  done
done
printf '%s\0' "$n"
"#,
        quoted.join(" ")
    ));
    let outcome = run(sandbox, session, script, GLOB_RAW_CAP, limits).await?;
    if outcome.exit_code != Some(0) || outcome.truncated {
        return Err(SearchError::Failed {
            code: outcome.exit_code,
            output: outcome.output,
        });
    }
    let mut items: Vec<&str> = outcome.output.split('\0').collect();
    items.pop(); // after the last NUL
    let total: usize = items.pop().and_then(|n| n.parse().ok()).unwrap_or(0);
    items.sort_unstable();
    items.dedup();
    items.truncate(max);
    Ok(GlobMatches {
        paths: items.into_iter().map(str::to_owned).collect(),
        total,
    })
}

pub(super) async fn grep(
    sandbox: &dyn Sandbox,
    session: SessionId,
    query: &GrepQuery<'_>,
    limits: SearchLimits<'_>,
) -> Result<GrepMatches, SearchError> {
    let mut script = String::from("root=$(pwd -P) || exit 1\n");
    let mut rg = format!(
        "exec rg --line-number --with-filename --no-heading --color never --sort path \
--max-columns {GREP_MAX_COLUMNS} --max-columns-preview"
    );
    if query.case_insensitive {
        rg.push_str(" --ignore-case");
    }
    if let Some(g) = query.file_glob {
        rg.push_str(&format!(" --glob {}", shell_quote(g)));
    }
    rg.push_str(&format!(" -e {}", shell_quote(query.pattern)));
    if query.dir == "." {
        // No path: ripgrep searches the working folder and prints its paths
        // without a `./`. (stdin is not a file, so it is not searched.)
        rg.push_str(" </dev/null");
    } else {
        let q = shell_quote(query.dir);
        script.push_str(&format!(
            "t=$(realpath -e -- {q} 2>/dev/null) || exit {EXIT_NOT_FOUND}\n\
case \"$t/\" in \"$root\"/*) ;; *) exit {EXIT_OUTSIDE};; esac\n"
        ));
        rg.push_str(&format!(" -- {q}"));
    }
    script.push_str(&rg);
    script.push('\n');
    let outcome = run(sandbox, session, script, limits.output_cap, limits).await?;
    match outcome.exit_code {
        Some(0) => Ok(GrepMatches {
            lines: outcome.output,
            truncated: outcome.truncated,
        }),
        Some(1) if outcome.output.trim().is_empty() => Ok(GrepMatches {
            lines: String::new(),
            truncated: false,
        }),
        Some(127) => Err(SearchError::NoRipgrep),
        code => Err(SearchError::Failed {
            code,
            output: outcome.output,
        }),
    }
}

/// Bash that enters folder `rel`, refusing one that is missing, not a
/// folder, or (through a symlink) outside the workspace.
fn enter_dir(rel: &str) -> String {
    let q = shell_quote(rel);
    format!(
        "[[ -e {q} ]] || exit {EXIT_NOT_FOUND}\n\
[[ -d {q} ]] || exit {EXIT_NOT_DIRECTORY}\n\
cd -- {q} || exit {EXIT_NOT_FOUND}\n\
case \"$(pwd -P)/\" in \"$root\"/*) ;; *) exit {EXIT_OUTSIDE};; esac\n"
    )
}

/// Runs a search script; the ways it can end that are not its own result
/// are errors.
async fn run(
    sandbox: &dyn Sandbox,
    session: SessionId,
    script: String,
    cap: usize,
    limits: SearchLimits<'_>,
) -> Result<ExecOutcome, SearchError> {
    let request = ExecRequest {
        env: Vec::new(),
        command: script,
        timeout: limits.timeout,
        output_cap: cap,
    };
    let outcome = sandbox
        .exec(session, &request, limits.cancel, &mut |_, _| {})
        .await?;
    Err(if outcome.timed_out {
        SearchError::TimedOut
    } else if outcome.cancelled {
        SearchError::Cancelled
    } else if outcome.oom_killed {
        SearchError::OutOfMemory
    } else {
        match outcome.exit_code {
            Some(EXIT_NOT_FOUND) => SearchError::NotFound,
            Some(EXIT_OUTSIDE) => SearchError::Outside,
            Some(EXIT_NOT_DIRECTORY) => SearchError::NotDirectory,
            _ => return Ok(outcome),
        }
    })
}
