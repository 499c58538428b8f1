//! Reviewing and shipping what an agent changed in a session cloned from a
//! git repository: the files changed since the start (modified, added,
//! deleted, untracked), each one's diff (computed here with `similar`),
//! a commit of everything to the session's working branch by the person
//! who asks, and a push of that branch with the saved token. All of it runs
//! against the server's own repository ([`crate::git`]); the agent's
//! `.git` in the workspace is its own to commit in, and it cannot push.

use crate::git::{GitError, HostRepo, Status};
use crate::journal::Journal;
use crate::sandbox::{normalized, FileError, Sandbox};
use crate::sync::lock;
use crate::workspace_setup::WorkspaceSetup;
use app::accounts::Caller;
use app::changes::{
    pull_request_url, ChangeKind, ChangedFile, Changes, Committed, FileDiff,
    CHANGED_FILES_LISTED_MAX, COMMIT_MESSAGE_MAX_BYTES, DIFF_MAX_BYTES,
};
use app::domain::{AppError, EventKind, Session, SessionId};
use app::workspace_source::WorkspaceSource;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a file's diff is searched for before a larger one is taken.
const DIFF_TIME: Duration = Duration::from_secs(2);

pub struct ChangeReview {
    setup: Arc<WorkspaceSetup>,
    sandbox: Arc<dyn Sandbox>,
    journal: Journal,
    timeout: Duration,
    /// One git operation of a session at a time; each holds when the next
    /// read of the work tree may begin.
    busy: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
}

/// Lets a paused sandbox run again when dropped, whatever ended the work.
struct Paused {
    sandbox: Arc<dyn Sandbox>,
    session: SessionId,
    armed: bool,
}

impl Drop for Paused {
    fn drop(&mut self) {
        if self.armed {
            let (sandbox, session) = (self.sandbox.clone(), self.session);
            tokio::spawn(async move { sandbox.resume(session).await });
        }
    }
}

/// The caller's display name as a commit's author: without the `<` and
/// `>` git refuses in a name, and their login where git would find nothing
/// left once it trims what it trims (`.,:;"'\` and white space at the
/// ends).
fn author_name(caller: &Caller) -> String {
    let name: String = caller
        .display_name
        .chars()
        .filter(|c| !matches!(c, '<' | '>' | '\n'))
        .collect();
    let kept = name.trim_matches(|c: char| c.is_whitespace() || ".,:;\"'\\".contains(c));
    if kept.is_empty() {
        caller.login.to_string()
    } else {
        name
    }
}

/// A read of a work tree under way: when it is over (done, or its request
/// gone), the next may begin once the sandbox has run at least as long as
/// it took, and [`READ_GAP`].
struct ReadTurn {
    next_read: tokio::sync::OwnedMutexGuard<Option<Instant>>,
    began: Instant,
}

impl Drop for ReadTurn {
    fn drop(&mut self) {
        *self.next_read = Some(Instant::now() + self.began.elapsed().max(READ_GAP));
    }
}

/// A git failure as the person who asked reads it; the details are logged.
fn refused(s: &Session, journal: &Journal, e: GitError) -> AppError {
    let message = journal.mask(s.id, &e.to_string()).into_owned();
    tracing::warn!(session = %s.id, "{message}");
    match e {
        GitError::Spawn(_) => AppError::Unavailable(message),
        GitError::TimedOut { .. } => AppError::Unavailable(message),
        _ => AppError::Invalid(message),
    }
}

/// The session's repository URL, base commit and branch, or why it has no
/// changes to show.
fn git_state(s: &Session) -> Result<(&str, &str, &str), AppError> {
    let WorkspaceSource::Git { url, .. } = &s.source else {
        return Err(AppError::Invalid(
            "This session did not start from a git repository: it has no changes to review \
             (its files are under Files)."
                .into(),
        ));
    };
    match s
        .workspace
        .as_ref()
        .and_then(|w| w.base_commit.as_deref().zip(w.branch.as_deref()))
    {
        Some((base, branch)) => Ok((url, base, branch)),
        None => Err(AppError::Conflict(
            "The repository is not cloned yet: its changes show once the workspace is ready."
                .into(),
        )),
    }
}

