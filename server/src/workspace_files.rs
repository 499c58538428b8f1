//! People's doors into a session's workspace: browsing its folders, showing
//! a file, downloading one file or the whole workspace (a streamed
//! `.tar.gz`), and uploading files into it. Reading needs watch access to
//! the session, uploading operate access (the checks of
//! [`Paddock::session_for`]); every path goes through the session's
//! [`Workspace`](crate::sandbox::Workspace), which confines it. Archives and
//! uploads hold a thread or up to an upload's bytes while they run, and a
//! listing or a file's view the whole of it, so only a few run at once
//! ([`Transfers`](crate::transfers::Transfers)); more are told to try
//! again (503).

use crate::paddock::Paddock;
use crate::sandbox::{
    held_while_read, normalized, ByteStream, Download, FileError, FileKind, Stat, LISTING_MAX_BYTES,
};
use crate::transfers::TransferSlot;
use app::accounts::{Access, Caller};
use app::domain::{AppError, SessionId};
use app::files::{join, name_of, DiskUse, FileContent, FileEntry, FileView, VIEW_MAX_BYTES};
use bytes::Bytes;
use futures_util::StreamExt;

/// What the dashboard hears of a refused file operation.
fn refused(e: FileError) -> AppError {
    match e {
        FileError::NotFound(path) => AppError::NotFound(format!("{path:?}")),
        FileError::Denied(_) => AppError::Forbidden(e.to_string()),
        FileError::Full(_) => AppError::WorkspaceFull(e.to_string()),
        FileError::Unreachable(why) => AppError::Unavailable(why),
        FileError::Io { path, message } => {
            tracing::error!(path, "workspace file: {message}");
            AppError::Internal
        }
        other => AppError::Invalid(other.to_string()),
    }
}

/// How long `text` is as a JSON string's content.
fn json_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            '\0'..='\u{1f}' => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// A file of an upload: where it goes in the workspace, and its bytes.
pub struct Upload {
    pub path: String,
    pub data: Bytes,
}

/// `path` as the dashboard names it ([`normalized`]), or why not.
pub fn clean(path: &str) -> Result<String, AppError> {
    normalized(path).map_err(refused)
}

/// The archive's name and its top folder: the session's name, as a file
/// name every system accepts.
fn archive_name(session_name: &str) -> String {
    let slug: String = session_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let slug = slug.trim_matches('-');
    let slug: String = slug.chars().take(60).collect();
    if slug.is_empty() {
        "workspace".into()
    } else {
        slug
    }
}

impl Paddock {
    /// A folder's entries, sorted by name.
    pub async fn browse_folder(
        &self,
        caller: &Caller,
        id: SessionId,
        path: &str,
    ) -> Result<Vec<FileEntry>, AppError> {
        self.session_for(caller, id, Access::Watch).await?;
        let dir = clean(path)?;
        let _slot = self.transfers.view(caller.user)?;
        let entries = self
            .sandbox
            .workspace(id)
            .list(&dir)
            .await
            .map_err(refused)?;
        // As the answer writes them: a control character is six bytes.
        let dir_len = json_len(&dir);
        let listed: usize = entries
            .iter()
            .map(|e| dir_len + 1 + 2 * json_len(&e.name))
            .sum();
        if listed > LISTING_MAX_BYTES {
            return Err(refused(FileError::Crowded(dir)));
        }
        Ok(entries
            .into_iter()
            .map(|e| FileEntry {
                path: join(&dir, &e.name),
                name: e.name,
                is_dir: e.is_dir,
                size: e.size,
            })
            .collect())
    }

    /// How much of its disk the session's workspace uses.
    pub async fn workspace_disk_use(
        &self,
        caller: &Caller,
        id: SessionId,
    ) -> Result<DiskUse, AppError> {
        self.session_for(caller, id, Access::Watch).await?;
        self.sandbox.disk_use(id).await.map_err(|e| {
            tracing::warn!(session = %id, "{e}");
            AppError::Unavailable("The workspace cannot be measured now.".into())
        })
    }

