//! Where a backend keeps its sessions' workspaces: one folder each under a
//! root, bind-mounted into the session's sandbox.
//!
//! Where the host allows it (the server runs as root, with loop devices,
//! `mkfs.ext4` and `mount`), a workspace is a filesystem of its own: a
//! sparse ext4 image beside the folder (`<session>.disk`), loop-mounted on
//! it, whose size is the session's disk limit. An agent that fills it gets
//! an ordinary "No space left on device", and the host's disk, the server
//! and the other sessions are untouched. Elsewhere (a server without root,
//! a container without the right to mount) workspaces are plain folders
//! without a limit, and `/readyz` says why. So is a workspace made before
//! disk limits existed: it keeps its files, without a limit.

use super::{workspace_dir, ConfinedFolder, Result, SandboxError};
use app::domain::SessionId;
use app::files::DiskUse;
use rustix::fs as rfs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Folders walked at most to measure a workspace without a filesystem of
/// its own; past it, the figure is what was counted.
const WALK_MAX_ENTRIES: usize = 200_000;

pub struct WorkspaceRoot {
    root: PathBuf,
    /// Host uid that owns a new workspace (the sandbox user); `None`: the
    /// server's own.
    owner: Option<u32>,
    /// Why workspaces cannot have disk limits here; `None`: they can.
    no_disk_limits: Option<String>,
    /// One workspace made or removed at a time: a session's sandbox start,
    /// its preparation and an upload may all ask for it at once.
    changing: tokio::sync::Mutex<()>,
}

