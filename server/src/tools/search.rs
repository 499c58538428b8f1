//! `glob` and `grep`: the model's searches, checked and answered in words
//! it can act on; the [`Workspace`] runs them (as searches: every value the
//! model chose is data, never a command).

use super::{cap_text, seconds, Args, ToolContext, ToolOutput};
use crate::sandbox::{
    relative, FileError, GlobQuery, GrepQuery, SearchError, SearchLimits, Workspace,
    CUT_SHORT_MARK, MOUNT_POINT, PATTERN_MAX_CHARS,
};
use std::path::{Component, Path};

/// Paths `glob` returns at most.
pub const GLOB_MAX_RESULTS: usize = 1000;
/// Patterns one `{a,b}` pattern may expand to.
const GLOB_MAX_ALTERNATIVES: usize = 256;

pub(super) async fn glob(ctx: &ToolContext<'_>, ws: &dyn Workspace, args: &Args) -> ToolOutput {
    let mut pattern = args.str("pattern");
    let mut path = args.opt_str("path").unwrap_or(".");
    if pattern.contains('\0') || path.contains('\0') {
        return ToolOutput::error("pattern and path cannot contain NUL bytes.");
    }
    if pattern.is_empty() {
        return ToolOutput::error("pattern is empty: give a glob such as **/*.rs.");
    }
    // (Before its braces are expanded, each group a level deeper.)
    if pattern.chars().count() > PATTERN_MAX_CHARS {
        return ToolOutput::error(format!(
            "A glob pattern has at most {PATTERN_MAX_CHARS} characters."
        ));
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
    let rel = match tidy(path) {
        Ok(rel) => rel,
        Err(e) => return e,
    };
    let Some(patterns) = expand_braces(pattern, GLOB_MAX_ALTERNATIVES) else {
        return ToolOutput::error(format!(
            "{pattern:?} expands to more than {GLOB_MAX_ALTERNATIVES} patterns, or nests {{a,b}} groups more than {BRACE_DEPTH_MAX} deep; use fewer {{a,b}} alternatives."
        ));
    };
    let query = GlobQuery {
        patterns,
        dir: rel.clone(),
        max_results: GLOB_MAX_RESULTS,
    };
    let found = match ws.glob(&query, limits(ctx)).await {
        Ok(found) => found,
        Err(e) => return failure("glob", ctx, e, path),
    };
    if found.paths.is_empty() {
        return ToolOutput::ok(format!(
            "No files match {pattern:?} under {}.",
            display_dir(&rel)
        ));
    }
    let shown = found.paths.len();
    let mut out = found.paths.join("\n");
    out.push('\n');
    let mut truncated = false;
    if found.total > shown {
        truncated = true;
        out.push_str(&format!(
            "[{} matches; showing the first {shown}. Narrow the pattern or path.]",
            found.total
        ));
    }
    let (content, cut) = cap_text(out, ctx.output_cap, "narrow the pattern or path");
    ToolOutput {
        content,
        is_error: false,
        truncated: truncated || cut,
    }
}

pub(super) async fn grep(ctx: &ToolContext<'_>, ws: &dyn Workspace, args: &Args) -> ToolOutput {
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
    let rel = match tidy(path) {
        Ok(rel) => rel,
        Err(e) => return e,
    };
    let query = GrepQuery {
        pattern: pattern.to_owned(),
        dir: rel.clone(),
        file_glob: file_glob.map(str::to_owned),
        case_insensitive: args.flag("case_insensitive"),
        output_cap: ctx.output_cap,
    };
    match ws.grep(&query, limits(ctx)).await {
        Ok(found) if found.lines.trim().is_empty() && !found.truncated => ToolOutput::ok(format!(
            "No matches for {pattern:?} in {}.",
            display_dir(&rel)
        )),
        Ok(found) => {
            const HINT: &str = "narrow the search with path, glob or a more specific pattern";
            // The search keeps to the cap; an agent on another host is
            // held to it all the same.
            let (mut content, cut) = cap_text(found.lines, ctx.output_cap, HINT);
            if found.truncated && !cut {
                if !content.ends_with('\n') {
                    content.push('\n');
                }
                content.push_str(&format!("{CUT_SHORT_MARK}{HINT}]"));
            }
            ToolOutput {
                content,
                is_error: false,
                truncated: found.truncated || cut,
            }
        }
        Err(e) => failure("grep", ctx, e, path),
    }
}

fn limits<'a>(ctx: &ToolContext<'a>) -> SearchLimits<'a> {
    SearchLimits {
        timeout: ctx.exec_timeout,
        cancel: ctx.cancel,
    }
}

/// `path` relative to the workspace, lexically tidied (`./a/../b` → `b`);
/// the workspace's own error when it can never be inside.
fn tidy(path: &str) -> Result<String, ToolOutput> {
    let rel = relative(path).map_err(|e| ToolOutput::error(e.to_string()))?;
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

/// The ways a search ends that are not its own result, for the model.
fn failure(tool: &str, ctx: &ToolContext<'_>, error: SearchError, path: &str) -> ToolOutput {
    ToolOutput::error(match error {
        SearchError::TimedOut => format!(
            "{tool} timed out after {} s; narrow the search with a more specific path or pattern.",
            seconds(ctx.exec_timeout)
        ),
        SearchError::Cancelled => "[cancelled]".to_owned(),
        SearchError::NotFound => format!(
            "{}. Check the path with list_files.",
            FileError::NotFound(path.to_owned())
        ),
        SearchError::Outside => FileError::Outside(path.to_owned()).to_string(),
        SearchError::NotDirectory => FileError::NotDirectory(path.to_owned()).to_string(),
        SearchError::BadPattern(why) => why,
        SearchError::Failed(why) => format!("The search could not be run: {why}"),
    })
}

/// Bash-style brace expansion (`a{b,c{d,e}}` → `ab acd ace`), which bash
/// does not apply to a pattern held in a variable. A `{…}` without a comma
/// and anything after a backslash stay as they are. `None` past `max`.
fn expand_braces(pattern: &str, max: usize) -> Option<Vec<String>> {
    let mut out = Vec::new();
    expand_into(pattern, max, 0, &mut out)?;
    Some(out)
}

/// Groups expanded within one another (or one after another) at most:
/// each is a level of the recursion.
const BRACE_DEPTH_MAX: u32 = 64;

fn expand_into(p: &str, max: usize, depth: u32, out: &mut Vec<String>) -> Option<()> {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => {
                if let Some((close, commas)) = group(b, i) {
                    if depth == BRACE_DEPTH_MAX {
                        return None;
                    }
                    let (pre, post) = (&p[..i], &p[close + 1..]);
                    let mut start = i + 1;
                    for end in commas.into_iter().chain([close]) {
                        let one = format!("{pre}{}{post}", &p[start..end]);
                        expand_into(&one, max, depth + 1, out)?;
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
        // Deeper than the recursion may go: refused, the stack untouched.
        let deep = |n| "{a,".repeat(n) + "b" + &"}".repeat(n);
        assert_eq!(expand_braces(&deep(63), 256).unwrap().len(), 64);
        assert!(expand_braces(&deep(100), 256).is_none());
        assert_eq!(expand_braces(&"{a,".repeat(64), 100).unwrap().len(), 1);
    }

    #[test]
    fn normalizes_relative_paths() {
        assert_eq!(normalize(Path::new(".")), ".");
        assert_eq!(normalize(Path::new("./src/../lib/")), "lib");
        assert_eq!(normalize(Path::new("a/b")), "a/b");
    }
}
