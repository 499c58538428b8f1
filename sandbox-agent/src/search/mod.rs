//! Searches of a workspace, run where its files are: by the agent inside a
//! sandbox (`/fs/glob`, `/fs/grep`), by the server for a workspace on its
//! own host. Every folder and file is reached through the
//! [`ConfinedFolder`], so nothing a search takes or finds leaves the
//! workspace, even under a link planted while it runs; nothing is run, so
//! a pattern is only ever a pattern.
//!
//! - [`glob`]: bash's globbing (`globstar` on, `dotglob` off), a
//!   character at a time: `*`, `?` and `[…]` within one name, `**` any number of
//!   folders (links to folders are not entered), a name starting with `.`
//!   matched only where the pattern spells the dot, a trailing `/` for
//!   folders only; a pattern without wildcards finds the path if it is
//!   there. `{a,b}` is the caller's to expand.
//! - [`grep`]: lines matching a regular expression (the `regex` crate's
//!   syntax, as ripgrep's), ripgrep's way: hidden files and folders, links
//!   and what `.gitignore` and `.ignore` files exclude are skipped (what
//!   the file glob names is searched all the same), binary files (a NUL
//!   byte) left out, files in path order, long lines cut. A file named
//!   itself is searched whatever it is called.

mod glob;
mod grep;

pub use glob::{glob, PATTERN_MAX_CHARS};
pub use grep::grep;

use crate::folder::{ConfinedFolder, FileError, FileKind};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Files and folders matching glob patterns under a folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobQuery {
    pub patterns: Vec<String>,
    /// A folder of the workspace, as [`relative`](crate::folder::relative)
    /// takes it (`.` for the workspace itself).
    pub dir: String,
    /// Paths returned at most.
    pub max_results: usize,
}

/// What a glob found: paths relative to the workspace, sorted, folders
/// with a trailing `/`, and how many matched in all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobMatches {
    pub paths: Vec<String>,
    pub total: usize,
}

/// Lines matching a regular expression, in the files under a folder (or
/// in one file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrepQuery {
    pub pattern: String,
    /// As [`GlobQuery::dir`], or a file.
    pub dir: String,
    /// Only files whose path (from `dir`) matches this glob, or none of
    /// them with a leading `!` (ripgrep's `--glob`).
    pub file_glob: Option<String>,
    pub case_insensitive: bool,
    /// Bytes of matching lines kept.
    pub output_cap: usize,
}

/// Matching lines as `path:line:text`, sorted by path; empty when nothing
/// matched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrepMatches {
    pub lines: String,
    /// Lines were left out to respect the output cap.
    pub truncated: bool,
}

/// `/fs/glob`'s and `/fs/grep`'s request: the query, and how long it may
/// take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timed<Q> {
    pub query: Q,
    pub timeout_ms: u64,
}

/// Why a search found nothing to report; the agent sends it as JSON.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum SearchError {
    #[error("the folder does not exist")]
    NotFound,
    #[error("the folder is outside the workspace")]
    Outside,
    #[error("not a folder")]
    NotDirectory,
    /// The regular expression or the file glob, and why not.
    #[error("{0}")]
    BadPattern(String),
    #[error("timed out")]
    TimedOut,
    #[error("cancelled")]
    Cancelled,
    #[error("the search failed: {0}")]
    Failed(String),
}

impl From<FileError> for SearchError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::NotFound(_) => Self::NotFound,
            FileError::Outside(_) => Self::Outside,
            FileError::NotDirectory(_) => Self::NotDirectory,
            e => Self::Failed(e.to_string()),
        }
    }
}

/// When a search running on its thread must stop.
pub struct Bounds {
    deadline: Instant,
    stopped: Arc<AtomicBool>,
    /// Bytes of [`Names`] held, and the most that may be.
    held: Cell<usize>,
    held_max: usize,
}

/// Bytes of names a search holds at once (and of the ignore rules a grep
/// holds with them): those of every folder it is in, down to the deepest
/// ([`DEPTH_MAX`]). A folder holds at most
/// [`FOLDER_ENTRIES_MAX`](crate::folder::FOLDER_ENTRIES_MAX) names, but
/// the sandbox can nest hundreds of such folders (names of hard links to
/// one file cost it no disk), and a search of a workspace on the server's
/// host holds them in the server.
const NAMES_HELD_MAX_BYTES: usize = 64 * 1024 * 1024;
/// What a name held costs besides its bytes.
const NAME_COST_BYTES: usize = 32;

/// A folder's names and what each is ([`ConfinedFolder::names`]), counted
/// in the search's [`Bounds`] for as long as they are held.
struct Names<'b> {
    list: Vec<(String, FileKind)>,
    _held: Held<'b>,
}

/// Bytes counted in a search's [`Bounds`] for as long as this is kept.
struct Held<'b> {
    bytes: usize,
    bounds: &'b Bounds,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.bounds.release(self.bytes);
    }
}

