//! [`glob`]: bash's globbing, through a [`ConfinedFolder`].

use super::{at, base, join, start, Bounds, GlobMatches, GlobQuery, Names, SearchError, DEPTH_MAX};
use crate::folder::{ConfinedFolder, FileKind};
use std::collections::{BTreeSet, HashSet};
use std::hash::{BuildHasher, RandomState};

/// Characters of one pattern.
pub const PATTERN_MAX_CHARS: usize = 4096;
/// `/`-separated parts of one pattern.
const SEGMENTS_MAX: usize = 128;

pub fn glob(
    folder: &ConfinedFolder,
    query: &GlobQuery,
    bounds: &Bounds,
) -> Result<GlobMatches, SearchError> {
    let parsed = query
        .patterns
        .iter()
        .map(|p| Segment::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let base = base(&query.dir)?;
    let mut globbed = Globbed {
        folder,
        bounds,
        base: base.clone(),
        kept: BTreeSet::new(),
        total: 0,
        max: query.max_results,
        expanded: HashSet::new(),
        keys: RandomState::new(),
    };
    match start(folder, &base)? {
        None => {}
        Some(FileKind::Folder) => {
            for (segments, folders_only) in parsed {
                globbed.forget_expanded();
                if !segments.is_empty() {
                    globbed.expand(&base, &segments, folders_only, 0)?;
                }
            }
        }
        Some(_) => return Err(SearchError::NotDirectory),
    }
    Ok(GlobMatches {
        paths: std::mem::take(&mut globbed.kept).into_iter().collect(),
        total: globbed.total,
    })
}

/// A glob under way: the first matches in order, and how many in all.
struct Globbed<'a> {
    folder: &'a ConfinedFolder,
    bounds: &'a Bounds,
    /// Where it started, in [`join`]'s form.
    base: String,
    kept: BTreeSet<String>,
    total: usize,
    max: usize,
    /// The folders the pattern under way has matched from each of its
    /// parts (by how many were left): each once, so a pattern with many
    /// `**` (`**/*/**/*/**`) takes polynomial work, and a path it reaches
    /// in more ways than one (`**/a/**`) counts once. Kept by the path's
    /// hash under a key of this search's own, and each counted in what the
    /// search holds ([`EXPANDED_COST_BYTES`]): a workspace of a million
    /// folders with long paths would otherwise hold gigabytes.
    expanded: HashSet<(u64, usize)>,
    keys: RandomState,
}

/// What one folder matched from one part of a pattern costs, held.
pub(super) const EXPANDED_COST_BYTES: usize = 32;

impl Drop for Globbed<'_> {
    fn drop(&mut self) {
        self.forget_expanded();
    }
}

impl<'a> Globbed<'a> {
    /// Forgets the folders matched, before the next pattern.
    fn forget_expanded(&mut self) {
        self.bounds
            .release(self.expanded.len() * EXPANDED_COST_BYTES);
        self.expanded.clear();
    }

    /// Whether `path`, which is `kind`, is a folder once a link is followed.
    fn is_folder(&self, path: &str, kind: FileKind) -> bool {
        match kind {
            FileKind::Folder => true,
            FileKind::Link => self
                .folder
                .stat(at(path))
                .is_ok_and(|s| s.kind == FileKind::Folder),
            _ => false,
        }
    }

    fn found(&mut self, path: &str, kind: FileKind, folders_only: bool) {
        let folder = self.is_folder(path, kind);
        if folders_only && !folder {
            return;
        }
        self.total += 1;
        self.kept.insert(if folder {
            format!("{path}/")
        } else {
            path.to_owned()
        });
        if self.kept.len() > self.max {
            self.kept.pop_last();
        }
    }

