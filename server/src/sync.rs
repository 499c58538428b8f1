//! Locks shared across tasks.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, also after a holder panicked: every critical section in
/// Paddock is a single map or counter operation, so the data stays
/// consistent and a poisoned lock is as good as any.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