impl Bounds {
    fn new(deadline: Instant, stopped: Arc<AtomicBool>) -> Bounds {
        Bounds {
            deadline,
            stopped,
            held: Cell::new(0),
            held_max: NAMES_HELD_MAX_BYTES,
        }
    }

    /// Folder `dir`'s names, none where it cannot be read; refused when
    /// the search would hold more than its most ([`NAMES_HELD_MAX_BYTES`]).
    fn names(&self, folder: &ConfinedFolder, dir: &str) -> Result<Names<'_>, SearchError> {
        let list = folder.names(at(dir)).unwrap_or_default();
        let bytes = list.iter().map(|(n, _)| n.len() + NAME_COST_BYTES).sum();
        Ok(Names {
            list,
            _held: self.held(bytes)?,
        })
    }

    /// [`Bounds::hold`], given back when what it returns is dropped.
    fn held(&self, bytes: usize) -> Result<Held<'_>, SearchError> {
        self.hold(bytes)?;
        Ok(Held {
            bytes,
            bounds: self,
        })
    }

    /// Takes `bytes` more of what the search holds: refused past its most
    /// ([`NAMES_HELD_MAX_BYTES`]). Given back with [`Bounds::release`].
    fn hold(&self, bytes: usize) -> Result<(), SearchError> {
        let held = self.held.get() + bytes;
        if held > self.held_max {
            return Err(SearchError::Failed(
                "its folders hold too many names (or ignore rules) to search at once: search a \
                 folder inside it"
                    .into(),
            ));
        }
        self.held.set(held);
        Ok(())
    }

    fn release(&self, bytes: usize) {
        self.held.set(self.held.get() - bytes);
    }

    fn check(&self) -> Result<(), SearchError> {
        if self.stopped.load(Ordering::Relaxed) {
            Err(SearchError::Cancelled)
        } else if Instant::now() > self.deadline {
            Err(SearchError::TimedOut)
        } else {
            Ok(())
        }
    }
}

/// Stops a search when what waits for it goes away.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `search` on a blocking thread within `timeout`; it stops when
/// `cancel` completes or this future is dropped. Its answer is not waited
/// for past the time limit (and a moment), should the search be slow to
/// see that it passed.
pub async fn bounded<T: Send + 'static>(
    timeout: Duration,
    cancel: impl Future<Output = ()>,
    search: impl FnOnce(&Bounds) -> Result<T, SearchError> + Send + 'static,
) -> Result<T, SearchError> {
    // A year stands for a limit too far to count.
    let timeout = timeout.min(Duration::from_secs(365 * 86_400));
    let stopped = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stopped.clone());
    let bounds = Bounds::new(Instant::now() + timeout, stopped);
    let task = tokio::task::spawn_blocking(move || search(&bounds));
    tokio::select! {
        done = task => done.unwrap_or_else(|e| Err(SearchError::Failed(e.to_string()))),
        () = cancel => Err(SearchError::Cancelled),
        () = tokio::time::sleep(timeout + Duration::from_secs(1)) => Err(SearchError::TimedOut),
    }
}

/// Folders deep a search goes below where it starts.
const DEPTH_MAX: usize = 256;

/// What a search starts from, `base` in [`join`]'s form: `None` for the
/// workspace of a sandbox never made (there, and empty).
fn start(folder: &ConfinedFolder, base: &str) -> Result<Option<FileKind>, SearchError> {
    if base.is_empty() && !folder.root().exists() {
        return Ok(None);
    }
    Ok(Some(folder.stat(at(base))?.kind))
}

/// `dir` and `name` as one path of the workspace (`dir` empty: the
/// workspace itself).
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// A path of the workspace as [`ConfinedFolder`] takes it.
fn at(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
    }
}

