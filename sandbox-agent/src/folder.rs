//! A workspace folder whose every path the kernel confines: the server's
//! host folder of a session (bind-mounted at `/workspace` in its sandbox,
//! for the Docker and local backends), and the agent's `/workspace` inside
//! a sandbox whose files are not on the server's host (a remote Docker
//! host). Every path is resolved with `openat2(RESOLVE_BENEATH)`: `..`,
//! absolute paths and symlinks (even ones the agent plants mid-operation)
//! cannot leave the workspace.

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Where the workspace appears inside a sandbox.
pub const MOUNT_POINT: &str = "/workspace";
/// Largest file `read` returns.
pub const READ_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Entries of one folder listed at most.
pub const FOLDER_ENTRIES_MAX: usize = 100_000;
/// Bytes of a folder's listing at most, its entries' names and paths
/// counted: long names in a deep folder make a listing large long before
/// its entries are many.
pub const LISTING_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Why a file operation was refused; the agent sends it as JSON.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileError {
    #[error("{0:?} is outside the workspace: paths must stay under /workspace")]
    Outside(String),
    #[error("{0:?} does not exist")]
    NotFound(String),
    #[error("{0:?} is a directory")]
    IsDirectory(String),
    #[error("{0:?} is not a directory")]
    NotDirectory(String),
    #[error("{0:?} is not a regular file (a pipe, a socket or a device)")]
    NotRegular(String),
    #[error("{0:?} is not a usable path: {1}")]
    BadPath(String, Cow<'static, str>),
    #[error("{0:?} cannot be opened: its permissions refuse it")]
    Denied(String),
    #[error("{path:?} is too large to read ({size} bytes; the limit is {READ_MAX_BYTES})")]
    TooLarge { path: String, size: u64 },
    #[error("{0:?} cannot be written: the workspace is full (its disk limit is reached)")]
    Full(String),
    #[error(
        "{0:?} holds too many entries to list (over {FOLDER_ENTRIES_MAX}, or over \
         {LISTING_MAX_BYTES} bytes of names and paths): list a folder inside it, or use the shell"
    )]
    Crowded(String),
    #[error("{path:?}: {message}")]
    Io { path: String, message: String },
    /// The workspace cannot be reached now (its sandbox, on another host,
    /// is not running or its agent does not answer), and why.
    #[error("{0}")]
    Unreachable(String),
}

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Folder,
    File,
    /// A symbolic link, where links are not followed.
    Link,
    /// A pipe, a socket or a device.
    Other,
}

impl FileKind {
    fn of(mode: u32) -> Self {
        match rfs::FileType::from_raw_mode(mode) {
            rfs::FileType::Directory => Self::Folder,
            rfs::FileType::RegularFile => Self::File,
            rfs::FileType::Symlink => Self::Link,
            _ => Self::Other,
        }
    }
}

/// What `stat` says about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub kind: FileKind,
    /// Bytes (0 for a folder).
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: u64,
    /// Permission bits.
    pub mode: u32,
}

/// The longest path the kernel takes (`PATH_MAX`).
pub const PATH_MAX_BYTES: usize = 4096;
/// The longest name of one file or folder (`NAME_MAX`).
pub const NAME_MAX_BYTES: usize = 255;

/// One entry of a folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
}

/// The path relative to the workspace root, as the agent means it:
/// `src/a.rs`, `./src/a.rs` and `/workspace/src/a.rs` are the same file.
/// Refuses lexically what can never be inside; the kernel refuses the rest
/// (symlinks, for one).
pub fn relative(path: &str) -> Result<PathBuf, FileError> {
    if path.contains('\0') {
        return Err(FileError::BadPath(
            path.to_owned(),
            "it holds a NUL byte".into(),
        ));
    }
    // Longer than the kernel takes: refused before any work on its parts
    // (and not quoted whole in the error).
    if path.len() > PATH_MAX_BYTES {
        let start: String = path.chars().take(64).collect();
        return Err(FileError::BadPath(
            format!("{start}…"),
            format!("it is longer than {PATH_MAX_BYTES} bytes").into(),
        ));
    }
    let p = Path::new(path);
    let rel = if p.is_absolute() {
        p.strip_prefix(MOUNT_POINT)
            .map_err(|_| FileError::Outside(path.to_owned()))?
    } else {
        p
    };
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::Normal(name) if name.len() > NAME_MAX_BYTES => {
                return Err(FileError::BadPath(
                    path.to_owned(),
                    format!("a name in it is longer than {NAME_MAX_BYTES} bytes").into(),
                ))
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            _ => return Err(FileError::Outside(path.to_owned())),
        }
    }
    if rel.as_os_str().is_empty() {
        Ok(PathBuf::from("."))
    } else {
        Ok(rel.to_path_buf())
    }
}

