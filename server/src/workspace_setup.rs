//! Preparing a session's workspace, once, before its first prompt runs (or
//! as soon as it is created, to have it ready): its source (a copy of an
//! allowed host folder, or a clone of a git repository with the working
//! branch `paddock/<session>`), then its project instructions and skills
//! written where both engines read them.
//!
//! Everything here happens on the server's side: the sandbox is not
//! started yet, its network stays closed, and a git token is used by the
//! server's git only (see [`crate::git`]). A step that fails says which and
//! why in the session's error, leaves the workspace as it found it, and is
//! tried again with the next prompt.

use crate::config::Config;
use crate::git::{self, CloneLimits, GitToken, HostRepo};
use crate::journal::Journal;
use crate::sandbox::{ConfinedFolder, Sandbox};
use crate::store::Store;
use crate::sync::lock;
use crate::vault::Vault;
use app::domain::{AppError, EventKind, PreparedWorkspace, ReadOnlyMount, Session, SessionId};
use app::skills::{Skill, SKILLS_DIR, SKILL_FILE};
use app::workspace_source::WorkspaceSource;
use chrono::Utc;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a session's project instructions are written: project memory the
/// Claude Code CLI loads, beside a repository's own `CLAUDE.md` (which it
/// loads too).
pub const INSTRUCTIONS_FILE: &str = ".claude/CLAUDE.md";
/// Where they go when the source has its own `.claude/CLAUDE.md`: the
/// project's local memory, which the CLI loads as well.
pub const LOCAL_INSTRUCTIONS_FILE: &str = "CLAUDE.local.md";

/// The working branch of a session with a git source.
pub fn work_branch(session: SessionId) -> String {
    format!("paddock/{session}")
}

pub struct WorkspaceSetup {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    sandbox: Arc<dyn Sandbox>,
    vault: Arc<Vault>,
    journal: Journal,
    /// Where git may go for a session's source.
    git_reach: git::Reach,
    /// One preparation of a session at a time.
    preparing: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Why a workspace could not be prepared, as the session's error says it,
/// and whether trying again could help.
#[derive(Debug, thiserror::Error)]
#[error("The workspace could not be prepared: {message}")]
pub struct SetupError {
    message: String,
    /// The session's source or what goes beside it is at fault (a
    /// repository gone, access refused, a name taken), not the moment (a
    /// forge that is down, a lock or a task that failed).
    lasts: bool,
}

impl SetupError {
    /// What the next try would meet again.
    fn lasting(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            lasts: true,
        }
    }

    /// What may pass.
    fn passing(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            lasts: false,
        }
    }

    /// Whether preparing again would fail the same way.
    pub fn lasts(&self) -> bool {
        self.lasts
    }
}

impl From<AppError> for SetupError {
    fn from(e: AppError) -> Self {
        let lasts = matches!(
            e,
            AppError::Invalid(_)
                | AppError::NotFound(_)
                | AppError::Forbidden(_)
                | AppError::Conflict(_)
        );
        Self {
            message: e.to_string(),
            lasts,
        }
    }
}

impl From<app::skills::SkillError> for SetupError {
    fn from(e: app::skills::SkillError) -> Self {
        SetupError::lasting(e.to_string())
    }
}

impl From<crate::store::StoreError> for SetupError {
    fn from(e: crate::store::StoreError) -> Self {
        AppError::from(e).into()
    }
}

