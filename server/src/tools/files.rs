//! The file tools: `read_file`, `write_file`, `edit_file` and `list_files`,
//! over the session's [`Workspace`], which resolves every path beneath it
//! (symlinks included), so they cannot touch anything outside.

use super::{cap_text, Args, ToolOutput};
use crate::sandbox::{FileError, Workspace, READ_MAX_BYTES};

/// Lines `read_file` returns when the model does not say.
const DEFAULT_LINES: usize = 2000;
/// Characters of one line `read_file` shows.
const LINE_MAX_CHARS: usize = 2000;
/// A NUL byte among the first this many bytes marks a binary file.
const BINARY_SNIFF_BYTES: usize = 8192;
/// Lines of context shown around an edit.
const EDIT_CONTEXT_LINES: usize = 3;
/// Bytes of the output cap kept for `read_file`'s closing note.
const NOTE_ROOM: usize = 160;

pub(super) async fn read_file(ws: &dyn Workspace, args: &Args, cap: usize) -> ToolOutput {
    let path = args.str("path");
    let data = match ws.read(path).await {
        Ok(data) => data,
        Err(e) => return file_error(e, Verb::Read),
    };
    if is_binary(&data) {
        return ToolOutput::error(binary_message(path, data.len()));
    }
    let text = String::from_utf8_lossy(&data);
    if text.is_empty() {
        return ToolOutput::ok(format!("{path:?} is empty."));
    }
    // Counted, not collected: a file of millions of empty lines would take
    // sixteen bytes a line more.
    let total = text.lines().count();
    let start = to_usize(args.opt_u64("offset").unwrap_or(1)).max(1);
    if start > total {
        return ToolOutput::error(format!(
            "offset {start} is past the end of {path:?}, which has {total} line{}.",
            plural(total)
        ));
    }
    let explicit_limit = args.opt_u64("limit").map(to_usize);
    let limit = explicit_limit.unwrap_or(DEFAULT_LINES);
    let end = total.min(start.saturating_add(limit).saturating_sub(1));

    let mut out = String::new();
    if matches!(text, std::borrow::Cow::Owned(_)) {
        out.push_str("[not valid UTF-8: invalid bytes are shown as \u{FFFD}]\n");
    }
    let mut last = start - 1;
    let mut hit_cap = false;
    // Room is left for the closing note.
    let budget = cap.saturating_sub(NOTE_ROOM);
    for (n, line) in (start..=end).zip(text.lines().skip(start - 1)) {
        let entry = numbered(n, line);
        // Always show at least one line, however long.
        if out.len() + entry.len() > budget && n > start {
            hit_cap = true;
            break;
        }
        out.push_str(&entry);
        last = n;
    }
    let mut truncated = hit_cap;
    if last < total {
        let why = if hit_cap {
            "the output limit was reached"
        } else if explicit_limit.is_none() {
            truncated = true;
            "read_file returns 2000 lines at a time"
        } else {
            "as limited"
        };
        out.push_str(&format!(
            "[showing lines {start}-{last} of {total} ({why}); pass offset={} to read on]",
            last + 1
        ));
    }
    // A single huge first line can still exceed the cap.
    let (out, cut) = cap_text(out, cap, "pass a larger offset to read on");
    ToolOutput {
        content: out,
        is_error: false,
        truncated: truncated || cut,
    }
}

pub(super) async fn write_file(ws: &dyn Workspace, args: &Args) -> ToolOutput {
    let path = args.str("path");
    let content = args.str("content");
    let existed = !matches!(ws.stat(path).await, Err(FileError::NotFound(_)));
    match ws.write(path, content.as_bytes()).await {
        Ok(()) => ToolOutput::ok(format!(
            "{} {path:?} ({} byte{}).",
            if existed { "Overwrote" } else { "Created" },
            content.len(),
            plural(content.len())
        )),
        Err(e) => file_error(e, Verb::Write),
    }
}

pub(super) async fn edit_file(ws: &dyn Workspace, args: &Args, cap: usize) -> ToolOutput {
    let path = args.str("path");
    let (old, new) = (args.str("old_string"), args.str("new_string"));
    let replace_all = args.flag("replace_all");
    if old.is_empty() {
        return ToolOutput::error(
            "old_string is empty: give the exact text to replace (use write_file to create or overwrite a whole file).",
        );
    }
    if old == new {
        return ToolOutput::error(
            "old_string and new_string are the same: there is nothing to change.",
        );
    }
    let data = match ws.read(path).await {
        Ok(data) => data,
        Err(e) => return file_error(e, Verb::Edit),
    };
    if is_binary(&data) {
        return ToolOutput::error(binary_message(path, data.len()));
    }
    let Ok(text) = String::from_utf8(data) else {
        return ToolOutput::error(format!(
            "{path:?} is not valid UTF-8 text, so edit_file cannot edit it safely; rewrite it with write_file."
        ));
    };
    // A file with Windows line ends: match the model's `\n` against `\r\n`.
    let crlf;
    let (old, new) = if !text.contains(old) && old.contains('\n') && text.contains("\r\n") {
        crlf = (to_crlf(old), to_crlf(new));
        (crlf.0.as_str(), crlf.1.as_str())
    } else {
        (old, new)
    };
    let count = text.matches(old).count();
    let Some(first) = text.find(old) else {
        return ToolOutput::error(format!(
            "old_string was not found in {path:?}. It must match the file exactly, including \
whitespace and indentation, without line-number prefixes; read the file again to see its \
current text."
        ));
    };
    if count > 1 && !replace_all {
        return ToolOutput::error(format!(
            "old_string occurs {count} times in {path:?}. Include more surrounding lines to \
make it unique, or set replace_all to true to replace every occurrence."
        ));
    }
    // Worked out before the edit is made, in the server's memory: one
    // character replaced by a long text in a 10 MiB file would be
    // gigabytes.
    let replaced = if replace_all { count } else { 1 };
    let size = text.len() as u128 - (old.len() * replaced) as u128
        + (new.len() as u128 * replaced as u128);
    if size > u128::from(READ_MAX_BYTES) {
        return ToolOutput::error(format!(
            "The edit would make {path:?} {size} bytes, more than a file may be to be read ({READ_MAX_BYTES} bytes): make it in smaller steps, or write the file with write_file."
        ));
    }
    let edited = if replace_all {
        text.replace(old, new)
    } else {
        text.replacen(old, new, 1)
    };
    if let Err(e) = ws.write(path, edited.as_bytes()).await {
        return file_error(e, Verb::Edit);
    }
    let first_line = text[..first].matches('\n').count() + 1;
    let snippet = context(&edited, first_line, first_line + new.matches('\n').count());
    let message = format!(
        "Edited {path:?}: replaced {count} occurrence{}. The file around the {}change now reads:\n{snippet}",
        plural(count),
        if count > 1 { "first " } else { "" }
    );
    let (content, truncated) = cap_text(message, cap, "read the file to see the rest");
    ToolOutput {
        content,
        is_error: false,
        truncated,
    }
}