/// `path` as git and the dashboard name it: relative to the workspace,
/// without `.` or `..` (`""` for the workspace itself); refused if it
/// leaves.
pub fn normalized(path: &str) -> Result<String, FileError> {
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

/// A regular file opened for reading, with what a download or an archive
/// says about it.
pub struct OpenFile {
    pub file: File,
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: u64,
    /// Permission bits.
    pub mode: u32,
    /// Its device and inode, and how many names it has (hard links).
    pub device: u64,
    pub inode: u64,
    pub names: u64,
}

impl OpenFile {
    // (`nlink_t` is 32 bits on some targets, 64 on this one.)
    #[allow(clippy::useless_conversion)]
    fn of(fd: OwnedFd, stat: &rfs::Stat) -> Self {
        Self {
            file: File::from(fd),
            size: u64::try_from(stat.st_size).unwrap_or(0),
            modified: u64::try_from(stat.st_mtime).unwrap_or(0),
            mode: stat.st_mode & 0o777,
            device: stat.st_dev,
            inode: stat.st_ino,
            names: u64::from(stat.st_nlink),
        }
    }
}

/// Bytes of file content one archive holds at most (a sparse file of
/// terabytes takes no disk, and would take days to send).
pub const ARCHIVE_MAX_BYTES: u64 = 64 << 30;
/// Bytes of folder paths an archive keeps waiting to be walked at most.
const ARCHIVE_PENDING_MAX_BYTES: usize = 64 << 20;

#[derive(Clone, Debug)]
pub struct ConfinedFolder {
    root: PathBuf,
    /// Host uid that must own what Paddock creates, so the sandbox user can
    /// change it; `None`: the server's own (the sandbox maps to it).
    owner: Option<u32>,
}

impl ConfinedFolder {
    pub fn new(root: PathBuf, owner: Option<u32>) -> Self {
        Self { root, owner }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Who owns what Paddock creates here; `None`: the server's user.
    pub fn owner(&self) -> Option<u32> {
        self.owner
    }

    /// Creates the folder (and gives it to the sandbox user when we can).
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        self.give(&File::open(&self.root)?.into());
        Ok(())
    }

    fn open(&self, path: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, FileError> {
        self.open_with(path, flags, mode, ResolveFlags::NO_MAGICLINKS)
    }

    /// [`open`](Self::open) resolving `path` with `resolve` too (always
    /// beneath the root).
    fn open_with(
        &self,
        path: &str,
        flags: OFlags,
        mode: Mode,
        resolve: ResolveFlags,
    ) -> Result<OwnedFd, FileError> {
        let rel = relative(path)?;
        let root = rfs::open(
            &self.root,
            OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOENT => FileError::NotFound(path.to_owned()),
            e => io_error(path, e),
        })?;
        // `openat2` refuses `O_NOCTTY` beside `O_PATH`.
        let extra = if flags.contains(OFlags::PATH) {
            OFlags::CLOEXEC
        } else {
            OFlags::CLOEXEC | OFlags::NOCTTY
        };
        // A lookup through `..` that races a rename anywhere on the host
        // is refused with EAGAIN, to be tried again (as the kernel's
        // documentation of RESOLVE_BENEATH says).
        let mut tries = 0;
        let opened = loop {
            let opened = rfs::openat2(
                &root,
                &rel,
                flags | extra,
                mode,
                ResolveFlags::BENEATH | resolve,
            );
            match opened {
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                opened => break opened,
            }
        };
        opened.map_err(|e| match e {
            Errno::XDEV => FileError::Outside(path.to_owned()),
            Errno::NOENT => FileError::NotFound(path.to_owned()),
            Errno::ISDIR => FileError::IsDirectory(path.to_owned()),
            Errno::NOTDIR => FileError::NotDirectory(path.to_owned()),
            Errno::LOOP => FileError::BadPath(path.to_owned(), "too many symbolic links".into()),
            Errno::ACCESS | Errno::PERM => FileError::Denied(path.to_owned()),
            // A pipe with nobody reading it, opened for writing.
            Errno::NXIO => FileError::NotRegular(path.to_owned()),
            // (Past the tries above.) A file with a lease a process of
            // the sandbox holds, which a non-blocking open does not wait
            // for, or one renamed as it was looked up, again and again.
            Errno::AGAIN => FileError::Unreachable(format!(
                "{path:?} is busy (a process in the sandbox holds a lease on it, or moves it): \
                 try again"
            )),
            e => io_error(path, e),
        })
    }

    /// Refuses what is not a regular file (a pipe the agent made would
    /// block a read or a write).
    fn regular(path: &str, fd: &OwnedFd) -> Result<rfs::Stat, FileError> {
        let stat = rfs::fstat(fd).map_err(|e| io_error(path, e))?;
        match rfs::FileType::from_raw_mode(stat.st_mode) {
            rfs::FileType::RegularFile => Ok(stat),
            rfs::FileType::Directory => Err(FileError::IsDirectory(path.to_owned())),
            _ => Err(FileError::NotRegular(path.to_owned())),
        }
    }

    /// A regular file, opened for reading.
    pub fn open_file(&self, path: &str) -> Result<OpenFile, FileError> {
        let fd = self.open(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        let stat = Self::regular(path, &fd)?;
        Ok(OpenFile::of(fd, &stat))
    }

    /// A regular file, opened for reading following no link, on the way or
    /// at its name (a link put there is refused).
    fn open_file_itself(&self, path: &str) -> Result<OpenFile, FileError> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let fd = self.open_with(path, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS)?;
        let stat = Self::regular(path, &fd)?;
        Ok(OpenFile::of(fd, &stat))
    }

    pub fn read(&self, path: &str) -> Result<Vec<u8>, FileError> {
        Self::read_whole(path, self.open_file(path)?, READ_MAX_BYTES)
    }

    /// What git keeps at `path`: a regular file's bytes (refused past
    /// `max`, unread), or a link's own text (the path it names), following
    /// no link on the way (git follows none); `None` when git keeps nothing
    /// there (nothing, a folder, a pipe, or a path through a link or a
    /// file).
    pub fn read_as_git(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, FileError> {
        let nothing = |e: &FileError| {
            matches!(
                e,
                FileError::NotFound(_)
                    | FileError::NotDirectory(_)
                    | FileError::IsDirectory(_)
                    | FileError::NotRegular(_)
                    // A link on the way (or a name too long).
                    | FileError::BadPath(..)
            )
        };
        if let Some(target) = self.link_target(path) {
            return Ok(Some(target));
        }
        // Else a regular file (a link put there since is not followed).
        match self.open_file_itself(path) {
            Ok(open) => Self::read_whole(path, open, max).map(Some),
            Err(e) if nothing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A link's own text (the path it names), when `path` itself is a link
    /// (reached following no link on the way); `None` for anything else.
    /// The text is read from the link opened, whatever takes its place
    /// meanwhile.
    pub fn link_target(&self, path: &str) -> Option<Vec<u8>> {
        let found = self
            .open_with(
                path,
                OFlags::PATH | OFlags::NOFOLLOW,
                Mode::empty(),
                ResolveFlags::NO_SYMLINKS,
            )
            .ok()?;
        let stat = rfs::fstat(&found).ok()?;
        if rfs::FileType::from_raw_mode(stat.st_mode) != rfs::FileType::Symlink {
            return None;
        }
        rfs::readlinkat(&found, "", Vec::new())
            .ok()
            .map(|target| target.into_bytes())
    }

    /// An open file's bytes, refused past [`READ_MAX_BYTES`].
    fn read_whole(path: &str, open: OpenFile, max: u64) -> Result<Vec<u8>, FileError> {
        let OpenFile { file, size, .. } = open;
        if size > max {
            return Err(FileError::TooLarge {
                path: path.to_owned(),
                size,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        file.take(max + 1)
            .read_to_end(&mut data)
            .map_err(|e| io_error(path, e))?;
        Ok(data)
    }

    /// Writes `data` to `path`, creating missing parent folders: a new file
    /// written whole beside it and renamed over it (a file there is
    /// replaced, keeping its permission bits; a link there is refused).
    pub fn write(&self, path: &str, data: &[u8]) -> Result<(), FileError> {
        let rel = relative(path)?;
        let name = rel
            .file_name()
            .ok_or_else(|| FileError::IsDirectory(path.to_owned()))?
            .to_owned();
        // What cannot fit is refused before anything is touched (the new
        // bytes are whole before the old ones go).
        let free = rfs::statvfs(&self.root).map(|fs| fs.f_bavail.saturating_mul(fs.f_frsize));
        if free.is_ok_and(|free| data.len() as u64 > free) {
            return Err(FileError::Full(path.to_owned()));
        }
        // A regular file there is replaced, keeping its permissions;
        // anything else there is refused.
        let mode = match self.open(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()) {
            Ok(fd) => Self::regular(path, &fd)?.st_mode & 0o777,
            Err(FileError::NotFound(_)) => 0o644,
            Err(e) => return Err(e),
        };
        let parent = match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => {
                self.create_dirs(path, parent)?;
                parent.to_string_lossy().into_owned()
            }
            None => ".".to_owned(),
        };
        let dir = self.open(&parent, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())?;
        // A link is not replaced by a file (nor written through: the file
        // it names may be anywhere).
        if rfs::statat(&dir, &name, rfs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink)
        {
            return Err(FileError::BadPath(
                path.to_owned(),
                "it is a symbolic link: write to the file it names".into(),
            ));
        }
        // Written whole beside it, then renamed over it: a reader (or a
        // failure) never sees it half written.
        let temp = format!(".paddock-write-{}", temp_suffix());
        let fd = rfs::openat(
            &dir,
            &temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| write_error(path, e))?;
        let _ = rfs::fchmod(&fd, Mode::from_raw_mode(mode));
        self.give(&fd);
        let written = File::from(fd)
            .write_all(data)
            .map_err(|e| io_error(path, e))
            .and_then(|()| {
                rfs::renameat(&dir, &temp, &dir, &name).map_err(|e| match e {
                    Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST => {
                        FileError::IsDirectory(path.to_owned())
                    }
                    e => write_error(path, e),
                })
            });
        if written.is_err() {
            let _ = rfs::unlinkat(&dir, &temp, rfs::AtFlags::empty());
        }
        written
    }

    fn create_dirs(&self, path: &str, parent: &Path) -> Result<(), FileError> {
        // Most often there already, looked up once: walking each of its
        // steps from the top costs as the square of its depth, for every
        // file of an upload into it.
        let whole = parent.to_string_lossy();
        if self
            .open(&whole, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
            .is_ok()
        {
            return Ok(());
        }
        let mut prefix = PathBuf::new();
        for c in parent.components() {
            prefix.push(c);
            let step = prefix.to_string_lossy().into_owned();
            match self.open(&step, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()) {
                Ok(_) => continue,
                Err(FileError::NotFound(_)) => {}
                Err(FileError::NotDirectory(_)) => return Err(FileError::NotDirectory(step)),
                Err(e) => return Err(e),
            }
            // Create it inside its (already confined) parent folder.
            let (dir, name) = match prefix.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(p) => (
                    p.to_string_lossy().into_owned(),
                    prefix.file_name().map(PathBuf::from),
                ),
                None => (".".to_owned(), Some(prefix.clone())),
            };
            let dir_fd = self.open(&dir, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())?;
            let name = name.ok_or_else(|| FileError::Outside(path.to_owned()))?;
            match rfs::mkdirat(&dir_fd, &name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(write_error(&step, e)),
            }
            let made = self.open(&step, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())?;
            self.give(&made);
        }
        Ok(())
    }

    /// Deletes a file, a link (never what it names) or a folder with all it
    /// holds, following no link on the way; not the workspace itself.
    pub fn delete(&self, path: &str) -> Result<(), FileError> {
        let rel = relative(path)?;
        let name = rel
            .file_name()
            .filter(|_| rel != Path::new("."))
            .ok_or_else(|| {
                FileError::BadPath(path.to_owned(), "name a file or a folder in it".into())
            })?
            .to_owned();
        let parent = match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => parent.to_string_lossy().into_owned(),
            None => ".".to_owned(),
        };
        let dir = self.open(&parent, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())?;
        let stat =
            rfs::statat(&dir, &name, rfs::AtFlags::SYMLINK_NOFOLLOW).map_err(|e| match e {
                Errno::NOENT => FileError::NotFound(path.to_owned()),
                e => io_error(path, e),
            })?;
        let removed = if rfs::FileType::from_raw_mode(stat.st_mode) == rfs::FileType::Directory {
            remove_tree(&dir, &name)
        } else {
            rfs::unlinkat(&dir, &name, rfs::AtFlags::empty())
        };
        removed.map_err(|e| match e {
            Errno::LOOP => FileError::BadPath(
                path.to_owned(),
                format!(
                    "it is more than {DELETE_DEPTH_MAX} folders deep (what was before that depth \
                     may be deleted already): delete it with a command"
                )
                .into(),
            ),
            // Written into, removed or replaced while it was deleted.
            Errno::NOTEMPTY | Errno::EXIST | Errno::ISDIR | Errno::NOTDIR | Errno::NOENT => {
                FileError::BadPath(
                    path.to_owned(),
                    "it changed while it was deleted: try again".into(),
                )
            }
            Errno::BUSY => FileError::BadPath(path.to_owned(), "something is mounted on it".into()),
            Errno::MFILE | Errno::NFILE => FileError::Unreachable(
                "Too many files are open here to delete it now: try again.".into(),
            ),
            e => write_error(path, e),
        })
    }

    /// What `path` is, a link inside the workspace followed (as reading
    /// it would).
    pub fn stat(&self, path: &str) -> Result<Stat, FileError> {
        let fd = self.open(path, OFlags::PATH, Mode::empty())?;
        let stat = rfs::fstat(&fd).map_err(|e| io_error(path, e))?;
        let kind = FileKind::of(stat.st_mode);
        Ok(Stat {
            kind,
            size: if kind == FileKind::File {
                u64::try_from(stat.st_size).unwrap_or(0)
            } else {
                0
            },
            modified: u64::try_from(stat.st_mtime).unwrap_or(0),
            mode: stat.st_mode & 0o777,
        })
    }

    /// What `path` itself is (a link is a link), or `None` when nothing is
    /// there; the folder holding it is reached as every path is.
    pub(crate) fn kind_of(&self, path: &str) -> Result<Option<FileKind>, FileError> {
        let rel = relative(path)?;
        let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
            return self.stat(path).map(|s| Some(s.kind));
        };
        let parent = parent.to_string_lossy();
        let dir = self.open(
            if parent.is_empty() { "." } else { &parent },
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )?;
        match rfs::statat(&dir, name, rfs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(FileKind::of(stat.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io_error(path, e)),
        }
    }

    /// The names in folder `path` and what each is (links not followed),
    /// sorted; names that are not UTF-8, which no path of the workspace
    /// can spell, are left out. A folder of more than
    /// [`FOLDER_ENTRIES_MAX`] is refused: the sandbox can make one of
    /// millions of names (hard links need no disk), which would be held
    /// in memory here whole.
    pub(crate) fn names(&self, path: &str) -> Result<Vec<(String, FileKind)>, FileError> {
        self.read_folder(path).map(|(_, names)| names)
    }

    /// [`Self::names`], and the folder, open.
    fn read_folder(&self, path: &str) -> Result<(OwnedFd, Vec<(String, FileKind)>), FileError> {
        let fd = self.open(path, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())?;
        let dir = rfs::Dir::read_from(&fd).map_err(|e| io_error(path, e))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| io_error(path, e))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            if names.len() == FOLDER_ENTRIES_MAX {
                return Err(FileError::Crowded(path.to_owned()));
            }
            let kind = match entry.file_type() {
                rfs::FileType::Unknown => {
                    match rfs::statat(&fd, entry.file_name(), rfs::AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(stat) => FileKind::of(stat.st_mode),
                        Err(_) => continue,
                    }
                }
                other => FileKind::of(other.as_raw_mode()),
            };
            names.push((name.to_owned(), kind));
        }
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok((fd, names))
    }

    /// The entries of a folder, sorted by name (as [`Self::names`]).
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, FileError> {
        if relative(path)? == Path::new(".") && !self.root.exists() {
            return Ok(Vec::new());
        }
        let (fd, names) = self.read_folder(path)?;
        let mut entries = Vec::with_capacity(names.len());
        for (name, kind) in names {
            let size = match kind {
                FileKind::Folder => 0,
                _ => match rfs::statat(&fd, name.as_str(), rfs::AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => u64::try_from(stat.st_size).unwrap_or(0),
                    // Gone since the folder was read.
                    Err(Errno::NOENT) => continue,
                    // A folder its maker may read but not search (`chmod
                    // 644`): its names, sizes unknown.
                    Err(Errno::ACCESS) => 0,
                    Err(e) => return Err(io_error(path, e)),
                },
            };
            entries.push(Entry {
                name,
                is_dir: kind == FileKind::Folder,
                size,
            });
        }
        Ok(entries)
    }
}

impl ConfinedFolder {
    /// Writes the workspace as a tar to `out`, every path under `top/`:
    /// folders, links as links (what they name is not read), and regular
    /// files, each opened following no link, a file's other
    /// names as hard links to its first. Stops at the first error writing
    /// to `out` (the download was abandoned), or past [`ARCHIVE_MAX_BYTES`]
    /// of content or 64 MiB of names kept to walk; gives `out` back when
    /// the archive is whole.
    pub fn archive<W: Write>(&self, top: &str, out: W) -> std::io::Result<W> {
        let too_large = |what: &str| std::io::Error::other(format!("the workspace {what}"));
        let mut tar = tar::Builder::new(out);
        let mut folders = vec![String::new()];
        let mut pending = 0;
        let mut content = 0u64;
        // The first name of each file with more than one (hard links),
        // by device and inode: the others are links to it, not copies.
        let mut first_names: HashMap<(u64, u64), String> = HashMap::new();
        let mut linked = 0;
        while let Some(folder) = folders.pop() {
            pending -= folder.len();
            let Ok(entries) = self.list(if folder.is_empty() { "." } else { &folder }) else {
                continue;
            };
            for entry in entries {
                let path = if folder.is_empty() {
                    entry.name
                } else {
                    format!("{folder}/{}", entry.name)
                };
                let mut header = tar::Header::new_gnu();
                let name = format!("{top}/{path}");
                if entry.is_dir {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{name}/"), std::io::empty())?;
                    pending += path.len();
                    if pending > ARCHIVE_PENDING_MAX_BYTES {
                        return Err(too_large("has too many folders to archive"));
                    }
                    folders.push(path);
                } else if let Some(target) = self.link_target(&path) {
                    // A link is kept as a link (read through, many links
                    // to one large file were as many copies).
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    let target = String::from_utf8_lossy(&target).into_owned();
                    tar.append_link(&mut header, name, target)?;
                } else if let Ok(open) = self.open_file_itself(&path) {
                    let inode = (open.device, open.inode);
                    if open.names > 1 {
                        if let Some(first) = first_names.get(&inode) {
                            header.set_entry_type(tar::EntryType::Link);
                            header.set_mode(open.mode);
                            header.set_size(0);
                            tar.append_link(&mut header, name, format!("{top}/{first}"))?;
                            continue;
                        }
                        // Kept within a bound of their own; past it, a
                        // file's other names are copies.
                        if linked + path.len() <= ARCHIVE_PENDING_MAX_BYTES {
                            linked += path.len();
                            first_names.insert(inode, path.clone());
                        }
                    }
                    content += open.size;
                    if content > ARCHIVE_MAX_BYTES {
                        return Err(too_large(&format!(
                            "holds more than {} GiB to archive",
                            ARCHIVE_MAX_BYTES >> 30
                        )));
                    }
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(open.mode);
                    header.set_size(open.size);
                    header.set_mtime(open.modified);
                    // Exactly the size the header says: a file that grows
                    // while it is read is cut, one that shrinks is padded
                    // with zeros (otherwise every later entry would shift).
                    let exact = open
                        .file
                        .take(open.size)
                        .chain(std::io::repeat(0))
                        .take(open.size);
                    tar.append_data(&mut header, name, exact)?;
                }
            }
        }
        tar.into_inner()
    }
}

/// Folders deep a deletion goes (a descriptor open for each); deeper is
/// refused.
const DELETE_DEPTH_MAX: usize = 256;

/// A folder opened without following a link, and the names in it.
fn open_folder(
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
) -> Result<(OwnedFd, Vec<std::ffi::OsString>), Errno> {
    let fd = rfs::openat(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let names = some_names(&fd)?;
    Ok((fd, names))
}

/// Names of a folder read at once while it is removed: the next are read
/// once these are gone, so a folder of millions is never held whole.
const DELETE_BATCH: usize = 4096;
/// Names kept of a folder's batch while a folder in it is deleted, past
/// the first levels, which keep theirs whole.
const KEPT_ABOVE: usize = 64;
const WHOLE_BATCHES_ABOVE: usize = 16;

/// The first [`DELETE_BATCH`] names of folder `fd`, read from its start.
fn some_names(fd: &OwnedFd) -> Result<Vec<std::ffi::OsString>, Errno> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(fd)? {
        let entry = entry?;
        let entry_name = entry.file_name().to_bytes();
        if entry_name != b"." && entry_name != b".." {
            names.push(std::ffi::OsStr::from_bytes(entry_name).to_owned());
            if names.len() == DELETE_BATCH {
                break;
            }
        }
    }
    Ok(names)
}

/// Removes folder `name` of `dir` and everything in it, each folder below
/// opened in the last without following a link (a link is removed, never
/// followed); iteratively, at most [`DELETE_DEPTH_MAX`] deep.
fn remove_tree(dir: &OwnedFd, name: &std::ffi::OsStr) -> Result<(), Errno> {
    let gone = |done: Result<(), Errno>| match done {
        Err(Errno::NOENT) => Ok(()),
        done => done,
    };
    let (fd, names) = open_folder(dir, name)?;
    let mut levels = vec![(fd, name.to_owned(), names)];
    loop {
        let depth = levels.len();
        let Some((fd, _, names)) = levels.last_mut() else {
            return Ok(());
        };
        let Some(entry) = names.pop() else {
            // A full batch gone: the folder may hold more.
            let more = some_names(fd)?;
            if !more.is_empty() {
                *names = more;
                continue;
            }
            if let Some((_, done, _)) = levels.pop() {
                let parent = levels.last().map_or(dir, |(fd, ..)| fd);
                gone(rfs::unlinkat(parent, &done, rfs::AtFlags::REMOVEDIR))?;
            }
            continue;
        };
        let is_dir = match rfs::statat(&*fd, &entry, rfs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory,
            // Gone meanwhile.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        if !is_dir {
            gone(rfs::unlinkat(&*fd, &entry, rfs::AtFlags::empty()))?;
            continue;
        }
        // Deep down, of the names of the folders above the one gone into,
        // only a few are kept (the rest are read again): a batch at each of
        // hundreds of levels would be hundreds of megabytes. (Not near the
        // top, where a folder of many folders would be read again and
        // again.)
        if depth > WHOLE_BATCHES_ABOVE {
            names.drain(..names.len().saturating_sub(KEPT_ABOVE));
        }
        if levels.len() >= DELETE_DEPTH_MAX {
            return Err(Errno::LOOP);
        }
        match open_folder(&levels[levels.len() - 1].0, &entry) {
            Ok((below, names)) => levels.push((below, entry, names)),
            // Removed meanwhile.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// 64 random bits in hex, naming a file written beside its place (the
/// time and the process, should the kernel give no random bits).
fn temp_suffix() -> String {
    let mut bytes = [0u8; 8];
    if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()) != Ok(8) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (now ^ u64::from(std::process::id()).rotate_left(40)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error making or renaming a file: refused permissions (a folder the
/// agent made read-only) are the caller's to hear about, as on opening.
fn write_error(path: &str, e: Errno) -> FileError {
    match e {
        Errno::ACCESS | Errno::PERM | Errno::ROFS => FileError::Denied(path.to_owned()),
        e => io_error(path, e),
    }
}

/// Any other failure of a file operation: a full disk and a name too long
/// (however the path reached the call) are told as such, the rest as the
/// system's own words.
fn io_error(path: &str, e: impl Into<std::io::Error>) -> FileError {
    let e = e.into();
    match e.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::NOSPC | Errno::DQUOT | Errno::FBIG) => FileError::Full(path.to_owned()),
        Some(Errno::NAMETOOLONG) => {
            FileError::BadPath(path.to_owned(), "a name is too long".into())
        }
        // What the workspace's own contents cause, not the server.
        Some(Errno::MLINK) => FileError::BadPath(
            path.to_owned(),
            "its folder holds as many folders or links as it may".into(),
        ),
        _ => FileError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        },
    }
}

impl ConfinedFolder {
    /// Gives a file Paddock created to the sandbox's owner. Only root may
    /// give files away; otherwise they stay ours.
    /// Gives everything in the folder to its owner (what host-side git
    /// wrote as the server's user), following no link. Only the server
    /// writes here while it runs: the session's sandbox is not started yet.
    pub fn give_all(&self) -> std::io::Result<()> {
        let Some(uid) = self.owner.filter(|_| rustix::process::geteuid().is_root()) else {
            return Ok(());
        };
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            std::os::unix::fs::lchown(&dir, Some(uid), Some(uid))?;
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    stack.push(entry.path());
                } else {
                    std::os::unix::fs::lchown(entry.path(), Some(uid), Some(uid))?;
                }
            }
        }
        Ok(())
    }

    /// Lets a file be run (`chmod +x`), as a folder's owner would.
    pub fn set_executable(&self, path: &str) -> Result<(), FileError> {
        let fd = self.open(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        let stat = Self::regular(path, &fd)?;
        rfs::fchmod(&fd, Mode::from_raw_mode((stat.st_mode & 0o777) | 0o111))
            .map_err(|e| io_error(path, e))
    }

    fn give(&self, fd: &OwnedFd) {
        if let Some(uid) = self.owner.filter(|_| rustix::process::geteuid().is_root()) {
            let _ = rfs::fchown(
                fd,
                Some(rfs::Uid::from_raw(uid)),
                Some(rfs::Gid::from_raw(uid)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> (tempfile::TempDir, ConfinedFolder) {
        let dir = tempfile::tempdir().unwrap();
        let ws = ConfinedFolder::new(dir.path().join("ws"), Some(10001));
        ws.create().unwrap();
        (dir, ws)
    }

    #[test]
    fn what_the_workspace_holds_is_no_fault_of_the_server() {
        let e = |errno: Errno| {
            io_error(
                "a/b",
                std::io::Error::from_raw_os_error(errno.raw_os_error()),
            )
        };
        assert!(matches!(e(Errno::MLINK), FileError::BadPath(..)));
        assert_eq!(e(Errno::FBIG), FileError::Full("a/b".into()));
        assert_eq!(e(Errno::NOSPC), FileError::Full("a/b".into()));
        assert!(matches!(e(Errno::IO), FileError::Io { .. }));
    }

    #[test]
    fn writes_reads_and_lists_inside() {
        let (_d, ws) = ws();
        ws.write("src/deep/a.txt", b"hello").unwrap();
        assert_eq!(ws.read("/workspace/src/deep/a.txt").unwrap(), b"hello");
        assert_eq!(ws.read("./src/../src/deep/a.txt").unwrap(), b"hello");
        let names: Vec<_> = ws
            .list("/workspace")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.is_dir))
            .collect();
        assert_eq!(names, [("src".to_owned(), true)]);
        assert_eq!(ws.list("src/deep").unwrap()[0].size, 5);
    }

    #[test]
    fn refuses_paths_outside() {
        let (dir, ws) = ws();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        for p in [
            "../secret",
            "../../etc/passwd",
            "/etc/passwd",
            "/workspace/../secret",
            "a/../../secret",
        ] {
            assert_eq!(ws.read(p), Err(FileError::Outside(p.to_owned())), "{p}");
        }
        assert!(matches!(
            ws.write("/tmp/x", b"x"),
            Err(FileError::Outside(_))
        ));
    }

    #[test]
    fn refuses_symlinks_that_escape() {
        let (dir, ws) = ws();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ws.root().join("abs")).unwrap();
        std::os::unix::fs::symlink("../secret", ws.root().join("rel")).unwrap();
        std::os::unix::fs::symlink("/etc", ws.root().join("dir")).unwrap();
        assert_eq!(ws.read("abs"), Err(FileError::Outside("abs".into())));
        assert_eq!(ws.read("rel"), Err(FileError::Outside("rel".into())));
        assert_eq!(
            ws.write("rel", b"pwned"),
            Err(FileError::Outside("rel".into()))
        );
        assert!(matches!(
            ws.write("dir/evil", b"x"),
            Err(FileError::Outside(_))
        ));
        assert!(matches!(ws.list("dir"), Err(FileError::Outside(_))));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("secret")).unwrap(),
            "s"
        );
        // A link that stays inside is fine.
        ws.write("real.txt", b"ok").unwrap();
        std::os::unix::fs::symlink("real.txt", ws.root().join("inside")).unwrap();
        assert_eq!(ws.read("inside").unwrap(), b"ok");
    }

    #[test]
    fn archives_what_is_inside_and_nothing_else() {
        let (dir, ws) = ws();
        ws.write("src/a.rs", b"fn main() {}").unwrap();
        ws.write("README.md", b"hi").unwrap();
        ws.write("run.sh", b"#!/bin/sh").unwrap();
        std::fs::set_permissions(
            ws.root().join("run.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        // Links are links, whatever they name (nothing read through them);
        // a file's other names are links to its first.
        std::os::unix::fs::symlink("../secret", ws.root().join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc", ws.root().join("etc")).unwrap();
        std::os::unix::fs::symlink("README.md", ws.root().join("readme")).unwrap();
        std::fs::hard_link(ws.root().join("src/a.rs"), ws.root().join("src/b.rs")).unwrap();
        let mut out = Vec::new();
        ws.archive("top", &mut out).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let mut found = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            let path = entry.path().unwrap().display().to_string();
            let link = entry.link_name().unwrap().map(|l| l.display().to_string());
            let mode = entry.header().mode().unwrap();
            let expected = match (&link, path.as_str()) {
                (Some(_), "top/src/a.rs" | "top/src/b.rs") => 0o644,
                (Some(_), _) => 0o777,
                (None, p) if p == "top/run.sh" || p.ends_with('/') => 0o755,
                (None, _) => 0o644,
            };
            assert_eq!(mode, expected, "{path}");
            found.push((path, text, link));
        }
        found.sort();
        let file = |p: &str, t: &str| (p.to_owned(), t.to_owned(), None);
        let link = |p: &str, to: &str| (p.to_owned(), String::new(), Some(to.to_owned()));
        // (Which of a file's two names comes first is the folder's order.)
        let (first, second) = if found.iter().any(|f| f.0 == "top/src/a.rs" && f.2.is_none()) {
            ("top/src/a.rs", "top/src/b.rs")
        } else {
            ("top/src/b.rs", "top/src/a.rs")
        };
        let mut expected = vec![
            file("top/README.md", "hi"),
            link("top/etc", "/etc"),
            link("top/escape", "../secret"),
            link("top/readme", "README.md"),
            file("top/run.sh", "#!/bin/sh"),
            file("top/src/", ""),
            file(first, "fn main() {}"),
            link(second, first),
        ];
        expected.sort();
        assert_eq!(found, expected);
    }

    #[test]
    fn an_archive_past_its_bound_fails_rather_than_runs_for_days() {
        let (_d, ws) = ws();
        let huge = std::fs::File::create(ws.root().join("sparse")).unwrap();
        // No disk taken, and more than an archive holds.
        huge.set_len(ARCHIVE_MAX_BYTES + 1).unwrap();
        let mut out = Vec::new();
        let failed = ws.archive("top", &mut out).unwrap_err();
        assert!(failed.to_string().contains("GiB"), "{failed}");
        assert!(out.len() < 1 << 20);
    }

    #[test]
    fn a_file_written_again_is_replaced_whole_and_keeps_its_permissions() {
        let (_d, ws) = ws();
        ws.write("bin/run.sh", b"#!/bin/sh\necho one\n").unwrap();
        let script = ws.root().join("bin/run.sh");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
        ws.write("bin/run.sh", b"#!/bin/sh\necho two\n").unwrap();
        assert_eq!(std::fs::read(&script).unwrap(), b"#!/bin/sh\necho two\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
            0o750
        );
        // Nothing is left beside it, and a folder is not written over.
        let names: Vec<String> = std::fs::read_dir(ws.root().join("bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["run.sh"]);
        assert!(matches!(
            ws.write("bin", b"x"),
            Err(FileError::IsDirectory(_))
        ));
        // A link is neither replaced nor written through.
        std::os::unix::fs::symlink("bin/run.sh", ws.root().join("link.sh")).unwrap();
        assert!(matches!(
            ws.write("link.sh", b"x"),
            Err(FileError::BadPath(..))
        ));
        assert!(std::fs::symlink_metadata(ws.root().join("link.sh"))
            .unwrap()
            .is_symlink());
        assert_eq!(std::fs::read(&script).unwrap(), b"#!/bin/sh\necho two\n");
    }

    #[test]
    fn a_file_a_sandbox_process_holds_a_lease_on_is_busy_not_an_error() {
        use std::io::{BufRead, Write};
        let (_dir, ws) = ws();
        let leased = ws.root().join("leased.txt");
        std::fs::write(&leased, b"mine").unwrap();
        // A process that takes a write lease on it, and holds it until
        // its input ends.
        let mut holder = std::process::Command::new("python3")
            .args([
                "-c",
                "import fcntl, os, signal, sys\n\
                 signal.signal(signal.SIGIO, signal.SIG_IGN)\n\
                 fd = os.open(sys.argv[1], os.O_RDONLY)\n\
                 fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)\n\
                 print('held', flush=True)\n\
                 sys.stdin.read()",
            ])
            .arg(&leased)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut said = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut said)
            .unwrap();
        assert_eq!(said, "held\n");
        let busy = ws.read("leased.txt");
        assert!(
            matches!(&busy, Err(FileError::Unreachable(why)) if why.contains("busy")),
            "{busy:?}"
        );
        holder.stdin.take().unwrap().write_all(b"").unwrap();
        holder.wait().unwrap();
        assert_eq!(ws.read("leased.txt").unwrap(), b"mine");
    }

    #[test]
    fn a_folder_of_too_many_names_is_refused_not_held_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ws = ConfinedFolder::new(dir.path().to_path_buf(), None);
        let many = dir.path().join("many");
        std::fs::create_dir(&many).unwrap();
        for i in 0..FOLDER_ENTRIES_MAX {
            std::fs::File::create(many.join(i.to_string())).unwrap();
        }
        assert_eq!(ws.list("many").unwrap().len(), FOLDER_ENTRIES_MAX);
        std::fs::File::create(many.join("one-more")).unwrap();
        assert_eq!(ws.list("many"), Err(FileError::Crowded("many".into())));
    }

    #[test]
    fn a_workspace_not_made_yet_is_empty_and_made_before_a_first_file() {
        let dir = tempfile::tempdir().unwrap();
        let ws = ConfinedFolder::new(dir.path().join("not-yet"), None);
        assert_eq!(ws.list("."), Ok(Vec::new()));
        assert_eq!(ws.list("src"), Err(FileError::NotFound("src".into())));
        // Writing never makes the workspace (it may have to be a filesystem
        // of its own): whoever writes first makes it.
        assert!(matches!(
            ws.write("up/loaded.txt", b"x"),
            Err(FileError::NotFound(_))
        ));
        assert!(!ws.root().exists());
        ws.create().unwrap();
        ws.write("up/loaded.txt", b"x").unwrap();
        assert_eq!(ws.read("up/loaded.txt").unwrap(), b"x");
    }

    #[test]
    fn pipes_and_bad_names_are_refused_without_blocking() {
        let (_d, ws) = ws();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            ws.root().join("pipe"),
            rfs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert_eq!(ws.read("pipe"), Err(FileError::NotRegular("pipe".into())));
        assert_eq!(
            ws.write("pipe", b"x"),
            Err(FileError::NotRegular("pipe".into()))
        );
        assert!(matches!(ws.read("a\0b"), Err(FileError::BadPath(..))));
        assert!(matches!(
            ws.read(&"n".repeat(300)),
            Err(FileError::BadPath(..))
        ));
        std::os::unix::fs::symlink("loop", ws.root().join("loop")).unwrap();
        assert!(matches!(ws.read("loop"), Err(FileError::BadPath(..))));
    }

    #[test]
    fn a_folder_of_more_names_than_a_batch_is_deleted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ws = ConfinedFolder::new(dir.path().to_path_buf(), None);
        let many = dir.path().join("many");
        std::fs::create_dir_all(many.join("inner")).unwrap();
        for i in 0..DELETE_BATCH * 2 + 3 {
            std::fs::File::create(many.join(i.to_string())).unwrap();
            std::fs::File::create(many.join("inner").join(i.to_string())).unwrap();
        }
        // Deep down, more folders than the names kept of a batch while one
        // is gone into: the rest are read again.
        let deep =
            (0..WHOLE_BATCHES_ABOVE + 2).fold(many.clone(), |at, i| at.join(format!("d{i}")));
        for i in 0..KEPT_ABOVE * 3 {
            let folder = deep.join(format!("folder-{i}"));
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::File::create(folder.join("f")).unwrap();
        }
        ws.delete("many").unwrap();
        assert!(!many.exists());
    }

    #[test]
    fn deletes_files_links_and_folders_inside_and_nothing_else() {
        let (dir, ws) = ws();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        ws.write("src/deep/a.rs", b"a").unwrap();
        ws.write("src/b.rs", b"b").unwrap();
        ws.write("keep.txt", b"k").unwrap();
        // Links inside a folder being deleted go, what they name stays.
        std::os::unix::fs::symlink(
            dir.path().join("secret"),
            ws.root().join("src/deep/to-secret"),
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path(), ws.root().join("src/to-outside")).unwrap();
        std::os::unix::fs::symlink("/etc", ws.root().join("etc")).unwrap();
        ws.delete("src/b.rs").unwrap();
        assert_eq!(
            ws.read("src/b.rs"),
            Err(FileError::NotFound("src/b.rs".into()))
        );
        ws.delete("/workspace/src").unwrap();
        assert!(!ws.root().join("src").exists());
        // A link is removed, never followed.
        ws.delete("etc").unwrap();
        assert!(std::path::Path::new("/etc/passwd").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("secret")).unwrap(),
            "s"
        );
        for outside in ["../secret", "/etc/passwd", "a/../../secret"] {
            assert_eq!(
                ws.delete(outside),
                Err(FileError::Outside(outside.into())),
                "{outside}"
            );
        }
        for itself in [".", "/workspace", "", "src/.."] {
            assert!(
                matches!(ws.delete(itself), Err(FileError::BadPath(..))),
                "{itself}"
            );
        }
        assert_eq!(ws.delete("nope"), Err(FileError::NotFound("nope".into())));
        // Deeper than a deletion goes: refused, with why.
        let deep = (0..=DELETE_DEPTH_MAX)
            .map(|_| "d")
            .collect::<Vec<_>>()
            .join("/");
        std::fs::create_dir_all(ws.root().join(&deep)).unwrap();
        assert!(matches!(ws.delete("d"), Err(FileError::BadPath(..))));
        let shallow = (0..DELETE_DEPTH_MAX - 1)
            .map(|_| "e")
            .collect::<Vec<_>>()
            .join("/");
        std::fs::create_dir_all(ws.root().join(&shallow)).unwrap();
        ws.delete("e").unwrap();
        assert_eq!(ws.read("keep.txt").unwrap(), b"k");
    }

    #[test]
    fn clear_errors_for_missing_and_directories() {
        let (_d, ws) = ws();
        assert_eq!(ws.read("nope"), Err(FileError::NotFound("nope".into())));
        ws.write("d/f", b"").unwrap();
        assert_eq!(ws.read("d"), Err(FileError::IsDirectory("d".into())));
        assert!(matches!(ws.list("d/f"), Err(FileError::NotDirectory(_))));
    }

    #[test]
    fn read_as_git_reads_links_as_links_and_never_through_one() {
        let (_d, ws) = ws();
        ws.write("d/f", b"x").unwrap();
        let link = |to: &str, at: &str| std::os::unix::fs::symlink(to, ws.root().join(at)).unwrap();
        link("d", "to-d");
        link("/etc/passwd", "out");
        link("loop", "loop");
        link("d/f", "to-f");
        let made = std::process::Command::new("mkfifo")
            .arg(ws.root().join("pipe"))
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(
            ws.read_as_git("d/f", READ_MAX_BYTES),
            Ok(Some(b"x".to_vec()))
        );
        assert!(matches!(
            ws.read_as_git("d/f", 0),
            Err(FileError::TooLarge { size: 1, .. })
        ));
        assert_eq!(
            ws.read_as_git("to-f", READ_MAX_BYTES),
            Ok(Some(b"d/f".to_vec()))
        );
        assert_eq!(
            ws.read_as_git("to-d", READ_MAX_BYTES),
            Ok(Some(b"d".to_vec()))
        );
        assert_eq!(
            ws.read_as_git("out", READ_MAX_BYTES),
            Ok(Some(b"/etc/passwd".to_vec()))
        );
        assert_eq!(
            ws.read_as_git("loop", READ_MAX_BYTES),
            Ok(Some(b"loop".to_vec()))
        );
        // What git does not keep: through a link (inside or out), a
        // folder, a pipe, nothing.
        for nothing in [
            "to-d/f", "out/x", "loop/x", "d", ".", "pipe", "nope", "d/f/x",
        ] {
            assert_eq!(
                ws.read_as_git(nothing, READ_MAX_BYTES),
                Ok(None),
                "{nothing}"
            );
        }
        assert!(matches!(
            ws.read_as_git("../x", READ_MAX_BYTES),
            Err(FileError::Outside(_))
        ));
    }

    /// A name longer than the file system takes is the caller's mistake,
    /// whichever call meets it (the last name is only looked up by the
    /// call that acts on it).
    #[test]
    fn names_too_long_are_bad_paths() {
        let (_d, ws) = ws();
        let long = "n".repeat(300);
        ws.write("d/f", b"").unwrap();
        for path in [long.clone(), format!("{long}/f"), format!("d/{long}")] {
            assert!(
                matches!(ws.read(&path), Err(FileError::BadPath(..))),
                "read {path}"
            );
            assert!(
                matches!(ws.stat(&path), Err(FileError::BadPath(..))),
                "stat {path}"
            );
            assert!(
                matches!(ws.delete(&path), Err(FileError::BadPath(..))),
                "delete {path}"
            );
            assert!(
                matches!(ws.write(&path, b"x"), Err(FileError::BadPath(..))),
                "write {path}"
            );
        }
    }
}
