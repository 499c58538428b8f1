//! A change watch on a workspace (`/fs/watch`): every folder under it
//! watched with inotify, links never followed, and the paths made,
//! written, moved or deleted reported in batches.
//!
//! Bounded, since every sandbox's agent is the same user and so shares the
//! kernel's inotify limits with the others:
//! - at most [`FOLDERS_MAX`] folders are watched, nearest the root first
//!   (a change in one past it goes unseen, which the batches say), and
//!   never `.git` (git writes many files that are not the work) nor a
//!   folder whose name is not UTF-8;
//! - a batch names at most [`BATCH_MAX_PATHS`] paths of at most
//!   [`BATCH_MAX_BYTES`] in all; past it, or when the kernel's queue
//!   overflowed, it says that more changed;
//! - folders are walked (at the start, when one is made or moved in, after
//!   an overflow) on a blocking thread, never the agent's own.

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// Folders watched at most.
pub const FOLDERS_MAX: usize = 2048;
/// Paths one batch names at most, and their bytes together.
pub const BATCH_MAX_PATHS: usize = 100;
pub const BATCH_MAX_BYTES: usize = 16 * 1024;
/// Folders never watched, wherever they are.
const UNWATCHED: &[&str] = &[".git"];
/// Events read at most before the others get a turn.
const EVENTS_PER_READ: usize = 4096;

/// What changed in the workspace, as one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The paths' bytes as JSON, counted as they are added.
    #[serde(skip)]
    bytes: usize,
    /// Paths from the workspace's root (`src/a.rs`), sorted.
    pub paths: Vec<String>,
    /// More changed than is named (too many, or the kernel dropped some):
    /// anything may have.
    pub more: bool,
    /// Some folders are not watched (past [`FOLDERS_MAX`], the kernel's
    /// limit, or not UTF-8): a change in them goes unseen.
    pub partial: bool,
}