    /// What is not hidden in folder `dir`; nothing where it cannot be read.
    fn visible(&self, dir: &str) -> Result<Names<'a>, SearchError> {
        let mut names = self.bounds.names(self.folder, dir)?;
        names.list.retain(|(name, _)| !name.starts_with('.'));
        Ok(names)
    }

    /// Matches `segments` in folder `dir`, `depth` folders below the start.
    fn expand(
        &mut self,
        dir: &str,
        segments: &[Segment],
        folders_only: bool,
        depth: usize,
    ) -> Result<(), SearchError> {
        self.bounds.check()?;
        let Some((first, rest)) = segments.split_first() else {
            return Ok(());
        };
        let key = (self.keys.hash_one(dir), segments.len());
        if depth > DEPTH_MAX || self.expanded.contains(&key) {
            return Ok(());
        }
        self.bounds.hold(EXPANDED_COST_BYTES)?;
        self.expanded.insert(key);
        match first {
            Segment::Globstar if rest.is_empty() => {
                // Everything below, and the folder itself unless it is
                // where the glob started.
                if dir != self.base {
                    self.found(dir, FileKind::Folder, folders_only);
                }
                let names = self.visible(dir)?;
                for (name, kind) in &names.list {
                    let kind = *kind;
                    self.bounds.check()?;
                    let path = join(dir, name);
                    if kind == FileKind::Folder {
                        self.expand(&path, segments, folders_only, depth + 1)?;
                    } else {
                        self.found(&path, kind, folders_only);
                    }
                }
            }
            Segment::Globstar => {
                // No folder, then one more.
                self.expand(dir, rest, folders_only, depth)?;
                let names = self.visible(dir)?;
                for (name, kind) in &names.list {
                    self.bounds.check()?;
                    if *kind == FileKind::Folder {
                        self.expand(&join(dir, name), segments, folders_only, depth + 1)?;
                    }
                }
            }
            Segment::Literal(name) => {
                let path = join(dir, name);
                match self.folder.kind_of(&path) {
                    Ok(Some(kind)) if rest.is_empty() => self.found(&path, kind, folders_only),
                    Ok(Some(kind)) if self.is_folder(&path, kind) => {
                        self.expand(&path, rest, folders_only, depth + 1)?
                    }
                    _ => {}
                }
            }
            Segment::Pattern(pattern) => {
                let names = self.bounds.names(self.folder, dir)?;
                for (name, kind) in &names.list {
                    let kind = *kind;
                    self.bounds.check()?;
                    if !pattern.matches(name) {
                        continue;
                    }
                    let path = join(dir, name);
                    if rest.is_empty() {
                        self.found(&path, kind, folders_only);
                    } else if self.is_folder(&path, kind) {
                        self.expand(&path, rest, folders_only, depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One `/`-separated part of a glob pattern.
#[derive(Debug)]
enum Segment {
    /// `**`: any number of folders.
    Globstar,
    /// A name without wildcards (its backslashes taken away).
    Literal(String),
    Pattern(NamePattern),
}

impl Segment {
    /// The segments of `pattern`, and whether it ends with `/` (folders
    /// only). Empty and `.` segments are left out, and `**/**` is `**`.
    fn parse(pattern: &str) -> Result<(Vec<Segment>, bool), SearchError> {
        if pattern.chars().count() > PATTERN_MAX_CHARS {
            return Err(SearchError::BadPattern(format!(
                "a glob pattern has at most {PATTERN_MAX_CHARS} characters"
            )));
        }
        let mut parts: Vec<&str> = pattern
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        parts.dedup_by(|a, b| *a == "**" && *b == "**");
        if parts.len() > SEGMENTS_MAX {
            return Err(SearchError::BadPattern(format!(
                "a glob pattern has at most {SEGMENTS_MAX} folders"
            )));
        }
        let segments = parts
            .into_iter()
            .map(|s| {
                if s == "**" {
                    return Segment::Globstar;
                }
                let tokens = NamePattern::tokens(s);
                let literal: Option<String> = tokens
                    .iter()
                    .map(|t| match t {
                        Token::Char(c) => Some(*c),
                        _ => None,
                    })
                    .collect();
                match literal {
                    Some(name) => Segment::Literal(name),
                    None => Segment::Pattern(NamePattern(tokens)),
                }
            })
            .collect();
        Ok((segments, pattern.ends_with('/')))
    }
}

#[derive(Debug)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*`
    Any,
    /// `[…]`
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
}

#[derive(Debug)]
enum ClassItem {
    Char(char),
    Range(char, char),
    /// `[:alpha:]` and the like.
    Named(fn(&char) -> bool),
}

/// A name pattern with wildcards, as bash matches one path segment.
#[derive(Debug)]
struct NamePattern(Vec<Token>);

impl NamePattern {
    fn tokens(segment: &str) -> Vec<Token> {
        let chars: Vec<char> = segment.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let token = match chars[i] {
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    Token::Char(chars[i])
                }
                '?' => Token::One,
                '*' => Token::Any,
                '[' => match Self::class(&chars[i + 1..]) {
                    Some((class, used)) => {
                        i += used;
                        class
                    }
                    // Unclosed: a plain `[`.
                    None => Token::Char('['),
                },
                c => Token::Char(c),
            };
            tokens.push(token);
            i += 1;
        }
        tokens
    }

    /// The class whose body starts `rest` (after its `[`), and the
    /// characters it takes up to its `]`; `None` when it is not closed.
    fn class(rest: &[char]) -> Option<(Token, usize)> {
        let mut i = 0;
        let negated = matches!(rest.first(), Some('!' | '^'));
        if negated {
            i += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = *rest.get(i)?;
            if c == ']' && !first {
                return Some((Token::Class { negated, items }, i + 1));
            }
            first = false;
            if c == '[' && rest.get(i + 1) == Some(&':') {
                let name: String = rest[i + 2..].iter().take_while(|c| **c != ':').collect();
                let end = i + 2 + name.chars().count();
                if rest.get(end) == Some(&':') && rest.get(end + 1) == Some(&']') {
                    if let Some(test) = named_class(&name) {
                        items.push(ClassItem::Named(test));
                        i = end + 2;
                        continue;
                    }
                }
            }
            let c = if c == '\\' && i + 1 < rest.len() {
                i += 1;
                rest[i]
            } else {
                c
            };
            match (rest.get(i + 1), rest.get(i + 2)) {
                (Some('-'), Some(&end)) if end != ']' => {
                    let (end, used) = match (end, rest.get(i + 3)) {
                        ('\\', Some(&escaped)) => (escaped, 4),
                        _ => (end, 3),
                    };
                    items.push(ClassItem::Range(c, end));
                    i += used;
                }
                _ => {
                    items.push(ClassItem::Char(c));
                    i += 1;
                }
            }
        }
    }

    /// Whether `name` matches: the whole of it, a leading `.` only where
    /// the pattern spells it.
    fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        if name.first() == Some(&'.') && !matches!(self.0.first(), Some(Token::Char('.'))) {
            return false;
        }
        let (mut t, mut n) = (0, 0);
        // The last `*` seen, and where in the name it was tried up to.
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.0.get(t) {
                Some(Token::Any) => {
                    star = Some((t, n));
                    t += 1;
                    continue;
                }
                Some(token) if token.matches(name[n]) => {
                    t += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((at, tried)) => {
                    star = Some((at, tried + 1));
                    t = at + 1;
                    n = tried + 1;
                }
                None => return false,
            }
        }
        self.0[t..].iter().all(|token| matches!(token, Token::Any))
    }
}

impl Token {
    /// Whether this token (not `*`) matches character `c`.
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Char(want) => *want == c,
            Token::One => true,
            Token::Any => false,
            Token::Class { negated, items } => {
                items.iter().any(|item| match item {
                    ClassItem::Char(want) => *want == c,
                    ClassItem::Range(from, to) => (*from..=*to).contains(&c),
                    ClassItem::Named(test) => test(&c),
                }) != *negated
            }
        }
    }
}

