//! A change watch on a workspace (`/fs/watch`): every folder under it
//! watched with inotify, links never followed, and the paths made,
//! written, moved or deleted reported in batches.
//!
//! Bounded: at most [`FOLDERS_MAX`] folders are watched (a change in one
//! past it goes unseen, which the batches say), `.git` folders are not
//! (git writes many files that are not the work), and a batch names at
//! most [`BATCH_MAX_PATHS`] paths; past it, or when the kernel's queue
//! overflowed, it says that more changed.

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// Folders watched at most.
pub const FOLDERS_MAX: usize = 4096;
/// Paths one batch names at most.
pub const BATCH_MAX_PATHS: usize = 100;
/// Folders never watched, wherever they are.
const UNWATCHED: &[&str] = &[".git"];

/// What changed in the workspace, as one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// Paths from the workspace's root (`src/a.rs`), sorted.
    pub paths: Vec<String>,
    /// More changed than is named (too many, or the kernel dropped some):
    /// anything may have.
    pub more: bool,
    /// Some folders are not watched (past [`FOLDERS_MAX`], or the
    /// kernel's limit): a change in them goes unseen.
    pub partial: bool,
}

impl Changes {
    fn add(&mut self, path: String) {
        if self.paths.contains(&path) {
            return;
        }
        if self.paths.len() < BATCH_MAX_PATHS {
            self.paths.push(path);
        } else {
            self.more = true;
        }
    }
}

/// What the kernel is asked to report of each folder.
fn events() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MODIFY
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW
        | WatchFlags::EXCL_UNLINK
}

pub struct Watch {
    fd: AsyncFd<OwnedFd>,
    root: PathBuf,
    /// Each watched folder, from the root (`""`: the root).
    folders: HashMap<i32, String>,
    partial: bool,
}

fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}

impl Watch {
    /// Watches `root` and every folder under it (it walks them: call it
    /// off the async threads). Must be called in a Tokio runtime.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        // Deprecated as unsound for a `T` whose descriptor may change or
        // close while registered; an `OwnedFd` it owns cannot (and the
        // registering alternative is `unsafe`, which this crate forbids).
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        let mut watch = Self {
            fd,
            root: root.to_owned(),
            folders: HashMap::new(),
            partial: false,
        };
        inotify::add_watch(watch.fd.get_ref(), root, events())
            .map(|wd| watch.folders.insert(wd, String::new()))?;
        watch.add_below("");
        Ok(watch)
    }

    /// Watches the folders under `folder` (from the root), as deep as they
    /// go, without following a link.
    fn add_below(&mut self, folder: &str) {
        let mut stack = vec![folder.to_owned()];
        while let Some(folder) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(self.root.join(&folder)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // The entry's own type: a link to a folder is not one.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) || UNWATCHED.contains(&&*name) {
                    continue;
                }
                if self.folders.len() >= FOLDERS_MAX {
                    self.partial = true;
                    return;
                }
                let path = join(&folder, &name);
                match inotify::add_watch(self.fd.get_ref(), self.root.join(&path), events()) {
                    Ok(wd) => {
                        self.folders.insert(wd, path.clone());
                        stack.push(path);
                    }
                    Err(Errno::NOSPC) => {
                        self.partial = true;
                        return;
                    }
                    // Gone meanwhile, or replaced by a link.
                    Err(_) => {}
                }
            }
        }
    }

    /// The next batch: waits for a first change, then gathers those that
    /// come within `settle` of it.
    pub async fn next(&mut self, settle: Duration) -> std::io::Result<Changes> {
        let mut batch = Changes::default();
        while batch.paths.is_empty() && !batch.more {
            self.read(&mut batch).await?;
        }
        let until = tokio::time::Instant::now() + settle;
        while let Ok(read) = tokio::time::timeout_at(until, self.read(&mut batch)).await {
            read?;
        }
        batch.paths.sort();
        batch.partial = self.partial;
        Ok(batch)
    }

    /// Waits until the kernel has events, and reads all it has into
    /// `batch`; a new folder is watched too.
    async fn read(&mut self, batch: &mut Changes) -> std::io::Result<()> {
        let mut guard = self.fd.readable().await?;
        let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
        let mut made = Vec::new();
        let mut reader = inotify::Reader::new(guard.get_inner(), &mut buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::WOULDBLOCK) => break,
                Err(e) => return Err(e.into()),
            };
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                batch.more = true;
                continue;
            }
            if flags.contains(ReadFlags::IGNORED) {
                self.folders.remove(&event.wd());
                continue;
            }
            let (Some(folder), Some(name)) = (self.folders.get(&event.wd()), event.file_name())
            else {
                continue;
            };
            let name = name.to_string_lossy();
            if name.is_empty() {
                continue;
            }
            let path = join(folder, &name);
            if flags.contains(ReadFlags::ISDIR)
                && flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO)
                && !UNWATCHED.contains(&&*name)
            {
                made.push(path.clone());
            }
            batch.add(path);
        }
        guard.clear_ready();
        for folder in made {
            if self.folders.len() >= FOLDERS_MAX {
                self.partial = true;
                break;
            }
            if let Ok(wd) = inotify::add_watch(self.fd.get_ref(), self.root.join(&folder), events())
            {
                self.folders.insert(wd, folder.clone());
                self.add_below(&folder);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_millis(100);

    async fn next(watch: &mut Watch) -> Changes {
        tokio::time::timeout(Duration::from_secs(5), watch.next(SETTLE))
            .await
            .expect("a change within 5 s")
            .unwrap()
    }

    #[tokio::test]
    async fn changes_come_in_batches_from_every_folder_and_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("link")).unwrap();
        let mut watch = Watch::new(root).unwrap();
        assert_eq!(watch.folders.len(), 3, "{:?}", watch.folders);

        std::fs::write(root.join("src/deep/a.rs"), "a").unwrap();
        std::fs::write(root.join("top.txt"), "t").unwrap();
        let batch = next(&mut watch).await;
        assert_eq!(batch.paths, ["src/deep/a.rs", "top.txt"]);
        assert!(!batch.more && !batch.partial);

        // A folder made now is watched too; git's own files are not named.
        std::fs::create_dir(root.join("new")).unwrap();
        std::fs::write(root.join(".git/objects/x"), "x").unwrap();
        assert_eq!(next(&mut watch).await.paths, ["new"]);
        std::fs::write(root.join("new/b.txt"), "b").unwrap();
        std::fs::rename(root.join("top.txt"), root.join("src/moved.txt")).unwrap();
        assert_eq!(
            next(&mut watch).await.paths,
            ["new/b.txt", "src/moved.txt", "top.txt"]
        );
        std::fs::remove_dir_all(root.join("src")).unwrap();
        let gone = next(&mut watch).await;
        assert!(gone.paths.contains(&"src".to_owned()), "{gone:?}");

        // Past the batch's size: named up to it, and said to be more.
        for i in 0..(BATCH_MAX_PATHS + 20) {
            std::fs::write(root.join(format!("f{i:03}")), "x").unwrap();
        }
        let many = next(&mut watch).await;
        assert_eq!(many.paths.len(), BATCH_MAX_PATHS);
        assert!(many.more);
    }
}