impl Changes {
    fn add(&mut self, path: String) {
        if self.more || self.paths.contains(&path) {
            return;
        }
        // As sent: a control character is six bytes of JSON.
        let bytes = serde_json::to_string(&path).map_or(usize::MAX, |json| json.len() + 1);
        if self.paths.len() < BATCH_MAX_PATHS && self.bytes.saturating_add(bytes) <= BATCH_MAX_BYTES
        {
            self.bytes += bytes;
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

/// Whether `path` is `folder` or inside it.
fn within(path: &str, folder: &str) -> bool {
    path == folder
        || path
            .strip_prefix(folder)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The folders under `folder` (from `root`), nearest first, as deep as
/// they go without following a link, at most `max`: and whether some
/// were left out (too many, or names that are not UTF-8).
fn folders_below(root: &Path, folder: &str, max: usize) -> (Vec<String>, bool) {
    let (mut found, mut left_out) = (Vec::new(), false);
    let mut queue = VecDeque::from([folder.to_owned()]);
    while let Some(folder) = queue.pop_front() {
        let Ok(entries) = std::fs::read_dir(root.join(&folder)) else {
            continue;
        };
        for entry in entries.flatten() {
            // The entry's own type: a link to a folder is not one.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(name) = entry.file_name().into_string() else {
                left_out = true;
                continue;
            };
            if UNWATCHED.contains(&name.as_str()) {
                continue;
            }
            if found.len() >= max {
                return (found, true);
            }
            let path = join(&folder, &name);
            found.push(path.clone());
            queue.push_back(path);
        }
    }
    (found, left_out)
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
        let wd = inotify::add_watch(watch.fd.get_ref(), root, events())?;
        watch.folders.insert(wd, String::new());
        let (below, left_out) = folders_below(root, "", FOLDERS_MAX - 1);
        watch.partial |= left_out;
        watch.add(below);
        Ok(watch)
    }

    /// Watches `folders` (from the root), as many as there is room for.
    fn add(&mut self, folders: Vec<String>) {
        for folder in folders {
            if self.folders.len() >= FOLDERS_MAX {
                self.partial = true;
                return;
            }
            match inotify::add_watch(self.fd.get_ref(), self.root.join(&folder), events()) {
                Ok(wd) => {
                    self.folders.insert(wd, folder);
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

    /// Watches the folders `made` (from the root) and those under them,
    /// walked on a blocking thread.
    async fn add_trees(&mut self, made: Vec<String>) {
        let (root, room) = (
            self.root.clone(),
            FOLDERS_MAX.saturating_sub(self.folders.len()),
        );
        let walked = tokio::task::spawn_blocking(move || {
            let (mut all, mut left_out) = (Vec::new(), false);
            for folder in made {
                let (below, more) =
                    folders_below(&root, &folder, room.saturating_sub(all.len() + 1));
                all.push(folder);
                all.extend(below);
                left_out |= more;
            }
            (all, left_out)
        })
        .await;
        match walked {
            Ok((folders, left_out)) => {
                self.partial |= left_out;
                self.add(folders);
            }
            Err(_) => self.partial = true,
        }
    }

    /// Watches every folder there is now, and no other: after an overflow,
    /// folders made (or gone) meanwhile are not known. The kernel gives a
    /// folder watched already its own number back.
    async fn rescan(&mut self) {
        let root = self.root.clone();
        let Ok((below, left_out)) =
            tokio::task::spawn_blocking(move || folders_below(&root, "", FOLDERS_MAX - 1)).await
        else {
            self.partial = true;
            return;
        };
        let before = std::mem::take(&mut self.folders);
        self.partial = left_out;
        self.add(std::iter::once(String::new()).chain(below).collect());
        for wd in before.keys().filter(|wd| !self.folders.contains_key(wd)) {
            let _ = inotify::remove_watch(self.fd.get_ref(), *wd);
        }
    }

    /// Waits until the kernel has events (leaving them to [`Self::read`]).
    async fn ready(&self) -> std::io::Result<()> {
        self.fd.readable().await.map(drop)
    }

    /// Stops watching `folder` and the folders in it (moved away).
    fn forget(&mut self, folder: &str) {
        let gone: Vec<i32> = self
            .folders
            .iter()
            .filter(|(_, path)| within(path, folder))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            self.folders.remove(&wd);
            let _ = inotify::remove_watch(self.fd.get_ref(), wd);
        }
    }

    /// The next batch: waits for a first change, then gathers those that
    /// come within `settle` of it. An error once the workspace itself is
    /// gone.
    pub async fn next(&mut self, settle: Duration) -> std::io::Result<Changes> {
        let mut batch = Changes::default();
        while batch.paths.is_empty() && !batch.more {
            self.read(&mut batch).await?;
        }
        // Only the wait is bounded: what was read is handled whole.
        let until = tokio::time::Instant::now() + settle;
        while let Ok(ready) = tokio::time::timeout_at(until, self.ready()).await {
            ready?;
            self.read(&mut batch).await?;
        }
        batch.paths.sort();
        batch.partial = self.partial;
        Ok(batch)
    }

    /// Waits until the kernel has events, and reads them into `batch`
    /// (at most [`EVENTS_PER_READ`]); folders made or moved in are watched
    /// too, those moved away no more.
    async fn read(&mut self, batch: &mut Changes) -> std::io::Result<()> {
        let mut guard = self.fd.readable().await?;
        let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
        let (mut made, mut moved_away, mut overflowed) = (Vec::new(), Vec::new(), false);
        let mut reader = inotify::Reader::new(guard.get_inner(), &mut buf);
        let (mut drained, mut read) = (false, 0usize);
        // What the reader holds is read whole, however many there are.
        while read < EVENTS_PER_READ || !reader.is_buffer_empty() {
            read += 1;
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::WOULDBLOCK) => {
                    drained = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                batch.more = true;
                overflowed = true;
                continue;
            }
            if flags.contains(ReadFlags::IGNORED) {
                if self.folders.remove(&event.wd()).as_deref() == Some("") {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the workspace itself is gone",
                    ));
                }
                continue;
            }
            let (Some(folder), Some(name)) = (self.folders.get(&event.wd()), event.file_name())
            else {
                continue;
            };
            let Ok(name) = name.to_str() else {
                // Not UTF-8: not named, and a folder of it not watched.
                self.partial |= flags.contains(ReadFlags::ISDIR);
                batch.more = true;
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let path = join(folder, name);
            if flags.contains(ReadFlags::ISDIR) && !UNWATCHED.contains(&name) {
                if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                    made.push(path.clone());
                } else if flags.contains(ReadFlags::MOVED_FROM) {
                    moved_away.push(path.clone());
                }
            }
            batch.add(path);
        }
        if drained {
            guard.clear_ready();
        }
        drop(guard);
        for folder in moved_away {
            self.forget(&folder);
        }
        if overflowed {
            self.rescan().await;
        } else if !made.is_empty() {
            self.add_trees(made).await;
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
        // A folder moved within is known by its new path.
        std::fs::rename(root.join("new"), root.join("renamed")).unwrap();
        assert_eq!(next(&mut watch).await.paths, ["new", "renamed"]);
        std::fs::write(root.join("renamed/c.txt"), "c").unwrap();
        assert_eq!(next(&mut watch).await.paths, ["renamed/c.txt"]);
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

        // The workspace itself gone: the watch ends.
        drop(dir);
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if watch.next(SETTLE).await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(ended.is_ok());
    }

    #[tokio::test]
    async fn an_overflow_says_more_and_folders_made_meanwhile_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut watch = Watch::new(root).unwrap();
        // More than the kernel queues while nothing reads (16,384 by
        // default), and a folder made among them.
        let queued = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(16_384);
        std::fs::create_dir(root.join("late")).unwrap();
        for i in 0..=queued {
            std::fs::File::create(root.join(format!("f{i}"))).unwrap();
        }
        let flood = next(&mut watch).await;
        assert!(flood.more, "{:?}", flood.paths.len());
        std::fs::write(root.join("late/x"), "x").unwrap();
        let mut seen = next(&mut watch).await;
        while !seen.paths.contains(&"late/x".to_owned()) {
            seen = next(&mut watch).await;
        }
        assert!(!seen.partial);
    }

    #[test]
    fn folders_are_walked_nearest_first_within_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c/d")).unwrap();
        std::fs::create_dir_all(dir.path().join("z")).unwrap();
        let (found, left_out) = folders_below(dir.path(), "", 3);
        assert_eq!(found.len(), 3);
        assert!(found.contains(&"a".to_owned()) && found.contains(&"z".to_owned()));
        assert!(left_out);
        let (all, left_out) = folders_below(dir.path(), "", 100);
        assert_eq!(all.len(), 5);
        assert!(!left_out);
        assert!(within("a/b", "a") && within("a", "a") && !within("ab", "a"));
    }
}