impl WorkspaceSetup {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        sandbox: Arc<dyn Sandbox>,
        vault: Arc<Vault>,
        journal: Journal,
        sign_in: bool,
    ) -> Self {
        Self {
            git_reach: git::Reach::new(sign_in, &config.egress_networks),
            config,
            store,
            sandbox,
            vault,
            journal,
            preparing: Mutex::default(),
        }
    }

    /// Where git may go for a session's source (its clone, a push).
    pub fn git_reach(&self) -> &git::Reach {
        &self.git_reach
    }

    /// The session's workspace as a folder of this host, which is where
    /// the server prepares it and host-side git reads it; refused for a
    /// sandbox on a remote Docker host.
    pub async fn host_folder(&self, session: SessionId) -> Result<ConfinedFolder, AppError> {
        let folder = self.sandbox.host_folder(session).await.map_err(|e| {
            // Its words name this host's paths: in the log only.
            tracing::warn!(%session, "{e}");
            AppError::Unavailable(
                "The workspace cannot be mounted: the server's log says why.".into(),
            )
        })?;
        folder.ok_or_else(|| {
            AppError::Invalid(
                "This server's sandboxes are on a remote Docker host, where it cannot prepare \
                 or read a workspace: git and folder sources, Changes, instructions and skills \
                 need sandboxes on the server's own Docker host."
                    .into(),
            )
        })
    }

    /// The session's server-side repository (a session with a git source).
    pub async fn repo(&self, session: SessionId) -> Result<HostRepo, AppError> {
        Ok(HostRepo {
            git_dir: git::repo_dir(&self.config.git_root, session),
            work_tree: self.host_folder(session).await?.root().to_path_buf(),
        })
    }

    /// The most a session's server-side repository may hold with what a
    /// commit adds: twice what its clone may be
    /// (`PADDOCK_SOURCE_MAX_MB`).
    pub fn repository_max_bytes(&self) -> u64 {
        self.clone_limits().max_bytes.saturating_mul(2)
    }

    fn clone_limits(&self) -> CloneLimits {
        CloneLimits {
            max_bytes: self.config.source_max_mb.saturating_mul(1024 * 1024),
            timeout: Duration::from_secs(self.config.git_timeout_secs),
            reach: self.git_reach.clone(),
        }
    }

    /// The git token a session's source names, opened and masked in all
    /// the session records and logs.
    pub async fn token(&self, s: &Session) -> Result<Option<GitToken>, AppError> {
        let WorkspaceSource::Git {
            credential: Some(name),
            ..
        } = &s.source
        else {
            return Ok(None);
        };
        let value = self.vault.git_token(s.owner, name).await?;
        self.journal.set_secrets(s.id, &[value.as_str()]);
        Ok(Some(GitToken::new(value)))
    }

    /// Prepares the session's workspace unless it was already: one
    /// preparation at a time, here and across the replicas sharing the
    /// workspace root (one that finds the workspace half made by another
    /// would undo that one's work).
    pub async fn prepare(&self, session: SessionId) -> Result<(), SetupError> {
        let gate = lock(&self.preparing).entry(session).or_default().clone();
        let _one_at_a_time = gate.lock().await;
        let unprepared = |s: Option<Session>| s.filter(|s| s.workspace.is_none());
        if unprepared(self.store.get_session(session).await?).is_none() {
            return Ok(());
        }
        let path = self.lock_path(session);
        let _one_replica_at_a_time =
            tokio::task::spawn_blocking(move || crate::sync::lock_file(&path))
                .await
                .map_err(|e| SetupError::passing(e.to_string()))?
                .map_err(|e| {
                    SetupError::passing(format!("cannot lock the workspace's preparation: {e}"))
                })?;
        // Prepared (or deleted) by another replica meanwhile.
        let Some(s) = unprepared(self.store.get_session(session).await?) else {
            return self.left_behind(session).await;
        };
        let Some((instructions, skills)) = self.store.workspace_setup(session).await? else {
            return Ok(());
        };
        if s.source.is_empty() && instructions.trim().is_empty() && skills.is_empty() {
            // An empty folder: nothing to prepare.
            return Ok(());
        }
        let started = Instant::now();
        self.sandbox
            .create_workspace(session, self.config.limits_for(s.limits).disk_mb)
            .await
            .map_err(|e| SetupError::passing(e.to_string()))?;
        if self.store.get_session(session).await?.is_none() {
            // Deleted while this waited for its workspace, which is made
            // again: nobody's.
            self.sandbox
                .destroy(session)
                .await
                .map_err(|e| SetupError::passing(e.to_string()))?;
            return self.left_behind(session).await;
        }
        let folder = self.host_folder(session).await?;
        let (mut said, cloned) = match self.source(&s, &folder).await {
            Ok(done) => done,
            Err(e) => {
                self.undo(&s, &folder).await;
                return Err(e);
            }
        };
        let finished = self
            .finish(
                &s,
                &folder,
                &instructions,
                &skills,
                cloned.is_some(),
                &mut said,
            )
            .await;
        if let Err(e) = finished {
            self.undo(&s, &folder).await;
            return Err(e);
        }
        let prepared = PreparedWorkspace {
            at: Utc::now(),
            base_commit: cloned.as_ref().map(|c| c.base_commit.clone()),
            branch: cloned.map(|c| c.branch),
        };
        // Not noted (the database busy): undone, so that the next try
        // finds the workspace as this one did, not full of files it
        // refuses to clone over; not when the note was kept after all (an
        // answer lost on its way back).
        if let Err(e) = self.store.set_workspace_prepared(session, &prepared).await {
            // (Left when that cannot be told either: the next try says
            // what is in the way.)
            let unnoted = match self.store.get_session(session).await {
                Ok(Some(now)) => now.workspace.is_none(),
                Ok(None) => true,
                Err(_) => false,
            };
            if unnoted {
                self.undo(&s, &folder).await;
            }
            return Err(e.into());
        }
        if !said.is_empty() {
            let message = format!(
                "Workspace ready in {:.1} s: {}.",
                started.elapsed().as_secs_f64(),
                said.join("; ")
            );
            self.journal
                .record(session, EventKind::Workspace { message })
                .await?;
        }
        tracing::info!(%session, elapsed_ms = started.elapsed().as_millis() as u64, "workspace prepared");
        Ok(())
    }

    /// Writes the instructions and the skills beside what the source
    /// brought, never over it (nor through a link it holds), leaves them
    /// out of git's view, and gives everything to the sandbox user.
    async fn finish(
        &self,
        s: &Session,
        folder: &ConfinedFolder,
        instructions: &str,
        skills: &[Skill],
        cloned: bool,
        said: &mut Vec<String>,
    ) -> Result<(), SetupError> {
        let mut written = Vec::new();
        if !instructions.trim().is_empty() {
            // Beside a repository's own project memory, which the CLI
            // loads too.
            let path = [INSTRUCTIONS_FILE, LOCAL_INSTRUCTIONS_FILE]
                .into_iter()
                .find(|p| !taken(folder, p))
                .ok_or_else(|| {
                    SetupError::lasting(format!(
                        "the source has both {INSTRUCTIONS_FILE} and {LOCAL_INSTRUCTIONS_FILE}: \
                         there is no place left for the session's instructions"
                    ))
                })?;
            write(folder, path, instructions.as_bytes(), false)?;
            written.push(format!("/{path}"));
            said.push(format!("instructions in {path}"));
        }
        let mut names = Vec::new();
        if !skills.is_empty() {
            clear_way(folder, SKILLS_DIR)?;
        }
        for skill in skills {
            let name = skill.header()?.name;
            if taken(folder, &format!("{SKILLS_DIR}/{name}")) {
                return Err(SetupError::lasting(format!(
                    "the source has a skill named {name} already: give the session's another name"
                )));
            }
            // A delivery's session asks before every tool its mode does
            // not allow: a skill grants itself none there.
            let markdown = match s.trigger {
                Some(_) => skill.markdown_without_grants(),
                None => skill.markdown.clone(),
            };
            write_skill(folder, &name, &markdown, skill)?;
            written.push(format!("/{SKILLS_DIR}/{name}/"));
            names.push(name);
        }
        if !names.is_empty() {
            said.push(format!("skills {}", names.join(", ")));
        }
        if cloned {
            // What Paddock wrote is not the agent's change.
            self.repo(s.id).await?.exclude(&written).map_err(|e| {
                SetupError::passing(format!("cannot write git's exclude file: {e}"))
            })?;
        }
        let give = folder.clone();
        tokio::task::spawn_blocking(move || give.give_all())
            .await
            .map_err(|e| SetupError::passing(e.to_string()))?
            .map_err(|e| {
                SetupError::passing(format!("cannot give the workspace to the sandbox: {e}"))
            })
    }

    /// Fills the workspace from the session's source; what to say of it,
    /// and the clone.
    async fn source(
        &self,
        s: &Session,
        folder: &ConfinedFolder,
    ) -> Result<(Vec<String>, Option<git::Cloned>), SetupError> {
        match &s.source {
            WorkspaceSource::Empty => Ok((Vec::new(), None)),
            WorkspaceSource::Folder { path } => {
                let checked = self.config.mount_policy().check(&ReadOnlyMount {
                    host: path.clone(),
                    name: String::new(),
                })?;
                let (from, to) = (
                    std::path::PathBuf::from(&checked.host),
                    folder.root().to_path_buf(),
                );
                let limits = self.clone_limits();
                let (max, limit, reader) = (limits.max_bytes, limits.timeout, folder.owner());
                let copying = tokio::task::spawn_blocking(move || {
                    copy_tree(&from, &to, (max, limit), reader)
                });
                // Not waited for past its time (a folder on a network
                // filesystem that hangs): what it copied is undone.
                let copied = tokio::time::timeout(limits.timeout + Duration::from_secs(1), copying)
                    .await
                    .map_err(|_| copy_too_long(limits.timeout))?
                    .map_err(|e| SetupError::passing(e.to_string()))??;
                Ok((vec![format!("copied {copied} files from {path}")], None))
            }
            WorkspaceSource::Git { url, rev, .. } => {
                if std::fs::read_dir(folder.root()).is_ok_and(|mut d| d.next().is_some()) {
                    return Err(SetupError::lasting(
                        "the workspace already holds files, and a repository is cloned only \
                         into an empty folder: delete them, or start a new session",
                    ));
                }
                let token = self.token(s).await?;
                let cloned = self
                    .repo(s.id)
                    .await?
                    .clone(
                        url,
                        rev.as_deref(),
                        &work_branch(s.id),
                        token.as_ref(),
                        self.clone_limits(),
                    )
                    .await
                    .map_err(|e| SetupError {
                        message: self.journal.mask(s.id, &e.to_string()).into_owned(),
                        lasts: e.lasts(),
                    })?;
                let short = &cloned.base_commit[..cloned.base_commit.len().min(12)];
                Ok((
                    vec![format!(
                        "cloned {url} at {short} onto the branch {}",
                        cloned.branch
                    )],
                    Some(cloned),
                ))
            }
        }
    }

    /// Removes what a failed preparation left, so the next try starts
    /// clean.
    async fn undo(&self, s: &Session, folder: &ConfinedFolder) {
        let git_dir = git::repo_dir(&self.config.git_root, s.id);
        let root = folder.root().to_path_buf();
        let cleaned = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&git_dir);
            for entry in std::fs::read_dir(&root)?.flatten() {
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    std::fs::remove_dir_all(path)?;
                } else {
                    std::fs::remove_file(path)?;
                }
            }
            std::io::Result::Ok(())
        })
        .await;
        if !matches!(cleaned, Ok(Ok(()))) {
            tracing::warn!(session = %s.id, "a failed workspace preparation left files: {cleaned:?}");
        }
    }

    /// [`WorkspaceSetup::prepare`] on a task of its own: what waits for it
    /// may stop waiting (Stop, a client gone) without cutting a clone off
    /// halfway, which the next preparation would find in its way.
    pub fn prepare_apart(
        self: &Arc<Self>,
        session: SessionId,
    ) -> tokio::task::JoinHandle<Result<(), SetupError>> {
        let setup = self.clone();
        tokio::spawn(async move { setup.prepare(session).await })
    }

    /// For a session found deleted once its lock was taken: the lock file
    /// made again goes (its deletion removed it before).
    async fn left_behind(&self, session: SessionId) -> Result<(), SetupError> {
        if self.store.get_session(session).await?.is_none() {
            let _ = tokio::fs::remove_file(self.lock_path(session)).await;
        }
        Ok(())
    }

    /// The file replicas lock to prepare the session's workspace one at a
    /// time.
    fn lock_path(&self, session: SessionId) -> std::path::PathBuf {
        self.config
            .workspace_root
            .join(format!("{session}.prepare.lock"))
    }

    /// Removes what the server keeps for a session being deleted.
    pub async fn forget(&self, session: SessionId) -> Result<(), AppError> {
        lock(&self.preparing).remove(&session);
        match tokio::fs::remove_file(self.lock_path(session)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(%session, "cannot remove the preparation's lock file: {e}");
            }
            _ => {}
        }
        let git_dir = git::repo_dir(&self.config.git_root, session);
        match tokio::fs::remove_dir_all(&git_dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                tracing::error!(%session, "cannot remove {}: {e}", git_dir.display());
                Err(AppError::Internal)
            }
        }
    }
}

