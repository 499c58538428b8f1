//! Locks shared across tasks, and across the processes (replicas) that
//! share a folder.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, also after a holder panicked: every critical section in
/// Paddock is a single map or counter operation, so the data stays
/// consistent and a poisoned lock is as good as any.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Holds an advisory lock on the file at `path` (made if missing) until
/// the returned file is dropped: one process at a time, for what replicas
/// sharing a folder must not do at once. It blocks: call it off the async
/// threads.
pub fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    let file = lock_target(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(file)
}

/// [`lock_file`] if no one holds the lock now, without waiting: `None`
/// when someone does.
pub fn try_lock_file(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = lock_target(path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The file a lock is held on, made if missing.
fn lock_target(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}