    /// A file as the dashboard shows it: highlighted text, or why not (a
    /// file too large to show is not read).
    pub async fn show_file(
        &self,
        caller: &Caller,
        id: SessionId,
        path: &str,
    ) -> Result<FileView, AppError> {
        let (path, stat) = self.file_stat(caller, id, path).await?;
        if stat.size > VIEW_MAX_BYTES as u64 {
            return Ok(FileView {
                path,
                size: stat.size,
                content: FileContent::TooLarge,
            });
        }
        let _slot = self.transfers.view(caller.user)?;
        let download = self
            .sandbox
            .workspace(id)
            .download(&path)
            .await
            .map_err(refused)?;
        // Up to one byte past what is shown: a file that grew meanwhile is
        // then too large, as it is.
        let mut data = Vec::with_capacity(download.size.min(VIEW_MAX_BYTES as u64 + 1) as usize);
        let mut body = download.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| match e.kind() {
                // Shorter or longer than it was when the read began.
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData => {
                    AppError::Conflict(format!(
                        "{path:?} changed while it was read: open it again."
                    ))
                }
                _ => {
                    tracing::warn!(path, "reading a workspace file: {e}");
                    AppError::Unavailable(format!("{path:?} could not be read whole: {e}"))
                }
            })?;
            data.extend_from_slice(&chunk);
            if data.len() > VIEW_MAX_BYTES {
                break;
            }
        }
        Ok(FileView::of(path, &data))
    }

    /// One file's path, cleaned, and what it is (a folder is refused, as
    /// downloading it would be): a download's `HEAD`.
    pub async fn file_stat(
        &self,
        caller: &Caller,
        id: SessionId,
        path: &str,
    ) -> Result<(String, Stat), AppError> {
        self.session_for(caller, id, Access::Watch).await?;
        let path = clean(path)?;
        let stat = self
            .sandbox
            .workspace(id)
            .stat(&path)
            .await
            .map_err(refused)?;
        match stat.kind {
            FileKind::File => Ok((path, stat)),
            FileKind::Folder => Err(refused(FileError::IsDirectory(path))),
            _ => Err(refused(FileError::NotRegular(path))),
        }
    }

    /// One file to download: its name and its bytes, streamed while a
    /// slot is held, which a reader that takes nothing for the stall time
    /// gives up (with the file it held open).
    pub async fn download_file(
        &self,
        caller: &Caller,
        id: SessionId,
        path: &str,
    ) -> Result<(String, Download), AppError> {
        self.session_for(caller, id, Access::Watch).await?;
        let path = clean(path)?;
        let slot = self.transfers.file(caller.user)?;
        let mut download = self
            .sandbox
            .workspace(id)
            .download(&path)
            .await
            .map_err(refused)?;
        download.body = held_while_read(download.body, slot, self.config.client_stall());
        Ok((name_of(&path).to_owned(), download))
    }

    /// The whole workspace as a gzipped tar: its file name, and its bytes
    /// as they are made.
    pub async fn archive_workspace(
        &self,
        caller: &Caller,
        id: SessionId,
    ) -> Result<(String, ByteStream), AppError> {
        let session = self.session_for(caller, id, Access::Watch).await?;
        let permit = self.transfers.archive(caller.user)?;
        let top = archive_name(&session.name);
        let body = self
            .sandbox
            .workspace(id)
            .archive(&top)
            .await
            .map_err(refused)?;
        let body = held_while_read(body, permit, self.config.client_stall());
        Ok((format!("{top}.tar.gz"), body))
    }

    /// Whether the caller may upload into the session's workspace now: the
    /// access check, before anything of the upload is read, and a slot
    /// held while it is received and written.
    pub async fn may_upload(
        &self,
        caller: &Caller,
        id: SessionId,
    ) -> Result<TransferSlot, AppError> {
        let s = self.session_for(caller, id, Access::Operate).await?;
        self.auth.owner_may_run(&s).await?;
        self.transfers.upload(caller.user)
    }

    /// Writes uploaded files into the workspace, once it is prepared
    /// ([`crate::workspace_setup`]). Every path is checked
    /// before the first is written, so an upload with a name that leaves
    /// the workspace writes nothing; one stopped while writing (a link or a
    /// folder in a file's way) keeps the files written before it.
    pub async fn upload_files(
        &self,
        caller: &Caller,
        id: SessionId,
        files: Vec<Upload>,
    ) -> Result<Vec<FileEntry>, AppError> {
        let s = self.session_for(caller, id, Access::Operate).await?;
        // What a workspace not prepared yet is cloned with is the owner's.
        self.auth.owner_may_run(&s).await?;
        if files.is_empty() {
            return Err(AppError::Invalid(
                "Choose at least one file to upload.".into(),
            ));
        }
        let mut checked = Vec::with_capacity(files.len());
        for file in files {
            let path = clean(&file.path)?;
            if path.is_empty() {
                return Err(AppError::Invalid(format!(
                    "{:?} is not a file name.",
                    file.path
                )));
            }
            checked.push((path, file.data));
        }
        // Into the workspace as its source makes it (a repository is
        // cloned only into an empty folder), prepared first if it was not
        // yet, on a task of its own (a client that goes away does not cut
        // a clone off); an empty one is made here before its sandbox first
        // started.
        self.setup
            .prepare_apart(id)
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?
            .map_err(|e| match e.lasts() {
                // Sent again, the files would meet the same: they are
                // refused, not put off.
                true => AppError::Conflict(e.to_string()),
                false => AppError::Unavailable(e.to_string()),
            })?;
        // A deletion holds off the session's starts while it removes what
        // the session has: held here, the workspace is not made again
        // after it (nobody's, and never removed), nor for a session
        // deleted before.
        let _no_deletion = self.runner.hold_starts(id).await;
        if self.store.get_session(id).await?.is_none() {
            return Err(AppError::NotFound(format!("Session {id}")));
        }
        self.sandbox
            .create_workspace(id, self.config.limits_for(s.limits).disk_mb)
            .await
            .map_err(|e| {
                tracing::error!(session = %id, "cannot create the workspace for an upload: {e}");
                AppError::Unavailable("The session's workspace cannot be made now.".into())
            })?;
        let workspace = self.sandbox.workspace(id);
        let mut written = Vec::with_capacity(checked.len());
        for (path, data) in checked {
            workspace.write(&path, &data).await.map_err(refused)?;
            written.push(FileEntry {
                name: name_of(&path).to_owned(),
                path,
                is_dir: false,
                size: data.len() as u64,
            });
        }
        Ok(written)
    }

    /// Deletes a file or a folder with all it holds (a link, never what it
    /// names), for those who may operate the session.
    pub async fn delete_workspace_file(
        &self,
        caller: &Caller,
        id: SessionId,
        path: &str,
    ) -> Result<(), AppError> {
        self.session_for(caller, id, Access::Operate).await?;
        let path = clean(path)?;
        if path.is_empty() {
            return Err(AppError::Invalid(
                "Name a file or a folder: the workspace itself is not deleted.".into(),
            ));
        }
        self.sandbox
            .workspace(id)
            .delete(&path)
            .await
            .map_err(refused)?;
        tracing::info!(session = %id, who = %caller.label(), path, "a workspace file deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_and_confined() {
        assert_eq!(clean("").unwrap(), "");
        assert_eq!(clean("/workspace").unwrap(), "");
        assert_eq!(clean("./src/../src/a.rs").unwrap(), "src/a.rs");
        assert_eq!(clean("/workspace/src/").unwrap(), "src");
        for bad in ["../x", "/etc/passwd", "a/../../x"] {
            assert!(matches!(clean(bad), Err(AppError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn archive_names_are_plain() {
        assert_eq!(archive_name("Fix the build!"), "Fix-the-build");
        assert_eq!(archive_name("../../etc"), "etc");
        assert_eq!(archive_name("日本"), "workspace");
    }
}