pub(super) async fn list_files(ws: &dyn Workspace, args: &Args, cap: usize) -> ToolOutput {
    let path = args.opt_str("path").unwrap_or(".");
    let entries = match ws.list(path).await {
        Ok(entries) => entries,
        Err(e) => return file_error(e, Verb::List),
    };
    if entries.is_empty() {
        return ToolOutput::ok(format!("{path:?} is an empty folder."));
    }
    let mut out = String::new();
    for e in &entries {
        if e.is_dir {
            out.push_str(&format!("{}/\n", e.name));
        } else {
            out.push_str(&format!("{} ({} byte{})\n", e.name, e.size, plural(e.size)));
        }
    }
    let (content, truncated) = cap_text(out, cap, "use glob with a narrower pattern");
    ToolOutput {
        content,
        is_error: false,
        truncated,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    Read,
    Write,
    Edit,
    List,
}

/// A workspace error as the model should read it, with what to do next.
pub(super) fn file_error(e: FileError, verb: Verb) -> ToolOutput {
    let hint = match (&e, verb) {
        (FileError::NotFound(_), Verb::Edit) => {
            " Check the path with list_files or glob; use write_file to create a new file."
        }
        (FileError::NotFound(_), _) => " Check the path with list_files or glob.",
        (FileError::IsDirectory(_), Verb::Read | Verb::Edit) => {
            " Use list_files to see its entries."
        }
        (FileError::IsDirectory(_), _) => " Give the path of a file.",
        (FileError::TooLarge { .. }, Verb::Edit) => " Edit it with bash (e.g. sed) instead.",
        (FileError::TooLarge { .. }, _) => " Search it with grep instead.",
        _ => "",
    };
    let mut message = e.to_string();
    if !hint.is_empty() {
        message.push('.');
        message.push_str(hint);
    }
    ToolOutput::error(message)
}

fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(BINARY_SNIFF_BYTES)].contains(&0)
}

fn binary_message(path: &str, len: usize) -> String {
    format!(
        "{path:?} looks like a binary file ({len} bytes); this tool only handles text. \
(With bash, tools such as `file` or `xxd` can inspect it.)"
    )
}

/// One line as `cat -n` prints it, cut when very long.
fn numbered(n: usize, line: &str) -> String {
    match app::text::cut_chars(line, LINE_MAX_CHARS) {
        Some(cut) => format!(
            "{n:>6}\t{cut}… [line cut: {} characters in all]\n",
            line.chars().count()
        ),
        None => format!("{n:>6}\t{line}\n"),
    }
}

/// Lines `from..=to` (1-based) of `text` and a few around them, numbered.
fn context(text: &str, from: usize, to: usize) -> String {
    let lo = from.saturating_sub(EDIT_CONTEXT_LINES).max(1);
    let hi = to.saturating_add(EDIT_CONTEXT_LINES);
    let mut out = String::new();
    for (n, line) in (1..).zip(text.lines()) {
        if n > hi {
            break;
        }
        if n >= lo {
            out.push_str(&numbered(n, line));
        }
    }
    out
}

fn to_crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn plural<N: TryInto<u64>>(n: N) -> &'static str {
    if n.try_into().ok() == Some(1) {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_cuts_lines() {
        assert_eq!(numbered(7, "fn main() {}"), "     7\tfn main() {}\n");
        let long = "x".repeat(LINE_MAX_CHARS + 5);
        let shown = numbered(1, &long);
        assert!(
            shown.contains("[line cut: 2005 characters in all]"),
            "{shown}"
        );
    }

    #[test]
    fn context_surrounds_the_change() {
        let text = (1..=20).map(|n| format!("l{n}\n")).collect::<String>();
        let c = context(&text, 10, 11);
        assert!(c.starts_with("     7\tl7\n"), "{c}");
        assert!(c.ends_with("    14\tl14\n"), "{c}");
        assert!(context(&text, 1, 1).starts_with("     1\tl1\n"));
    }

    #[test]
    fn crlf_conversion_is_idempotent() {
        assert_eq!(to_crlf("a\nb\r\nc"), "a\r\nb\r\nc");
    }
}