/// The least time a session's sandbox runs between two reads of its work
/// tree, each of which pauses it (and at least as long as the last read).
const READ_GAP: Duration = Duration::from_millis(500);

/// How long a list of the changes may keep the sandbox paused: less than
/// the link to its agent waits for an answer to its keep-alive (20 s),
/// which ends the link, and with it the agent's commands and terminals.
/// (Not a commit: git killed while it writes leaves temporary objects and
/// locks behind, or a commit made and said to have failed.)
const PAUSED_LIST_MAX: Duration = Duration::from_secs(15);

fn is_binary(data: &[u8]) -> bool {
    data.iter().take(8192).any(|b| *b == 0) || std::str::from_utf8(data).is_err()
}

impl ChangeReview {
    pub fn new(
        setup: Arc<WorkspaceSetup>,
        sandbox: Arc<dyn Sandbox>,
        journal: Journal,
        timeout: Duration,
    ) -> Self {
        Self {
            setup,
            sandbox,
            journal,
            timeout,
            busy: Mutex::default(),
        }
    }

    /// Runs `work` as the session's one git operation at a time, with its
    /// sandbox paused meanwhile: host-side git reads the work tree by
    /// path, and no process of the agent's may swap a file for a link
    /// between git's look and its read.
    async fn exclusive<T>(
        &self,
        s: &Session,
        reads_work_tree: bool,
        work: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        let turn = lock(&self.busy).entry(s.id).or_default().clone();
        let next_read = turn.lock_owned().await;
        if !reads_work_tree {
            return work.await;
        }
        // The sandbox runs between two reads at least as long as the last
        // one paused it, however many come (anyone who may watch the
        // session may ask), and however the last one ended.
        if let Some(at) = *next_read {
            tokio::time::sleep_until(at.into()).await;
        }
        let _turn = ReadTurn {
            next_read,
            began: Instant::now(),
        };
        // Armed before the pause is asked for: a request dropped at any
        // point still lets the sandbox run again.
        let mut paused = Paused {
            sandbox: self.sandbox.clone(),
            session: s.id,
            armed: true,
        };
        // Resumed also when nothing ran to pause: that ends the read,
        // which kept the sandbox from starting.
        match self.sandbox.pause(s.id).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(session = %s.id, "cannot pause the sandbox for git: {e}");
                return Err(AppError::Unavailable(
                    "The sandbox could not be paused to read its files safely: try again.".into(),
                ));
            }
        }
        let done = work.await;
        if paused.armed {
            // Disarmed first: the resume goes on apart once asked for, and
            // the guard's would take the next read's pause.
            paused.armed = false;
            self.sandbox.resume(s.id).await;
        }
        done
    }

    /// Forgets a session being deleted.
    pub fn forget(&self, session: SessionId) {
        lock(&self.busy).remove(&session);
    }

    async fn repo(&self, s: &Session) -> Result<HostRepo, AppError> {
        self.setup.repo(s.id).await
    }

    pub async fn list(&self, s: &Session) -> Result<Changes, AppError> {
        let (url, base, branch) = git_state(s)?;
        let read = async {
            // The git that outlasts it is killed: a list writes no object
            // (an index lock one may leave, the next commit removes).
            tokio::time::timeout(PAUSED_LIST_MAX, self.list_now(s, url, base, branch))
                .await
                .unwrap_or_else(|_| {
                    Err(AppError::Unavailable(format!(
                        "The workspace's changes took more than {} s to read with its sandbox \
                         paused, which is as long as it may be (its agent would be cut off): \
                         the work tree is too large to show its changes here. Its files and \
                         terminal still work.",
                        PAUSED_LIST_MAX.as_secs()
                    )))
                })
        };
        self.exclusive(s, true, read).await
    }

    async fn list_now(
        &self,
        s: &Session,
        url: &str,
        base: &str,
        branch: &str,
    ) -> Result<Changes, AppError> {
        let repo = self.repo(s).await?;
        let fail = |e| refused(s, &self.journal, e);
        let head = repo.resolve("HEAD").await.map_err(fail)?;
        let untracked = repo.untracked(self.timeout).await.map_err(fail)?;
        let since_base = repo.changed_since(base, self.timeout).await.map_err(fail)?;
        let uncommitted = !untracked.is_empty()
            || if head == base {
                !since_base.is_empty()
            } else {
                !repo
                    .changed_since(&head, self.timeout)
                    .await
                    .map_err(fail)?
                    .is_empty()
            };
        let mut files: Vec<ChangedFile> = since_base
            .into_iter()
            .map(|(status, path)| ChangedFile {
                path: String::from_utf8_lossy(&path).into_owned(),
                kind: match status {
                    Status::Modified => ChangeKind::Modified,
                    Status::Deleted => ChangeKind::Deleted,
                    Status::Added => ChangeKind::Added,
                },
            })
            .chain(untracked.into_iter().map(|path| ChangedFile {
                path: String::from_utf8_lossy(&path).into_owned(),
                kind: ChangeKind::Untracked,
            }))
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let more = files.len().saturating_sub(CHANGED_FILES_LISTED_MAX);
        files.truncate(CHANGED_FILES_LISTED_MAX);
        let target = repo.target_branch().await;
        Ok(Changes {
            remote: url.to_owned(),
            base_commit: base.to_owned(),
            branch: branch.to_owned(),
            head_commit: head,
            files,
            more,
            uncommitted,
            pull_request_url: pull_request_url(url, branch, target.as_deref()),
        })
    }

    /// One changed file's diff against the start.
    pub async fn diff(&self, s: &Session, path: &str) -> Result<FileDiff, AppError> {
        let (_, base, _) = git_state(s)?;
        // As git names it (`./a`, `b/../a` and `/workspace/a` are `a`).
        let path = normalized(path).map_err(|e| AppError::Invalid(e.to_string()))?;
        let repo = self.repo(s).await?;
        let fail = |e| refused(s, &self.journal, e);
        let old = repo.blob(base, &path, DIFF_MAX_BYTES).await.map_err(fail)?;
        let folder = self.setup.host_folder(s.id).await?;
        // What git would keep there now: a link's own text, nothing read
        // through a link; off the request threads.
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || folder.read_as_git(&path, DIFF_MAX_BYTES as u64))
                .await
                .map_err(|e| AppError::Unavailable(e.to_string()))?
        };
        let new = match read {
            Ok(now) => now,
            Err(FileError::TooLarge { .. }) => Some(vec![0; DIFF_MAX_BYTES + 1]),
            Err(e) => return Err(AppError::Invalid(e.to_string())),
        };
        let kind = match (&old, &new) {
            (None, None) => return Err(AppError::NotFound(format!("Changed file {path:?}"))),
            (None, Some(_)) => ChangeKind::Added,
            (Some(_), None) => ChangeKind::Deleted,
            (Some(_), Some(_)) => ChangeKind::Modified,
        };
        let (old, new) = (old.unwrap_or_default(), new.unwrap_or_default());
        let note = if old.len() > DIFF_MAX_BYTES || new.len() > DIFF_MAX_BYTES {
            Some(format!(
                "Too large to show here (over {} KiB): download the file from Files.",
                DIFF_MAX_BYTES / 1024
            ))
        } else if is_binary(&old) || is_binary(&new) {
            Some("A binary file: download it from Files to look at it.".to_owned())
        } else {
            None
        };
        // Off the server's request threads, and at most a few seconds: two
        // large files unlike each other take the exact search long (it
        // then gives a larger diff than the least, still a true one).
        let unified = match note {
            Some(_) => None,
            None => {
                let header = (format!("a/{path}"), format!("b/{path}"));
                let diffed = tokio::task::spawn_blocking(move || {
                    let (old, new) = (String::from_utf8_lossy(&old), String::from_utf8_lossy(&new));
                    similar::TextDiff::configure()
                        .timeout(DIFF_TIME)
                        .diff_lines(&old, &new)
                        .unified_diff()
                        .context_radius(3)
                        .header(&header.0, &header.1)
                        .to_string()
                });
                Some(
                    diffed
                        .await
                        .map_err(|e| AppError::Unavailable(e.to_string()))?,
                )
            }
        };
        Ok(FileDiff {
            path,
            kind,
            unified,
            note,
        })
    }

    /// Commits every change to the working branch, by the caller.
    pub async fn commit(
        &self,
        s: &Session,
        caller: &Caller,
        message: &str,
    ) -> Result<Committed, AppError> {
        let (_, _, branch) = git_state(s)?;
        let message = message.trim();
        if message.is_empty() || message.len() > COMMIT_MESSAGE_MAX_BYTES || message.contains('\0')
        {
            return Err(AppError::Invalid(format!(
                "A commit message is 1 to {} KiB of text.",
                COMMIT_MESSAGE_MAX_BYTES / 1024
            )));
        }
        let email = format!("{}@paddock.invalid", caller.login);
        let name = author_name(caller);
        let repo = self.repo(s).await?;
        let commit = self
            .exclusive(s, true, async {
                repo.commit_all(
                    message,
                    (&name, &email),
                    self.timeout,
                    self.setup.repository_max_bytes(),
                )
                .await
                .map_err(|e| refused(s, &self.journal, e))
            })
            .await?
            .ok_or_else(|| AppError::Conflict("Nothing changed since the last commit.".into()))?;
        let subject = message.lines().next().unwrap_or_default();
        let short = &commit[..commit.len().min(12)];
        self.journal
            .record(
                s.id,
                EventKind::Workspace {
                    message: format!(
                        "{} committed {short} to {branch}: {subject}",
                        caller.label()
                    ),
                },
            )
            .await?;
        Ok(Committed {
            commit,
            branch: branch.to_owned(),
        })
    }

    /// Pushes the working branch to the repository it was cloned from.
    pub async fn push(&self, s: &Session, caller: &Caller) -> Result<Committed, AppError> {
        let (url, base, branch) = git_state(s)?;
        let repo = self.repo(s).await?;
        let fail = |e| refused(s, &self.journal, e);
        let head = self
            .exclusive(s, false, async {
                let head = repo.resolve("HEAD").await.map_err(fail)?;
                if head == base {
                    return Err(AppError::Conflict(
                        "Nothing is committed on the branch yet: commit the changes first.".into(),
                    ));
                }
                let token = self.setup.token(s).await?;
                let reach = self.setup.git_reach();
                repo.push(url, branch, token.as_ref(), self.timeout, reach)
                    .await
                    .map_err(fail)?;
                Ok(head)
            })
            .await?;
        let short = &head[..head.len().min(12)];
        self.journal
            .record(
                s.id,
                EventKind::Workspace {
                    message: format!("{} pushed {branch} ({short}) to {url}", caller.label()),
                },
            )
            .await?;
        Ok(Committed {
            commit: head,
            branch: branch.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_author_name_is_one_git_takes() {
        let named = |display_name: &str| {
            author_name(&Caller {
                display_name: display_name.into(),
                ..Caller::local_operator()
            })
        };
        assert_eq!(named("Ada <Lovelace>"), "Ada Lovelace");
        assert_eq!(named("'Ada'"), "'Ada'");
        for nothing in ["<>", "'", " .;\" ", "", "\\"] {
            assert_eq!(named(nothing), "local", "{nothing:?}");
        }
    }
}
