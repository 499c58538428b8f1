//! [`grep`]: lines matching a regular expression, ripgrep's way, through a
//! [`ConfinedFolder`].

use super::{
    at, base, join, start, Bounds, GrepMatches, GrepQuery, Held, Names, SearchError, DEPTH_MAX,
};
use crate::folder::{ConfinedFolder, FileKind, MOUNT_POINT};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::overrides::{Override, OverrideBuilder};
use ignore::Match;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Characters of a matching line shown; the rest is said to be left out.
const LINE_SHOWN_CHARS: usize = 500;
const LINE_CUT_MARK: &str = " [... omitted end of long line]";
/// Bytes of one line searched: a longer line is searched in its start, and
/// the rest of its file is passed over.
const LINE_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes at a file's start looked at for a NUL (a binary file).
const BINARY_PROBE_BYTES: usize = 8 * 1024;
/// Bytes read between two looks at the search's bounds.
const CHECK_EVERY_BYTES: u64 = 1024 * 1024;
/// Bytes of an ignore file read (what is past them is left out).
const IGNORE_FILE_MAX_BYTES: usize = 64 * 1024;
/// What a byte of an ignore file costs held, once compiled: 64 KiB of
/// rules took 8 to 13 MiB (globset 0.4.22, counted by allocator), and a
/// grep holds the rules of every folder it is in, down to the deepest.
const RULE_COST_BYTES: usize = 200;

pub fn grep(
    folder: &ConfinedFolder,
    query: &GrepQuery,
    bounds: &Bounds,
) -> Result<GrepMatches, SearchError> {
    let regex = regex::bytes::RegexBuilder::new(&query.pattern)
        .case_insensitive(query.case_insensitive)
        .build()
        .map_err(|e| SearchError::BadPattern(e.to_string()))?;
    let base = base(&query.dir)?;
    let mut grepped = Grepped {
        folder,
        bounds,
        regex,
        lines: String::new(),
        cap: query.output_cap,
        truncated: false,
    };
    match start(folder, &base)? {
        None => {}
        Some(FileKind::Folder) => {
            let filter = match &query.file_glob {
                Some(glob) => Some(file_filter(&base, glob)?),
                None => None,
            };
            grepped.walk(&base, filter.as_ref())?;
        }
        Some(_) => {
            grepped.file(&base)?;
        }
    }
    Ok(GrepMatches {
        lines: grepped.lines,
        truncated: grepped.truncated,
    })
}

/// A path of the workspace as it is inside a sandbox, for the ignore and
/// glob matchers.
fn mounted(path: &str) -> PathBuf {
    Path::new(MOUNT_POINT).join(path)
}

/// The rules of an ignore file of folder `dir`.
fn compiled(dir: &str, rules: &[u8]) -> Option<Gitignore> {
    let mut builder = GitignoreBuilder::new(mounted(dir));
    for line in String::from_utf8_lossy(rules).lines() {
        // A line it cannot use is left out, as git does.
        let _ = builder.add_line(None, line);
    }
    builder.build().ok()
}

/// ripgrep's `--glob`, relative to the folder searched.
fn file_filter(base: &str, glob: &str) -> Result<Override, SearchError> {
    let bad = |e: ignore::Error| SearchError::BadPattern(format!("the glob {glob:?}: {e}"));
    let mut builder = OverrideBuilder::new(mounted(base));
    builder.add(glob).map_err(bad)?;
    builder.build().map_err(bad)
}

/// A grep under way.
struct Grepped<'a> {
    folder: &'a ConfinedFolder,
    bounds: &'a Bounds,
    regex: regex::bytes::Regex,
    lines: String,
    cap: usize,
    truncated: bool,
}

/// One folder of a walk: what is left of it, in order, and its ignore
/// rules.
struct Level<'b> {
    dir: String,
    /// Its names, last first.
    left: Names<'b>,
    rules: Rules<'b>,
}

