//! `glob` and `grep`: searches that run in the session's sandbox, where the
//! files and ripgrep are, and which must stay searches. Every value the model
//! chose reaches bash single-quoted ([`shell_quote`]): the glob pattern is
//! assigned to a variable and expanded unquoted, which globs but never runs
//! anything, and ripgrep gets its pattern after `-e` and its path after `--`.
//! The folder searched is checked, after resolving symlinks, to be inside the
//! workspace, as the host-side file tools check theirs.

use super::shell::shell_quote;
use super::{cap_text, seconds, Args, ToolContext, ToolOutput};
use crate::sandbox::{ExecOutcome, ExecRequest, FileError, MOUNT_POINT};
use std::path::{Component, Path};

/// Paths `glob` returns at most.
pub const GLOB_MAX_RESULTS: usize = 1000;
/// Patterns one `{a,b}` pattern may expand to.
const GLOB_MAX_ALTERNATIVES: usize = 256;
/// Bytes of raw `glob` output read back from the sandbox.
const GLOB_RAW_CAP: usize = 8 * 1024 * 1024;
/// Characters of one matching line `grep` shows.
const GREP_MAX_COLUMNS: usize = 500;

// Exit codes of the checks the scripts make before searching (ripgrep and
// the glob loop never exit with these).
const EXIT_NOT_FOUND: i64 = 101;
const EXIT_OUTSIDE: i64 = 102;
const EXIT_NOT_DIRECTORY: i64 = 103;