impl WorkspaceRoot {
    /// Finds out once, by making, mounting and removing a small image,
    /// whether workspaces can have disk limits on this host.
    pub fn new(root: PathBuf, owner: Option<u32>) -> Self {
        let no_disk_limits = probe(&root).err();
        match &no_disk_limits {
            Some(why) => tracing::warn!("workspaces have no disk limit on this host: {why}"),
            None => {
                // In the background: the server need not wait for every
                // workspace; one a session uses first is mounted then.
                let root = root.clone();
                std::thread::spawn(move || mount_all(&root, owner));
            }
        }
        Self {
            root,
            owner,
            no_disk_limits,
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// The folder holding every workspace.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Why workspaces cannot have disk limits here, if they cannot.
    pub fn no_disk_limits(&self) -> Option<&str> {
        self.no_disk_limits.as_deref()
    }

    /// The session's workspace folder.
    pub fn folder(&self, session: SessionId) -> ConfinedFolder {
        ConfinedFolder::new(workspace_dir(&self.root, session), self.owner)
    }

    /// The session's workspace folder, its filesystem mounted again first
    /// where it is not ([`DiskFolder::mount_again`]): what the server reads
    /// or writes there by path is the workspace's own.
    pub async fn mounted(&self, session: SessionId) -> Result<ConfinedFolder> {
        let folder = self.folder(session);
        DiskFolder::new(folder.clone())
            .mount_again_apart()
            .await
            .map_err(|e| SandboxError::Failed(format!("cannot mount the workspace: {e}")))?;
        Ok(folder)
    }

    /// Makes the session's workspace unless it exists: a filesystem of
    /// `disk_mb` MiB where the host allows it, else a plain folder. One made
    /// earlier is mounted again when it is not (after the host restarted).
    pub async fn create(&self, session: SessionId, disk_mb: Option<u64>) -> Result<()> {
        let _one_at_a_time = self.changing.lock().await;
        let disk = DiskFolder::new(self.folder(session));
        let disk_mb = disk_mb.filter(|_| self.no_disk_limits.is_none());
        tokio::task::spawn_blocking(move || disk.create(disk_mb))
            .await
            .map_err(|e| SandboxError::Failed(e.to_string()))?
            .map_err(|e| SandboxError::Failed(format!("cannot create the workspace: {e}")))
    }

    /// Removes the session's workspace for good: unmounted, its image and
    /// its folder deleted; a missing one is fine.
    pub async fn remove(&self, session: SessionId) -> Result<()> {
        let _one_at_a_time = self.changing.lock().await;
        let disk = DiskFolder::new(self.folder(session));
        tokio::task::spawn_blocking(move || disk.remove())
            .await
            .map_err(|e| SandboxError::Failed(e.to_string()))?
            .map_err(|e| SandboxError::Failed(format!("cannot remove the workspace: {e}")))
    }

    /// How much of its disk the session's workspace uses.
    pub async fn usage(&self, session: SessionId) -> Result<DiskUse> {
        let dir = workspace_dir(&self.root, session);
        tokio::task::spawn_blocking(move || usage(&dir))
            .await
            .map_err(|e| SandboxError::Failed(e.to_string()))?
            .map_err(|e| SandboxError::Failed(format!("cannot measure the workspace: {e}")))
    }
}

/// A folder that is a filesystem of its own where it has a size: the image
/// `<folder>.disk` beside it, loop-mounted on it. A session's workspace,
/// and the Claude Code CLI's home. Its calls block (they run `mkfs.ext4`,
/// `mount`, `umount`).
pub struct DiskFolder {
    folder: ConfinedFolder,
}

impl DiskFolder {
    pub fn new(folder: ConfinedFolder) -> Self {
        Self { folder }
    }

    fn image(&self) -> PathBuf {
        let mut image = self.folder.root().as_os_str().to_owned();
        image.push(".disk");
        image.into()
    }

    /// Makes the folder unless it exists: a filesystem of `mb` MiB, or a
    /// plain folder for `None`. One made earlier is mounted again when it
    /// is not (after the host restarted); a plain folder that holds files
    /// stays one.
    pub fn create(&self, mb: Option<u64>) -> std::io::Result<()> {
        let (dir, image) = (self.folder.root(), self.image());
        let _one_process_at_a_time = lock_beside(dir)?;
        if image.exists() {
            return self.mount_unmounted();
        }
        let holds_files = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
        match mb {
            Some(mb) if !holds_files => {
                std::fs::create_dir_all(dir)?;
                // Made under another name and renamed once whole: an image
                // under its own name is always a filesystem.
                let mut making = image.clone().into_os_string();
                making.push(format!(".new-{}", &crate::secret::random_hex()[..12]));
                let making = PathBuf::from(making);
                make_image(&making, mb, self.folder.owner())?;
                std::fs::rename(&making, &image)?;
                if let Err(e) = mount(&image, dir) {
                    let _ = std::fs::remove_file(&image);
                    return Err(e);
                }
                // fsck's folder is nothing of the session's.
                std::fs::remove_dir(dir.join("lost+found"))
            }
            _ => self.folder.create(),
        }
    }

    /// Mounts the folder's filesystem where it has one that is not
    /// mounted: the host restarted, and the pass mounting every workspace
    /// again at the server's start has not reached this one yet. Until
    /// then the folder is the empty one beneath: a listing of it shows no
    /// files, a commit from it deletes them all, a file written there is
    /// hidden once the filesystem is mounted over it.
    pub fn mount_again(&self) -> std::io::Result<()> {
        if !self.image().exists() || is_mount_point(self.folder.root()) {
            return Ok(());
        }
        let _one_process_at_a_time = lock_beside(self.folder.root())?;
        self.mount_unmounted()
    }

    /// [`Self::mount_again`] off the async threads.
    pub async fn mount_again_apart(self) -> std::io::Result<()> {
        tokio::task::spawn_blocking(move || self.mount_again())
            .await
            .map_err(std::io::Error::other)?
    }

    /// Mounts the image on the folder unless it is (or the image is gone:
    /// the workspace was removed meanwhile); the caller holds
    /// [`lock_beside`].
    fn mount_unmounted(&self) -> std::io::Result<()> {
        let (dir, image) = (self.folder.root(), self.image());
        if !image.exists() || is_mount_point(dir) {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        mount(&image, dir)
    }

    /// Unmounts the filesystem and deletes its image and the folder; a
    /// missing one is fine.
    pub fn remove(&self) -> std::io::Result<()> {
        let dir = self.folder.root();
        let _one_process_at_a_time = lock_beside(dir)?;
        if is_mount_point(dir) {
            unmount(dir)?;
        }
        match std::fs::remove_file(self.image()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Holds the lock of the folder `dir` is in (an advisory lock on its
/// `.disks.lock`, released when the file is dropped): one process at a
/// time makes, mounts or removes a filesystem there. Replicas sharing a
/// workspace root would otherwise both make a session's image, and the one
/// that lost the race to mount would delete the image the other mounted.
fn lock_beside(dir: &Path) -> std::io::Result<std::fs::File> {
    let parent = dir
        .parent()
        .ok_or_else(|| std::io::Error::other("a folder without a parent"))?;
    std::fs::create_dir_all(parent)?;
    crate::sync::lock_file(&parent.join(".disks.lock"))
}

/// Mounts every workspace image under `root` that is not mounted (the host
/// restarted), so that the files people browse, the changes they review
/// and commit, are the workspace's own from the server's start.
fn mount_all(root: &Path, owner: Option<u32>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(session) = name.strip_suffix(".disk") else {
            continue;
        };
        if session.parse::<SessionId>().is_err() {
            continue;
        }
        let disk = DiskFolder::new(ConfinedFolder::new(root.join(session), owner));
        if let Err(e) = disk.mount_again() {
            tracing::warn!(session, "cannot mount the workspace again: {e}");
        }
    }
}

/// A filesystem's own figures where the workspace is one; else its files
/// counted (as allocated on disk, links not followed).
fn usage(dir: &Path) -> std::io::Result<DiskUse> {
    if is_mount_point(dir) {
        let fs = rfs::statvfs(dir)?;
        return Ok(DiskUse {
            used_bytes: (fs.f_blocks - fs.f_bfree) * fs.f_frsize,
            limit_bytes: Some(fs.f_blocks * fs.f_frsize),
        });
    }
    let mut used = 0;
    let mut folders = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > WALK_MAX_ENTRIES {
                break;
            }
            let Ok(stat) = rfs::lstat(entry.path()) else {
                continue;
            };
            used += u64::try_from(stat.st_blocks).unwrap_or(0) * 512;
            if rfs::FileType::from_raw_mode(stat.st_mode) == rfs::FileType::Directory {
                folders.push(entry.path());
            }
        }
    }
    Ok(DiskUse {
        used_bytes: used,
        limit_bytes: None,
    })
}

/// Whether `dir` is where a filesystem is mounted (its device differs from
/// its parent's).
fn is_mount_point(dir: &Path) -> bool {
    let device = |p: &Path| rfs::stat(p).map(|s| s.st_dev).ok();
    match (device(dir), dir.parent().and_then(device)) {
        (Some(d), Some(parent)) => d != parent,
        _ => false,
    }
}

/// A sparse image of `mb` MiB holding an empty ext4 filesystem whose top
/// folder belongs to `owner`: no blocks kept for root, nothing written
/// ahead (the image reads as zeros already).
fn make_image(image: &Path, mb: u64, owner: Option<u32>) -> std::io::Result<()> {
    // Its owner's only: the image's blocks are the workspace's files,
    // whatever their own modes say.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(image)?
        .set_len(mb * 1024 * 1024)?;
    let (uid, gid) = match owner {
        Some(uid) => (uid, uid),
        None => (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ),
    };
    let made = run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-m",
            "0",
            "-E",
            &format!("root_owner={uid}:{gid},lazy_itable_init=1,lazy_journal_init=1"),
            // Multiple-mount protection: a second host mounting the same image
            // (replicas sharing a workspace root) is refused by the kernel.
            "-O",
            "mmp",
        ])
        .arg(image));
    if made.is_err() {
        let _ = std::fs::remove_file(image);
    }
    made
}

fn mount(image: &Path, dir: &Path) -> std::io::Result<()> {
    run(Command::new("mount")
        .args(["-o", "loop,nosuid,nodev,noatime"])
        .arg(image)
        .arg(dir))
}

/// Unmounts `dir`, lazily when something still holds it open (the folder
/// goes now, the filesystem when the last user lets go).
fn unmount(dir: &Path) -> std::io::Result<()> {
    run(Command::new("umount").arg(dir)).or_else(|_| run(Command::new("umount").arg("-l").arg(dir)))
}

fn run(command: &mut Command) -> std::io::Result<()> {
    let out = command.output()?;
    if out.status.success() {
        return Ok(());
    }
    let program = command.get_program().to_string_lossy().into_owned();
    Err(std::io::Error::other(format!(
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Makes, mounts, unmounts and removes a small image under `root`.
fn probe(root: &Path) -> std::result::Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("the server does not run as root, which mounting a filesystem needs".into());
    }
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let probe = format!(".probe-{}", &crate::secret::random_hex()[..12]);
    let image = root.join(format!("{probe}.disk"));
    let dir = root.join(&probe);
    let tried = make_image(&image, 16, None)
        .and_then(|()| std::fs::create_dir_all(&dir))
        .and_then(|()| mount(&image, &dir))
        .and_then(|()| unmount(&dir));
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_dir(&dir);
    tried.map_err(|e| e.to_string())
}