/// Whether `path` cannot take a file or folder of Paddock's: something is
/// there, or a link or a file of the source's stands where one of its
/// folders would be (a file named `.claude`). Looked at a part at a time,
/// following no link: a link to a folder of the server's host would tell
/// whether a path exists there.
fn taken(folder: &ConfinedFolder, path: &str) -> bool {
    let mut at = folder.root().to_path_buf();
    for part in path.split('/') {
        at.push(part);
        match at.symlink_metadata() {
            Err(_) => return false,
            Ok(m) if !m.is_dir() => return true,
            Ok(_) => {}
        }
    }
    true
}

/// Writes a file of Paddock's: refused where the source put a link on the
/// way (a write would go where the link points, inside the workspace).
fn write(
    folder: &ConfinedFolder,
    path: &str,
    data: &[u8],
    executable: bool,
) -> Result<(), SetupError> {
    clear_way(folder, path)?;
    folder
        .write(path, data)
        .and_then(|()| {
            if executable {
                folder.set_executable(path)
            } else {
                Ok(())
            }
        })
        .map_err(|e| SetupError::passing(format!("cannot write {path}: {e}")))
}

/// Refuses a path of Paddock's where the source put a link on the way, or a
/// file where a folder must be.
fn clear_way(folder: &ConfinedFolder, path: &str) -> Result<(), SetupError> {
    let mut at = folder.root().to_path_buf();
    let mut parts = path.split('/').peekable();
    while let Some(part) = parts.next() {
        at.push(part);
        let what = match at.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => "a link",
            // (Where a folder of the path must be: a write would fail
            // every time.)
            Ok(m) if !m.is_dir() && parts.peek().is_some() => "a file",
            _ => continue,
        };
        return Err(SetupError::lasting(format!(
            "the source has {what} at {}, where Paddock writes {path}",
            at.strip_prefix(folder.root()).unwrap_or(&at).display()
        )));
    }
    Ok(())
}