fn named_class(name: &str) -> Option<fn(&char) -> bool> {
    Some(match name {
        "alnum" => char::is_ascii_alphanumeric,
        "alpha" => char::is_ascii_alphabetic,
        "digit" => char::is_ascii_digit,
        "lower" => char::is_ascii_lowercase,
        "upper" => char::is_ascii_uppercase,
        "space" => char::is_ascii_whitespace,
        "punct" => char::is_ascii_punctuation,
        "xdigit" => char::is_ascii_hexdigit,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::tests::{bounds, ws};

    fn globbed(ws: &ConfinedFolder, dir: &str, patterns: &[&str]) -> Vec<String> {
        let query = GlobQuery {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            dir: dir.into(),
            max_results: 100,
        };
        glob(ws, &query, &bounds()).unwrap().paths
    }

    #[test]
    fn names_match_as_in_bash() {
        let m = |p: &str, n: &str| NamePattern(NamePattern::tokens(p)).matches(n);
        assert!(m("*.rs", "main.rs"));
        assert!(!m("*.rs", ".hidden.rs"));
        assert!(m(".*", ".hidden"));
        assert!(m("a?c", "abc") && !m("a?c", "ac"));
        assert!(m("[ab]x", "bx") && !m("[!ab]x", "bx") && m("[^ab]x", "cx"));
        assert!(m("f[0-9][[:digit:]]", "f42") && !m("f[0-9]", "fa"));
        assert!(m("[]x]", "]") && m("[a-]", "-"));
        assert!(m("a[b", "a[b"), "an unclosed class is a plain [");
        assert!(m(r"\*", "*") && !m(r"\*", "x"));
        assert!(m("*a*b*", "xxaxxbxx") && !m("*a*b", "xxbxxa"));
        assert!(m("日*", "日本") && m("?", "é"));
    }

    #[test]
    fn globs_like_bash_with_globstar() {
        let (dir, ws) = ws();
        for path in ["a/b/c.rs", "a/x", ".top", "a/b/.h/z", "c/d.rs"] {
            ws.write(path, b"").unwrap();
        }
        std::os::unix::fs::symlink("a", dir.path().join("ws/lk")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("ws/out")).unwrap();
        assert_eq!(
            globbed(&ws, ".", &["**"]),
            ["a/", "a/b/", "a/b/c.rs", "a/x", "c/", "c/d.rs", "lk/", "out"]
        );
        assert_eq!(
            globbed(&ws, ".", &["a/**"]),
            ["a/", "a/b/", "a/b/c.rs", "a/x"]
        );
        assert_eq!(globbed(&ws, ".", &["**/"]), ["a/", "a/b/", "c/", "lk/"]);
        assert_eq!(globbed(&ws, ".", &["**/*.rs"]), ["a/b/c.rs", "c/d.rs"]);
        assert_eq!(globbed(&ws, ".", &["lk/*"]), ["lk/b/", "lk/x"]);
        assert_eq!(
            globbed(&ws, ".", &[".*", "*/"]),
            [".top", "a/", "c/", "lk/"]
        );
        assert_eq!(globbed(&ws, ".", &["a/b/.h/*"]), ["a/b/.h/z"]);
        assert_eq!(globbed(&ws, "a", &["*"]), ["a/b/", "a/x"]);
        assert_eq!(globbed(&ws, ".", &["a/x", "a/nope"]), ["a/x"]);
        // A link out is a name, never a way out.
        assert!(globbed(&ws, ".", &["out/*", "out/**"]).is_empty());
        let query = GlobQuery {
            patterns: vec!["*".into()],
            dir: "out".into(),
            max_results: 10,
        };
        assert_eq!(glob(&ws, &query, &bounds()), Err(SearchError::Outside));
    }

    #[test]
    fn a_glob_keeps_the_first_matches_and_counts_them_all() {
        let (_d, ws) = ws();
        for i in 0..30 {
            ws.write(&format!("f{i:02}"), b"").unwrap();
        }
        let query = GlobQuery {
            patterns: vec!["f*".into(), "f0*".into()],
            dir: ".".into(),
            max_results: 3,
        };
        let found = glob(&ws, &query, &bounds()).unwrap();
        assert_eq!(found.paths, ["f00", "f01", "f02"]);
        assert_eq!(found.total, 40);
    }

    #[test]
    fn globstars_in_a_row_are_one_and_a_path_counts_once() {
        let (_d, ws) = ws();
        for path in ["a/a/x.rs", "a/y.rs", "z.rs"] {
            ws.write(path, b"").unwrap();
        }
        let counted = |pattern: &str| {
            let query = GlobQuery {
                patterns: vec![pattern.into()],
                dir: ".".into(),
                max_results: 100,
            };
            glob(&ws, &query, &bounds()).unwrap()
        };
        let once = counted("**/*.rs");
        assert_eq!(once.paths, ["a/a/x.rs", "a/y.rs", "z.rs"]);
        assert_eq!(counted(&"**/".repeat(1000)).paths, ["a/", "a/a/"]);
        assert_eq!(counted("**/**/**/*.rs"), once);
        // Two ways to a/a/x.rs: one match.
        let twice = counted("**/a/**/*.rs");
        assert_eq!(twice.paths, ["a/a/x.rs", "a/y.rs"]);
        assert_eq!(twice.total, 2);
        // Patterns too long to walk are refused, not walked.
        let deep = GlobQuery {
            patterns: vec!["a/".repeat(200)],
            dir: ".".into(),
            max_results: 100,
        };
        assert!(matches!(
            glob(&ws, &deep, &bounds()),
            Err(SearchError::BadPattern(_))
        ));
        let m = |p: &str, n: &str| NamePattern(NamePattern::tokens(p)).matches(n);
        assert!(m(r"[a-\z]", "q") && !m(r"[a-\z]", "\\"));
    }
}