pub(super) async fn glob(ctx: &ToolContext<'_>, args: &Args) -> ToolOutput {
    let mut pattern = args.str("pattern");
    let mut path = args.opt_str("path").unwrap_or(".");
    if pattern.contains('\0') || path.contains('\0') {
        return ToolOutput::error("pattern and path cannot contain NUL bytes.");
    }
    if pattern.is_empty() {
        return ToolOutput::error("pattern is empty: give a glob such as **/*.rs.");
    }
    // An absolute pattern names its folder itself.
    if pattern.starts_with('/') {
        match pattern
            .strip_prefix(MOUNT_POINT)
            .and_then(|p| p.strip_prefix('/'))
        {
            Some(rest) if !rest.is_empty() => {
                pattern = rest;
                path = ".";
            }
            _ => return ToolOutput::error(FileError::Outside(pattern.to_owned()).to_string()),
        }
    }
    if pattern.split('/').any(|segment| segment == "..") {
        return ToolOutput::error(format!(
            "{pattern:?} contains a \"..\" segment; glob patterns only look down: set path to the folder to search from instead."
        ));
    }
    let rel = match relative(ctx, path) {
        Ok(rel) => rel,
        Err(e) => return e,
    };
    let Some(patterns) = expand_braces(pattern, GLOB_MAX_ALTERNATIVES) else {
        return ToolOutput::error(format!(
            "{pattern:?} expands to more than {GLOB_MAX_ALTERNATIVES} patterns; use fewer {{a,b}} alternatives."
        ));
    };

    let quoted: Vec<String> = patterns.iter().map(|p| shell_quote(p)).collect();
    let mut script = String::from(
        "exec 2>/dev/null\nshopt -s globstar nullglob\nshopt -u dotglob failglob\nIFS=\nLC_ALL=C\nroot=$(pwd -P) || exit 1\n",
    );
    if rel != "." {
        script.push_str(&enter_dir(&rel));
    }
    script.push_str(&format!(
        r#"here=$(pwd -P); prefix=${{here#"$root"}}; prefix=${{prefix#/}}; [[ -n $prefix ]] && prefix+=/
n=0
for p in {}; do
  m=($p)
  # A pattern without wildcards stays as it is, whether or not it exists.
  if (( ${{#m[@]}} == 1 )) && [[ ! -e ${{m[0]}} && ! -L ${{m[0]}} ]]; then continue; fi
  n=$((n + ${{#m[@]}}))
  for f in "${{m[@]:0:{GLOB_MAX_RESULTS}}}"; do
    f=${{f%/}}
    if [[ -d $f ]]; then printf '%s%s/\0' "$prefix" "$f"; else printf '%s%s\0' "$prefix" "$f"; fi
  done
done
printf '%s\0' "$n"
"#,
        quoted.join(" ")
    ));
    let outcome = match exec(ctx, script, GLOB_RAW_CAP).await {
        Ok(o) => o,
        Err(e) => return e,
    };
    if let Some(failure) = failure("glob", ctx, &outcome, path) {
        return failure;
    }
    if outcome.exit_code != Some(0) || outcome.truncated {
        return ToolOutput::error(format!(
            "glob failed (exit code {:?}); try a simpler pattern. {}",
            outcome.exit_code,
            outcome.output.replace('\0', "\n").trim()
        ));
    }

    let mut items: Vec<&str> = outcome.output.split('\0').collect();
    items.pop(); // after the last NUL
    let total: usize = items.pop().and_then(|n| n.parse().ok()).unwrap_or(0);
    items.sort_unstable();
    items.dedup();
    let shown = items.len().min(GLOB_MAX_RESULTS);
    if shown == 0 {
        return ToolOutput::ok(format!(
            "No files match {pattern:?} under {}.",
            display_dir(&rel)
        ));
    }
    let mut out = items[..shown].join("\n");
    out.push('\n');
    let mut truncated = false;
    if total > shown {
        truncated = true;
        out.push_str(&format!(
            "[{total} matches; showing the first {shown}. Narrow the pattern or path.]"
        ));
    }
    let (content, cut) = cap_text(out, ctx.output_cap, "narrow the pattern or path");
    ToolOutput {
        content,
        is_error: false,
        truncated: truncated || cut,
    }
}

pub(super) async fn grep(ctx: &ToolContext<'_>, args: &Args) -> ToolOutput {
    let pattern = args.str("pattern");
    let path = args.opt_str("path").unwrap_or(".");
    let file_glob = args.opt_str("glob");
    if [Some(pattern), Some(path), file_glob]
        .into_iter()
        .flatten()
        .any(|s| s.contains('\0'))
    {
        return ToolOutput::error("pattern, path and glob cannot contain NUL bytes.");
    }
    if pattern.is_empty() {
        return ToolOutput::error("pattern is empty: give a regular expression to search for.");
    }
    let rel = match relative(ctx, path) {
        Ok(rel) => rel,
        Err(e) => return e,
    };
    let mut script = String::from("root=$(pwd -P) || exit 1\n");
    let mut rg = format!(
        "exec rg --line-number --with-filename --no-heading --color never --sort path \
--max-columns {GREP_MAX_COLUMNS} --max-columns-preview"
    );
    if args.flag("case_insensitive") {
        rg.push_str(" --ignore-case");
    }
    if let Some(g) = file_glob {
        rg.push_str(&format!(" --glob {}", shell_quote(g)));
    }
    rg.push_str(&format!(" -e {}", shell_quote(pattern)));
    if rel == "." {
        // No path: ripgrep searches the working folder and prints its paths
        // without a `./`. (stdin is not a file, so it is not searched.)
        rg.push_str(" </dev/null");
    } else {
        let q = shell_quote(&rel);
        script.push_str(&format!(
            "t=$(realpath -e -- {q} 2>/dev/null) || exit {EXIT_NOT_FOUND}\n\
case \"$t/\" in \"$root\"/*) ;; *) exit {EXIT_OUTSIDE};; esac\n"
        ));
        rg.push_str(&format!(" -- {q}"));
    }
    script.push_str(&rg);
    script.push('\n');
    let outcome = match exec(ctx, script, ctx.output_cap).await {
        Ok(o) => o,
        Err(e) => return e,
    };
    if let Some(failure) = failure("grep", ctx, &outcome, path) {
        return failure;
    }
    match outcome.exit_code {
        Some(0) => {
            let mut content = outcome.output;
            if outcome.truncated {
                if !content.ends_with('\n') {
                    content.push('\n');
                }
                content.push_str(
                    "[output truncated: narrow the search with path, glob or a more specific pattern]",
                );
            }
            ToolOutput {
                content,
                is_error: false,
                truncated: outcome.truncated,
            }
        }
        Some(1) if outcome.output.trim().is_empty() => ToolOutput::ok(format!(
            "No matches for {pattern:?} in {}.",
            display_dir(&rel)
        )),
        Some(127) => ToolOutput::error("ripgrep (rg) is not installed in this sandbox."),
        code => ToolOutput::error(format!(
            "{}\n[ripgrep failed: exit code {}]",
            outcome.output.trim_end(),
            code.map_or_else(|| "none".to_owned(), |c| c.to_string())
        )),
    }
}

/// `path` relative to the workspace, lexically tidied (`./a/../b` → `b`);
/// the Workspace's own error when it can never be inside.
fn relative(ctx: &ToolContext<'_>, path: &str) -> Result<String, ToolOutput> {
    let rel = ctx
        .sandbox
        .workspace(ctx.session)
        .relative(path)
        .map_err(|e| ToolOutput::error(e.to_string()))?;
    Ok(normalize(&rel))
}

fn normalize(rel: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

fn display_dir(rel: &str) -> String {
    if rel == "." {
        MOUNT_POINT.to_owned()
    } else {
        format!("{MOUNT_POINT}/{rel}")
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

async fn exec(
    ctx: &ToolContext<'_>,
    script: String,
    cap: usize,
) -> Result<ExecOutcome, ToolOutput> {
    let request = ExecRequest {
        command: script,
        timeout: ctx.exec_timeout,
        output_cap: cap,
    };
    ctx.sandbox
        .exec(ctx.session, &request, ctx.cancel, &mut |_, _| {})
        .await
        .map_err(|e| ToolOutput::error(format!("The search could not be run: {e}")))
}

/// The ways a search ends that are not its own result.
fn failure(
    tool: &str,
    ctx: &ToolContext<'_>,
    outcome: &ExecOutcome,
    path: &str,
) -> Option<ToolOutput> {
    let message = if outcome.timed_out {
        format!(
            "{tool} timed out after {} s; narrow the search with a more specific path or pattern.",
            seconds(ctx.exec_timeout)
        )
    } else if outcome.cancelled {
        "[cancelled]".to_owned()
    } else if outcome.oom_killed {
        format!("{tool} was killed: the sandbox ran out of memory.")
    } else {
        match outcome.exit_code {
            Some(EXIT_NOT_FOUND) => format!(
                "{}. Check the path with list_files.",
                FileError::NotFound(path.to_owned())
            ),
            Some(EXIT_OUTSIDE) => FileError::Outside(path.to_owned()).to_string(),
            Some(EXIT_NOT_DIRECTORY) => FileError::NotDirectory(path.to_owned()).to_string(),
            _ => return None,
        }
    };
    Some(ToolOutput::error(message))
}

/// Bash-style brace expansion (`a{b,c{d,e}}` → `ab acd ace`), which bash
/// does not apply to a pattern held in a variable. A `{…}` without a comma
/// and anything after a backslash stay as they are. `None` past `max`.
fn expand_braces(pattern: &str, max: usize) -> Option<Vec<String>> {
    let mut out = Vec::new();
    expand_into(pattern, max, &mut out)?;
    Some(out)
}

fn expand_into(p: &str, max: usize, out: &mut Vec<String>) -> Option<()> {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => {
                if let Some((close, commas)) = group(b, i) {
                    let (pre, post) = (&p[..i], &p[close + 1..]);
                    let mut start = i + 1;
                    for end in commas.into_iter().chain([close]) {
                        expand_into(&format!("{pre}{}{post}", &p[start..end]), max, out)?;
                        start = end + 1;
                    }
                    return Some(());
                }
            }
            _ => {}
        }
        i += 1;
    }
    if out.len() >= max {
        return None;
    }
    out.push(p.to_owned());
    Some(())
}

/// The `}` closing the `{` at `open`, and the commas at its top level; only
/// when there is at least one comma.
fn group(b: &[u8], open: usize) -> Option<(usize, Vec<usize>)> {
    let (mut depth, mut commas, mut i) = (0usize, Vec::new(), open);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return (!commas.is_empty()).then_some((i, commas));
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_braces_like_bash() {
        let e = |p| expand_braces(p, 100).unwrap();
        assert_eq!(e("**/*.rs"), ["**/*.rs"]);
        assert_eq!(e("*.{ts,tsx}"), ["*.ts", "*.tsx"]);
        assert_eq!(e("a{b,c{d,e}}f"), ["abf", "acdf", "acef"]);
        assert_eq!(e("{a,b}/{c,d}"), ["a/c", "a/d", "b/c", "b/d"]);
        assert_eq!(e("{a}"), ["{a}"]);
        assert_eq!(e(r"\{a,b}"), [r"\{a,b}"]);
        assert_eq!(e("{a,b"), ["{a,b"]);
        assert_eq!(e("{,x}y"), ["y", "xy"]);
        assert_eq!(e("é{ü,日}"), ["éü", "é日"]);
        assert!(expand_braces("{a,b}{c,d}{e,f}", 7).is_none());
    }

    #[test]
    fn normalizes_relative_paths() {
        assert_eq!(normalize(Path::new(".")), ".");
        assert_eq!(normalize(Path::new("./src/../lib/")), "lib");
        assert_eq!(normalize(Path::new("a/b")), "a/b");
    }
}