/// Writes a skill's folder, its `SKILL.md` as `markdown`.
fn write_skill(
    folder: &ConfinedFolder,
    name: &str,
    markdown: &str,
    skill: &Skill,
) -> Result<(), SetupError> {
    let dir = format!("{SKILLS_DIR}/{name}");
    write(
        folder,
        &format!("{dir}/{SKILL_FILE}"),
        markdown.as_bytes(),
        false,
    )?;
    for file in &skill.files {
        let bytes = file.bytes()?;
        write(
            folder,
            &format!("{dir}/{}", file.path),
            &bytes,
            file.executable,
        )?;
    }
    Ok(())
}

/// Copies a host folder's folders and regular files (links and special
/// files are left out) into the workspace folder `to`, which must be
/// there (a workspace deleted meanwhile is not made again); how many
/// files. Refuses more than `max` bytes, or to go on past `limit`. With a
/// `reader` (the sandbox user), only what it may read is copied: what it
/// would find in the same folder mounted, not what the server's own user
/// may read.
fn copy_tree(
    from: &Path,
    to: &Path,
    (max, limit): (u64, Duration),
    reader: Option<u32>,
) -> Result<usize, SetupError> {
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let until = Instant::now() + limit;
    let late = || Instant::now() > until;
    let fail = |e: std::io::Error| SetupError::passing(format!("cannot copy the folder: {e}"));
    let readable = |meta: &std::fs::Metadata| reader.is_none_or(|uid| may_read(meta, uid));
    if !readable(&std::fs::metadata(from).map_err(fail)?) {
        return Err(SetupError::lasting(
            "the sandbox user may not read the folder, so it is not copied",
        ));
    }
    let mut stack = vec![std::path::PathBuf::new()];
    let (mut bytes, mut files) = (0u64, 0usize);
    let mut part = vec![0; 1 << 20];
    while let Some(rel) = stack.pop() {
        if !rel.as_os_str().is_empty() {
            std::fs::create_dir(to.join(&rel)).map_err(fail)?;
        }
        for entry in std::fs::read_dir(from.join(&rel)).map_err(fail)? {
            if late() {
                return Err(copy_too_long(limit));
            }
            let entry = entry.map_err(fail)?;
            // As the entry is, a link not followed.
            let meta = entry.metadata().map_err(fail)?;
            let rel = rel.join(entry.file_name());
            if !readable(&meta) {
                continue;
            }
            if meta.is_dir() {
                stack.push(rel);
            } else if meta.is_file() {
                bytes += meta.len();
                if bytes > max {
                    return Err(SetupError::lasting(format!(
                        "the folder is larger than the limit of {} MiB",
                        max / (1024 * 1024)
                    )));
                }
                // Not through a link, nor a pipe, that took the file's place
                // since (opening a pipe would wait for a writer).
                let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
                let source = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(flags.bits() as i32)
                    .open(entry.path())
                    .map_err(fail)?;
                if !source.metadata().map_err(fail)?.is_file() {
                    continue;
                }
                let mut copy = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(to.join(&rel))
                    .map_err(fail)?;
                // Its mode as it is (not as the umask would leave it).
                copy.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o777))
                    .map_err(fail)?;
                // A part at a time, within the time it has.
                let mut source = source.take(meta.len());
                loop {
                    let read = source.read(&mut part).map_err(fail)?;
                    if read == 0 {
                        break;
                    }
                    copy.write_all(&part[..read]).map_err(fail)?;
                    if late() {
                        return Err(copy_too_long(limit));
                    }
                }
                files += 1;
            }
        }
    }
    Ok(files)
}

