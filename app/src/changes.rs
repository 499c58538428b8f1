//! What the agent changed in a session's git workspace since it started,
//! as the Changes view shows it and the REST API returns it: the files,
//! one file's diff, and the commit and push that ship them.

use serde::{Deserialize, Serialize};

/// Longest commit message, in bytes.
pub const COMMIT_MESSAGE_MAX_BYTES: usize = 16 * 1024;
/// Largest file (either side) whose diff is shown.
pub const DIFF_MAX_BYTES: usize = 1024 * 1024;
/// Changed files listed at most, by path: a tree of generated files (a
/// dependency folder not ignored) is said in a count, not sent whole.
pub const CHANGED_FILES_LISTED_MAX: usize = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Changed since the start.
    Modified,
    /// New since the start, and in a commit of the working branch.
    Added,
    /// Gone since the start.
    Deleted,
    /// New since the start, not committed yet.
    Untracked,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Modified => "modified",
            ChangeKind::Added => "added",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Untracked => "untracked",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    /// From the workspace's root.
    pub path: String,
    pub kind: ChangeKind,
}

/// A session's changes and where they can go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The repository it was cloned from.
    pub remote: String,
    /// The commit it started from.
    pub base_commit: String,
    /// The session's working branch (`paddock/<session>`).
    pub branch: String,
    /// The branch's newest commit: the start, until something is committed.
    pub head_commit: String,
    /// Changed since the start, by path: the first
    /// [`CHANGED_FILES_LISTED_MAX`].
    pub files: Vec<ChangedFile>,
    /// How many more changed, past those listed.
    #[serde(default)]
    pub more: usize,
    /// Whether some change is not committed yet.
    pub uncommitted: bool,
    /// Where to open a pull (merge) request for the branch, for GitHub,
    /// GitLab and Gitea remotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request_url: Option<String>,
}

/// One file's change: a unified diff, or why none is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    pub path: String,
    pub kind: ChangeKind,
    /// Unified diff text (`---`/`+++` headers, `@@` hunks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified: Option<String>,
    /// Set when there is no text diff: a binary file, or one too large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a commit made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub commit: String,
    pub branch: String,
}

/// The Changes view's address, optionally showing one file's diff.
pub fn changes_view_url(id: crate::domain::SessionId, file: Option<&str>) -> String {
    match file {
        Some(f) => format!(
            "/sessions/{id}?view=changes&file={}",
            crate::files::percent_encode(f)
        ),
        None => format!("/sessions/{id}?view=changes"),
    }
}

/// The page where a pull request for `branch` of the repository at `url`
/// is opened, for the forges that have one at a known address: GitHub,
/// GitLab, Gitea and Codeberg (told by the host's name).
pub fn pull_request_url(url: &str, branch: &str, base: Option<&str>) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/')?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    if path.is_empty() {
        return None;
    }
    let host_lower = host.to_ascii_lowercase();
    let range = |sep: &str| match base {
        Some(base) => format!("{base}{sep}{branch}"),
        None => branch.to_owned(),
    };
    if host_lower == "github.com" || host_lower.starts_with("github.") {
        Some(format!(
            "https://{host}/{path}/compare/{}?expand=1",
            range("...")
        ))
    } else if host_lower.contains("gitlab") {
        Some(format!(
            "https://{host}/{path}/-/merge_requests/new?merge_request%5Bsource_branch%5D={branch}"
        ))
    } else if host_lower.contains("gitea") || host_lower == "codeberg.org" {
        Some(format!("https://{host}/{path}/compare/{}", range("...")))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_request_pages_of_the_known_forges() {
        assert_eq!(
            pull_request_url("https://github.com/org/repo.git", "paddock/x", Some("main"))
                .as_deref(),
            Some("https://github.com/org/repo/compare/main...paddock/x?expand=1")
        );
        assert_eq!(
            pull_request_url("https://gitlab.com/g/sub/repo", "paddock/x", None).as_deref(),
            Some("https://gitlab.com/g/sub/repo/-/merge_requests/new?merge_request%5Bsource_branch%5D=paddock/x")
        );
        assert_eq!(
            pull_request_url("https://gitea.example.org/o/r/", "b", Some("dev")).as_deref(),
            Some("https://gitea.example.org/o/r/compare/dev...b")
        );
        assert_eq!(
            pull_request_url("https://git.example.org/o/r", "b", None),
            None
        );
        assert_eq!(pull_request_url("http://github.com/o/r", "b", None), None);
        assert_eq!(pull_request_url("https://github.com/", "b", None), None);
    }
}