/// A folder's ignore files, counted in the search's [`Bounds`] while held.
struct Rules<'b> {
    ignore: Option<Gitignore>,
    gitignore: Option<Gitignore>,
    _held: Held<'b>,
}

/// Whether the ignore files of the folders holding `full` (nearest first)
/// ignore it (`Some(true)`), let it be (`Some(false)`: a `!` rule) or say
/// nothing: ripgrep's order, any `.ignore` before any `.gitignore`.
fn ignored<'r, 'b: 'r>(
    rules: impl Iterator<Item = &'r Rules<'b>> + Clone,
    full: &Path,
    is_dir: bool,
) -> Option<bool> {
    let said = |file: for<'x> fn(&'x Rules<'b>) -> Option<&'x Gitignore>| {
        rules
            .clone()
            .filter_map(file)
            .map(|g| g.matched(full, is_dir))
            .find(|m| !m.is_none())
            .map(|m| m.is_ignore())
    };
    said(|r| r.ignore.as_ref()).or_else(|| said(|r| r.gitignore.as_ref()))
}

impl<'a> Grepped<'a> {
    /// The rules of folder `dir`'s `.ignore` and `.gitignore`; refused
    /// past what the search may hold.
    fn rules(&self, dir: &str, names: &[(String, FileKind)]) -> Result<Rules<'a>, SearchError> {
        let ignore = self.ignore_file(dir, ".ignore", names);
        let gitignore = self.ignore_file(dir, ".gitignore", names);
        let bytes = [&ignore, &gitignore]
            .into_iter()
            .flatten()
            .map(Vec::len)
            .sum::<usize>();
        let held = self.bounds.held(bytes * RULE_COST_BYTES)?;
        Ok(Rules {
            ignore: ignore.and_then(|rules| compiled(dir, &rules)),
            gitignore: gitignore.and_then(|rules| compiled(dir, &rules)),
            _held: held,
        })
    }

    /// Ignore file `file` of folder `dir`, if it has one: its first
    /// [`IGNORE_FILE_MAX_BYTES`], cut after their last whole line.
    fn ignore_file(&self, dir: &str, file: &str, names: &[(String, FileKind)]) -> Option<Vec<u8>> {
        names.iter().find(|(name, _)| name == file)?;
        let open = self.folder.open_file(&join(dir, file)).ok()?;
        let mut bytes = Vec::new();
        open.file
            .take(IGNORE_FILE_MAX_BYTES as u64)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() == IGNORE_FILE_MAX_BYTES {
            let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            bytes.truncate(whole);
        }
        Some(bytes)
    }

    /// The folders from the workspace down to above `base`, with their
    /// ignore rules: they apply below them.
    fn ancestors(&self, base: &str) -> Result<Vec<Rules<'a>>, SearchError> {
        let mut rules = Vec::new();
        let mut dir = String::new();
        for part in base.split('/').filter(|p| !p.is_empty()) {
            if let Ok(names) = self.folder.names(at(&dir)) {
                rules.push(self.rules(&dir, &names)?);
            }
            dir = join(&dir, part);
        }
        Ok(rules)
    }

    fn walk(&mut self, base: &str, filter: Option<&Override>) -> Result<(), SearchError> {
        let above = self.ancestors(base)?;
        let mut levels: Vec<Level<'a>> = Vec::new();
        self.enter(&mut levels, base.to_owned())?;
        while let Some(level) = levels.last_mut() {
            let Some((name, kind)) = level.left.list.pop() else {
                levels.pop();
                continue;
            };
            self.bounds.check()?;
            let path = join(&level.dir, &name);
            if !matches!(kind, FileKind::Folder | FileKind::File) {
                continue;
            }
            let is_dir = kind == FileKind::Folder;
            let full = mounted(&path);
            // As ripgrep weighs them: the file glob first (what it names is
            // searched, hidden or ignored), then the ignore files, then
            // hidden names.
            let filtered = filter.map_or(Match::None, |f| f.matched(&full, is_dir));
            let skipped = match filtered {
                Match::Whitelist(_) => false,
                Match::Ignore(_) => true,
                Match::None => {
                    let nearest_first = levels.iter().rev().map(|l| &l.rules);
                    ignored(nearest_first.chain(above.iter().rev()), &full, is_dir)
                        .unwrap_or_else(|| name.starts_with('.'))
                }
            };
            if skipped {
                continue;
            }
            if is_dir {
                if levels.len() <= DEPTH_MAX {
                    self.enter(&mut levels, path)?;
                }
            } else if !self.file(&path)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Adds folder `dir` to the walk (nothing, where it cannot be read).
    fn enter(&self, levels: &mut Vec<Level<'a>>, dir: String) -> Result<(), SearchError> {
        self.bounds.check()?;
        let mut names = self.bounds.names(self.folder, &dir)?;
        let rules = self.rules(&dir, &names.list)?;
        names.list.reverse();
        levels.push(Level {
            dir,
            left: names,
            rules,
        });
        Ok(())
    }

    /// Searches file `path`; `false` once the output is full.
    fn file(&mut self, path: &str) -> Result<bool, SearchError> {
        // A file that cannot be read (a pipe, refused permissions) is
        // passed over.
        let Ok(open) = self.folder.open_file(path) else {
            return Ok(true);
        };
        let mut reader = BufReader::with_capacity(64 * 1024, open.file);
        match reader.fill_buf() {
            Ok(start) if !start[..start.len().min(BINARY_PROBE_BYTES)].contains(&0) => {}
            _ => return Ok(true),
        }
        let mut line = Vec::new();
        let (mut number, mut unchecked) = (0u64, 0u64);
        loop {
            line.clear();
            let read = (&mut reader)
                .take(LINE_MAX_BYTES)
                .read_until(b'\n', &mut line);
            match read {
                Ok(0) | Err(_) => return Ok(true),
                Ok(_) => {}
            }
            number += 1;
            unchecked += line.len() as u64 + 64;
            if unchecked >= CHECK_EVERY_BYTES {
                self.bounds.check()?;
                unchecked = 0;
            }
            // A line past the bound is the file's last searched.
            let last = line.last() != Some(&b'\n') && line.len() as u64 == LINE_MAX_BYTES;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.contains(&0) {
                // Binary after all: what came before it stands.
                return Ok(true);
            }
            if self.regex.is_match(&line) && !self.matched(path, number, &line) {
                return Ok(false);
            }
            if last {
                return Ok(true);
            }
        }
    }

    /// Adds a matching line; `false` when it does not fit.
    fn matched(&mut self, path: &str, number: u64, line: &[u8]) -> bool {
        let text = String::from_utf8_lossy(line);
        let shown = match text.char_indices().nth(LINE_SHOWN_CHARS) {
            Some((cut, _)) => format!("{}{LINE_CUT_MARK}", &text[..cut]),
            None => text.into_owned(),
        };
        let entry = format!("{path}:{number}:{shown}\n");
        if self.lines.len() + entry.len() > self.cap {
            self.truncated = true;
            return false;
        }
        self.lines.push_str(&entry);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::tests::{bounds, ws};

    fn grepped(ws: &ConfinedFolder, dir: &str, pattern: &str, file_glob: Option<&str>) -> String {
        let query = GrepQuery {
            pattern: pattern.into(),
            dir: dir.into(),
            file_glob: file_glob.map(str::to_owned),
            case_insensitive: false,
            output_cap: 64 * 1024,
        };
        grep(ws, &query, &bounds()).unwrap().lines
    }

    #[test]
    fn greps_like_ripgrep() {
        let (dir, ws) = ws();
        ws.write("src/a.rs", b"fn main() {}\nlet x = 1; // main\n")
            .unwrap();
        ws.write("src/b.txt", b"main here\n").unwrap();
        ws.write(".hidden/c.rs", b"main\n").unwrap();
        ws.write("target/d.rs", b"main\n").unwrap();
        ws.write("keep/target/e.rs", b"main\n").unwrap();
        ws.write(".gitignore", b"/target\n*.log\n").unwrap();
        ws.write("app.log", b"main\n").unwrap();
        ws.write("bin.dat", b"main\0\x01").unwrap();
        ws.write("long.txt", format!("{}main\n", "x".repeat(600)).as_bytes())
            .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("ws/pw")).unwrap();
        std::os::unix::fs::symlink("src/a.rs", dir.path().join("ws/inner")).unwrap();
        let all = grepped(&ws, ".", "main", None);
        assert_eq!(
            all,
            format!(
                "keep/target/e.rs:1:main\nlong.txt:1:{}{LINE_CUT_MARK}\nsrc/a.rs:1:fn main() \
                 {{}}\nsrc/a.rs:2:let x = 1; // main\nsrc/b.txt:1:main here\n",
                "x".repeat(500)
            )
        );
        assert_eq!(
            grepped(&ws, "src", "main", Some("*.rs")),
            "src/a.rs:1:fn main() {}\nsrc/a.rs:2:let x = 1; // main\n"
        );
        assert_eq!(
            grepped(&ws, ".", "main", Some("!*.{rs,txt}")),
            "" // everything else is binary, hidden or ignored
        );
        // A file named itself is searched, hidden or ignored.
        assert_eq!(
            grepped(&ws, ".hidden/c.rs", "main", None),
            ".hidden/c.rs:1:main\n"
        );
        assert_eq!(grepped(&ws, "./app.log", "ma.n", None), "app.log:1:main\n");
        // What the file glob names is searched, ignored or hidden.
        assert_eq!(grepped(&ws, ".", "main", Some("*.log")), "app.log:1:main\n");
        assert_eq!(
            grepped(&ws, "keep/../src", "main", Some("*.txt")),
            "src/b.txt:1:main here\n"
        );
        // A line past the bound is searched in its start, and the rest of
        // its file is passed over.
        let mut huge = vec![b'x'; LINE_MAX_BYTES as usize + 10];
        huge.extend_from_slice(b"main\nmain\n");
        ws.write("huge/one.txt", &huge).unwrap();
        assert_eq!(grepped(&ws, "huge", "main", None), "");
        let start = grepped(&ws, "huge", "^x{5}", None);
        assert_eq!(
            start,
            format!("huge/one.txt:1:{}{LINE_CUT_MARK}\n", "x".repeat(500))
        );
        let query = |pattern: &str, dir: &str| GrepQuery {
            pattern: pattern.into(),
            dir: dir.into(),
            file_glob: None,
            case_insensitive: false,
            output_cap: 30,
        };
        let capped = grep(&ws, &query("main", "."), &bounds()).unwrap();
        assert_eq!(capped.lines, "keep/target/e.rs:1:main\n");
        assert!(capped.truncated);
        let bad = grep(&ws, &query("fn ((", "."), &bounds()).unwrap_err();
        assert!(bad.to_string().contains("regex parse error"), "{bad}");
        assert_eq!(
            grep(&ws, &query("root", "pw"), &bounds()),
            Err(SearchError::Outside)
        );
        assert_eq!(
            grep(&ws, &query("x", "nope"), &bounds()),
            Err(SearchError::NotFound)
        );
    }

    #[test]
    fn ignore_files_weigh_as_in_ripgrep() {
        let (_d, ws) = ws();
        ws.write(".gitignore", b"*.log\n!.config/\n").unwrap();
        // A nearer .gitignore says otherwise; any .ignore weighs more.
        ws.write("sub/.ignore", b"!keep.log\n").unwrap();
        ws.write("sub/.gitignore", b"keep.log\n").unwrap();
        for path in ["sub/keep.log", "sub/drop.log", ".config/a", ".other/b"] {
            ws.write(path, b"hit\n").unwrap();
        }
        // A folder an ignore file lets be is searched, hidden or not.
        assert_eq!(
            grepped(&ws, ".", "hit", None),
            ".config/a:1:hit\nsub/keep.log:1:hit\n"
        );
    }
}