/// Why a copy that outlasted `limit` was given up.
fn copy_too_long(limit: Duration) -> SetupError {
    SetupError::lasting(format!(
        "the folder took longer than {} s to copy, as long as a source may take \
         (PADDOCK_GIT_TIMEOUT_SECS)",
        limit.as_secs()
    ))
}

/// Whether user `uid`, whose group has the same number and who has no
/// other, may read a file, or list and enter a folder, of `meta` (its
/// owner's, group's or others' mode bits, as the kernel chooses them).
fn may_read(meta: &std::fs::Metadata, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    let bits = if meta.uid() == uid {
        mode >> 6
    } else if meta.gid() == uid {
        mode >> 3
    } else {
        mode
    } & 0o7;
    let needed = if meta.is_dir() { 0o5 } else { 0o4 };
    bits & needed == needed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{chown, symlink, PermissionsExt};

    fn mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A folder source gives the sandbox what it could read of the same
    /// folder mounted, and no more: the server reads it as root.
    #[test]
    fn a_folder_is_copied_as_the_sandbox_user_would_read_it() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: files are given to another user only as root");
            return;
        }
        const READER: u32 = 10001;
        const MINUTE: Duration = Duration::from_secs(60);
        let from = tempfile::tempdir().unwrap();
        let f = |p: &str| from.path().join(p);
        mode(from.path(), 0o755);
        std::fs::create_dir_all(f("src/deep")).unwrap();
        std::fs::write(f("src/deep/main.rs"), "fn main() {}").unwrap();
        std::fs::write(f("run.sh"), "#!/bin/sh").unwrap();
        mode(&f("run.sh"), 0o755);
        std::fs::write(f("shared"), "s").unwrap();
        mode(&f("shared"), 0o666);
        // Root's own, and closed to others: a file, and a folder.
        std::fs::write(f(".env"), "KEY=secret").unwrap();
        mode(&f(".env"), 0o600);
        std::fs::create_dir(f("private")).unwrap();
        std::fs::write(f("private/notes"), "n").unwrap();
        mode(&f("private"), 0o700);
        // The reader's own, and its group's.
        std::fs::write(f("mine"), "m").unwrap();
        mode(&f("mine"), 0o600);
        chown(f("mine"), Some(READER), None).unwrap();
        std::fs::write(f("ours"), "o").unwrap();
        mode(&f("ours"), 0o640);
        chown(f("ours"), Some(0), Some(READER)).unwrap();
        // Closed to its owner, the reader, though others may read it.
        std::fs::write(f("not-mine"), "x").unwrap();
        mode(&f("not-mine"), 0o044);
        chown(f("not-mine"), Some(READER), None).unwrap();
        symlink("/etc/shadow", f("shadow")).unwrap();

        let to = tempfile::tempdir().unwrap();
        let copied = copy_tree(from.path(), to.path(), (1 << 20, MINUTE), Some(READER)).unwrap();
        assert_eq!(copied, 5);
        let t = |p: &str| to.path().join(p);
        assert_eq!(
            std::fs::read_to_string(t("src/deep/main.rs")).unwrap(),
            "fn main() {}"
        );
        assert_eq!(std::fs::read_to_string(t("mine")).unwrap(), "m");
        assert_eq!(std::fs::read_to_string(t("ours")).unwrap(), "o");
        // Modes as they are, not as the umask leaves them.
        for (copy, kept) in [("run.sh", 0o755), ("shared", 0o666)] {
            let mode = std::fs::metadata(t(copy)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, kept, "{copy}");
        }
        for left in [".env", "private", "not-mine", "shadow"] {
            assert!(std::fs::symlink_metadata(t(left)).is_err(), "{left}");
        }
        // Without a reader (a local sandbox: the server's own user), what
        // the server may read.
        let all = tempfile::tempdir().unwrap();
        assert_eq!(
            copy_tree(from.path(), all.path(), (1 << 20, MINUTE), None).unwrap(),
            8
        );

        // A folder the reader may not list is not copied at all.
        mode(from.path(), 0o700);
        let closed = tempfile::tempdir().unwrap();
        assert!(copy_tree(from.path(), closed.path(), (1 << 20, MINUTE), Some(READER)).is_err());
        mode(from.path(), 0o755);
        // More than the limit is refused.
        let small = tempfile::tempdir().unwrap();
        assert!(copy_tree(from.path(), small.path(), (8, MINUTE), Some(READER)).is_err());
        // Past its time, it stops.
        let late = tempfile::tempdir().unwrap();
        let stopped = copy_tree(from.path(), late.path(), (1 << 20, Duration::ZERO), None);
        assert!(matches!(stopped, Err(e) if e.to_string().contains("longer than")));
        // A workspace deleted meanwhile is not made again.
        let gone = to.path().join("gone");
        assert!(copy_tree(from.path(), &gone, (1 << 20, MINUTE), Some(READER)).is_err());
        assert!(!gone.exists());
    }
}
