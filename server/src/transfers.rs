//! Workspace transfers running now: archives streamed, uploads received and
//! files downloaded hold a thread, an upload's bytes or an open file (one
//! of a remote sandbox's few streams) while they run, and a folder listed
//! or a file shown holds the whole of it (up to megabytes each), so only
//! so many run at once, server-wide, and fewer for one signed-in person,
//! so that nobody holds them all (a client reading a byte now and then
//! keeps its slot).

use crate::sync::lock;
use app::domain::{AppError, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Archives streamed, uploads received, files downloaded, and folders
/// listed or files shown at once.
const ARCHIVES_AT_ONCE: usize = 8;
const UPLOADS_AT_ONCE: usize = 4;
const FILES_AT_ONCE: usize = 32;
const VIEWS_AT_ONCE: usize = 16;
/// Of those, what one person may hold (a browser opens six connections
/// to a site at most: views are not refused to one).
const ARCHIVES_PER_PERSON: usize = 2;
const UPLOADS_PER_PERSON: usize = 2;
const FILES_PER_PERSON: usize = 4;
const VIEWS_PER_PERSON: usize = 6;

/// The workspace archives, uploads, file downloads and views running now,
/// bounded.
#[derive(Clone)]
pub struct Transfers {
    archives: Bounded,
    uploads: Bounded,
    files: Bounded,
    views: Bounded,
}

impl Default for Transfers {
    fn default() -> Self {
        Self {
            archives: Bounded::new(ARCHIVES_AT_ONCE, ARCHIVES_PER_PERSON, "workspace downloads"),
            uploads: Bounded::new(UPLOADS_AT_ONCE, UPLOADS_PER_PERSON, "uploads"),
            files: Bounded::new(FILES_AT_ONCE, FILES_PER_PERSON, "file downloads"),
            views: Bounded::new(
                VIEWS_AT_ONCE,
                VIEWS_PER_PERSON,
                "folder listings and file views",
            ),
        }
    }
}

impl Transfers {
    /// A slot for one archive for `who` (`None`: the local operator, with
    /// sign-in off), held until it is dropped.
    pub fn archive(&self, who: Option<UserId>) -> Result<TransferSlot, AppError> {
        self.archives.take(who)
    }

    /// A slot for one upload, as [`Self::archive`].
    pub fn upload(&self, who: Option<UserId>) -> Result<TransferSlot, AppError> {
        self.uploads.take(who)
    }

    /// A slot for one file's download, as [`Self::archive`].
    pub fn file(&self, who: Option<UserId>) -> Result<TransferSlot, AppError> {
        self.files.take(who)
    }

    /// A slot for one folder's listing or one file's view, as
    /// [`Self::archive`].
    pub fn view(&self, who: Option<UserId>) -> Result<TransferSlot, AppError> {
        self.views.take(who)
    }
}

/// Transfers of one kind: at most so many at once, and so many a person.
#[derive(Clone)]
struct Bounded {
    all: Arc<Semaphore>,
    per_person: usize,
    held: Held,
    what: &'static str,
}

/// How many slots each person holds.
type Held = Arc<Mutex<HashMap<UserId, usize>>>;

impl Bounded {
    fn new(at_once: usize, per_person: usize, what: &'static str) -> Self {
        Self {
            all: Arc::new(Semaphore::new(at_once)),
            per_person,
            held: Held::default(),
            what,
        }
    }

    fn take(&self, who: Option<UserId>) -> Result<TransferSlot, AppError> {
        let what = self.what;
        let permit = self.all.clone().try_acquire_owned().map_err(|_| {
            AppError::Unavailable(format!(
                "Too many {what} are running at once; try again in a moment."
            ))
        })?;
        let person = match who {
            Some(user) => {
                let mut held = lock(&self.held);
                let mine = held.entry(user).or_default();
                if *mine >= self.per_person {
                    return Err(AppError::Unavailable(format!(
                        "You have {} {what} running already; try again once one ends.",
                        self.per_person
                    )));
                }
                *mine += 1;
                Some((self.held.clone(), user))
            }
            None => None,
        };
        Ok(TransferSlot {
            _permit: permit,
            person,
        })
    }
}

/// One transfer's place, given back when dropped.
pub struct TransferSlot {
    _permit: OwnedSemaphorePermit,
    person: Option<(Held, UserId)>,
}

impl Drop for TransferSlot {
    fn drop(&mut self) {
        if let Some((held, user)) = &self.person {
            let mut held = lock(held);
            if let Some(mine) = held.get_mut(user) {
                *mine -= 1;
                if *mine == 0 {
                    held.remove(user);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Views (as every kind): a person's few at once, everyone's more, each
    /// place given back when its slot is dropped.
    #[test]
    fn views_are_bounded_per_person_and_in_all() {
        let transfers = Transfers::default();
        let person = || Some(uuid::Uuid::now_v7());
        let ada = person();
        let mut held: Vec<TransferSlot> = (0..VIEWS_PER_PERSON)
            .map(|_| transfers.view(ada).unwrap())
            .collect();
        assert!(matches!(transfers.view(ada), Err(AppError::Unavailable(_))));
        held.pop();
        held.push(transfers.view(ada).unwrap());
        while held.len() < VIEWS_AT_ONCE {
            held.push(transfers.view(person()).unwrap());
        }
        assert!(matches!(
            transfers.view(person()),
            Err(AppError::Unavailable(_))
        ));
        assert!(matches!(
            transfers.view(None),
            Err(AppError::Unavailable(_))
        ));
        // Another kind is counted apart.
        assert!(transfers.file(person()).is_ok());
        held.clear();
        assert!(transfers.view(ada).is_ok());
    }
}