/// `dir` tidied into [`join`]'s form, by its text as the tools tidy a path
/// (`a/../b` is `b` whatever `a` is): `.` is empty, no `./`, no trailing
/// `/`.
fn base(dir: &str) -> Result<String, SearchError> {
    let mut parts: Vec<String> = Vec::new();
    for c in crate::folder::relative(dir)?.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            // `relative` has made sure it never climbs above the workspace.
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ws() -> (tempfile::TempDir, ConfinedFolder) {
        let dir = tempfile::tempdir().unwrap();
        let ws = ConfinedFolder::new(dir.path().join("ws"), None);
        ws.create().unwrap();
        (dir, ws)
    }

    pub(crate) fn bounds() -> Bounds {
        Bounds::new(Instant::now() + Duration::from_secs(60), Arc::default())
    }

    #[test]
    fn a_search_stops_when_told_or_late() {
        let (_d, ws) = ws();
        ws.write("a", b"x\n").unwrap();
        let query = GlobQuery {
            patterns: vec!["**".into()],
            dir: ".".into(),
            max_results: 10,
        };
        let stopped = Bounds::new(
            Instant::now() + Duration::from_secs(60),
            Arc::new(AtomicBool::new(true)),
        );
        assert_eq!(glob(&ws, &query, &stopped), Err(SearchError::Cancelled));
        let late = Bounds::new(Instant::now() - Duration::from_secs(1), Arc::default());
        assert_eq!(glob(&ws, &query, &late), Err(SearchError::TimedOut));
    }

    /// The names of the folders a search is in are bounded all together:
    /// each of a few nested folders is within the bound, all of them are
    /// not.
    #[test]
    fn a_search_holds_a_bounded_number_of_names() {
        let (_d, nested) = ws();
        let mut dir = String::new();
        for _ in 0..4 {
            dir = join(&dir, "0");
            for n in 1..=20 {
                nested
                    .write(&join(&dir, &format!("file-{n:02}")), b"needle\n")
                    .unwrap();
            }
        }
        // A folder's names: 20 files of 7 bytes and a folder of 1.
        let one = 20 * (7 + NAME_COST_BYTES) + 1 + NAME_COST_BYTES;
        let held_at_most = |max| {
            let mut bounds = bounds();
            bounds.held_max = max;
            bounds
        };
        let globbed = GlobQuery {
            patterns: vec!["**/file-01".into()],
            dir: ".".into(),
            max_results: 10,
        };
        let grepped = GrepQuery {
            pattern: "needle".into(),
            dir: ".".into(),
            file_glob: None,
            case_insensitive: false,
            output_cap: 1 << 20,
        };
        let crowded = |r: Result<(), SearchError>| matches!(r, Err(SearchError::Failed(m)) if m.contains("too many names"));
        let small = held_at_most(3 * one);
        assert!(crowded(glob(&nested, &globbed, &small).map(drop)));
        assert!(crowded(grep(&nested, &grepped, &small).map(drop)));
        let enough = held_at_most(6 * one);
        assert_eq!(glob(&nested, &globbed, &enough).unwrap().total, 4);
        assert_eq!(
            grep(&nested, &grepped, &enough)
                .unwrap()
                .lines
                .lines()
                .count(),
            80
        );
        // What a search held is given back as it goes.
        assert_eq!(enough.held.get(), 0);
        // The folders a glob went through count too: here, a folder's
        // names fit, and the 300 folders it holds, each gone into, do not.
        let (_d, wide) = ws();
        for n in 0..300 {
            wide.write(&join(&format!("d{n:03}"), "f"), b"").unwrap();
        }
        let every = GlobQuery {
            patterns: vec!["**/*".into()],
            dir: ".".into(),
            max_results: 10,
        };
        let names = 300 * (4 + NAME_COST_BYTES);
        assert!(crowded(
            glob(&wide, &every, &held_at_most(names + 300)).map(drop)
        ));
        let roomy = held_at_most(2 * names + 301 * glob::EXPANDED_COST_BYTES);
        assert_eq!(glob(&wide, &every, &roomy).unwrap().total, 600);
        assert_eq!(roomy.held.get(), 0);
        assert_eq!(
            grep(&nested, &grepped, &enough)
                .unwrap()
                .lines
                .lines()
                .count(),
            80
        );
    }

    /// A grep holds the ignore rules of every folder it is in, compiled,
    /// which takes some 200 times their bytes: a few large ones nested are
    /// searched, more are refused, not held.
    #[test]
    fn a_grep_holds_a_bounded_amount_of_ignore_rules() {
        // 60 KiB of rules, none of which ignores `f`.
        let rules: String = (0..8000).map(|n| format!("*.e{n}\n")).collect();
        let nested = |levels| {
            let (d, ws) = ws();
            let mut dir = String::new();
            for _ in 0..levels {
                ws.write(&join(&dir, ".gitignore"), rules.as_bytes())
                    .unwrap();
                dir = join(&dir, "d");
                ws.write(&join(&dir, "f"), b"needle\n").unwrap();
            }
            (d, ws)
        };
        let query = GrepQuery {
            pattern: "needle".into(),
            dir: ".".into(),
            file_glob: None,
            case_insensitive: false,
            output_cap: 1 << 20,
        };
        let (_d, three) = nested(3);
        let b = bounds();
        assert_eq!(grep(&three, &query, &b).unwrap().lines.lines().count(), 3);
        assert_eq!(b.held.get(), 0);
        let (_d, six) = nested(6);
        let refused = grep(&six, &query, &b);
        assert!(
            matches!(&refused, Err(SearchError::Failed(m)) if m.contains("ignore rules")),
            "{refused:?}"
        );
        assert_eq!(b.held.get(), 0);
        // Also those of the folders above where it starts.
        let below = GrepQuery {
            dir: "d/d/d/d/d".into(),
            ..query
        };
        assert!(grep(&six, &below, &b).is_err());
    }
}
