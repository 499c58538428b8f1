//! People's doors into a session's workspace: browsing its folders, showing
//! a file, downloading one file or the whole workspace (a streamed
//! `.tar.gz`), and uploading files into it. Reading needs watch access to
//! the session, uploading operate access (the checks of
//! [`Paddock::session_for`]); every path goes through the session's
//! [`Workspace`](crate::sandbox::Workspace), which confines it.

use crate::paddock::Paddock;
use crate::sandbox::{relative, ByteStream, Download, FileError};
use app::accounts::{Access, Caller};
use app::domain::{AppError, SessionId};
use app::files::{join, FileContent, FileEntry, FileView};
use bytes::Bytes;
use std::path::Component;

impl From<FileError> for AppError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::NotFound(path) => AppError::NotFound(format!("{path:?}")),
            FileError::Io { path, message } => {
                tracing::error!(path, "workspace file: {message}");
                AppError::Internal
            }
            other => AppError::Invalid(other.to_string()),
        }
    }
}

/// A file of an upload: where it goes in the workspace, and its bytes.
pub struct Upload {
    pub path: String,
    pub data: Bytes,
}

/// `path` as the dashboard names it: relative to the workspace, without
/// `.` or `..` (`""` for the workspace itself); refused if it leaves.
pub fn clean(path: &str) -> Result<String, AppError> {
    let mut parts: Vec<String> = Vec::new();
    for c in relative(path)?.components() {
        match c {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    Ok(parts.join("/"))
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

fn or_root(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
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
        let entries = self.sandbox.workspace(id).list(or_root(&dir)).await?;
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

    /// A file as the dashboard shows it: highlighted text, or why not.
    pub async fn show_file(
        &self,
        caller: &Caller,
        id: SessionId,
        path: &str,
    ) -> Result<FileView, AppError> {
        self.session_for(caller, id, Access::Watch).await?;
        let path = clean(path)?;
        match self.sandbox.workspace(id).read(or_root(&path)).await {
            Ok(data) => Ok(FileView::of(path, &data)),
            Err(FileError::TooLarge { size, .. }) => Ok(FileView {
                path,
                size,
                content: FileContent::TooLarge,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// One file to download: its name and its bytes, streamed.
    pub async fn download_file(
        &self,
        caller: &Caller,
        id: SessionId,
        path: &str,
    ) -> Result<(String, Download), AppError> {
        self.session_for(caller, id, Access::Watch).await?;
        let path = clean(path)?;
        let download = self.sandbox.workspace(id).download(or_root(&path)).await?;
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        Ok((name, download))
    }

    /// The whole workspace as a gzipped tar: its file name, and its bytes
    /// as they are made.
    pub async fn archive_workspace(
        &self,
        caller: &Caller,
        id: SessionId,
    ) -> Result<(String, ByteStream), AppError> {
        let session = self.session_for(caller, id, Access::Watch).await?;
        let top = archive_name(&session.name);
        let body = self.sandbox.workspace(id).archive(&top);
        Ok((format!("{top}.tar.gz"), body))
    }

    /// Writes uploaded files into the workspace. Every path is checked
    /// before the first is written, so a refused upload writes nothing.
    pub async fn upload_files(
        &self,
        caller: &Caller,
        id: SessionId,
        files: Vec<Upload>,
    ) -> Result<Vec<FileEntry>, AppError> {
        self.session_for(caller, id, Access::Operate).await?;
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
        let workspace = self.sandbox.workspace(id);
        let mut written = Vec::with_capacity(checked.len());
        for (path, data) in checked {
            workspace.write(&path, &data).await?;
            written.push(FileEntry {
                name: path.rsplit('/').next().unwrap_or_default().to_owned(),
                path,
                is_dir: false,
                size: data.len() as u64,
            });
        }
        Ok(written)
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
