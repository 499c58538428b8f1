//! The bus's notifications heard lately ([`super`]): one heard before (a
//! replay of one another role of the database listened to) or sent out of
//! its time is told apart from a new one.

use std::time::Duration;

/// How old a notification may be, by its sender's clock against the
/// receiver's (replicas' clocks agree within it, and a receiver is not held
/// up for longer): an older one is dropped as a replay (and its receiver
/// told it may have missed something), and those heard within it are told
/// apart by their nonce.
pub const FRESH_WITHIN: Duration = Duration::from_secs(600);

/// A notification's nonce as its payload begins: 32 characters of base64.
pub type Nonce = [u8; 32];

/// The notifications heard lately, by their nonce, each kept until its
/// age would refuse it anyway.
#[derive(Default)]
pub struct Heard {
    /// Nonces with when they may be forgotten, in the order heard.
    order: std::collections::VecDeque<(i64, Nonce)>,
    nonces: std::collections::HashSet<Nonce>,
}

/// How a notification is taken.
#[derive(Debug, PartialEq)]
pub enum Heeded {
    New,
    /// Heard before: a replay.
    Again,
    /// Sent more than [`FRESH_WITHIN`] ago, or as far ahead.
    Stale,
}

impl Heard {
    /// How a notification sent `at` with `nonce` is taken `now` (both in
    /// milliseconds since 1970).
    pub fn heed(&mut self, nonce: Nonce, at: i64, now: i64) -> Heeded {
        let window = FRESH_WITHIN.as_millis() as i64;
        // (Forgotten once neither clock would call it fresh: a sender's
        // clock ahead of this one's keeps it longer.)
        while self.order.front().is_some_and(|(until, _)| *until < now) {
            if let Some((_, old)) = self.order.pop_front() {
                self.nonces.remove(&old);
            }
        }
        if at.abs_diff(now) > window as u64 {
            return Heeded::Stale;
        }
        if !self.nonces.insert(nonce) {
            return Heeded::Again;
        }
        // Kept in the order heard, so pruned a little late at worst.
        let until = at.max(now) + window;
        self.order.push_back((until, nonce));
        Heeded::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(c: u8) -> Nonce {
        [c; 32]
    }

    /// A notification heard again, or sent long ago, is not heard.
    #[test]
    fn replays_and_old_notifications_are_not_heard() {
        let mut heard = Heard::default();
        let now = 1_000_000_000;
        let window = FRESH_WITHIN.as_millis() as i64;
        assert_eq!(heard.heed(nonce(b'a'), now, now), Heeded::New);
        assert_eq!(heard.heed(nonce(b'a'), now, now + 1), Heeded::Again);
        assert_eq!(
            heard.heed(nonce(b'b'), now - window + 1, now + 1),
            Heeded::New
        );
        assert_eq!(
            heard.heed(nonce(b'c'), now - window - 1, now),
            Heeded::Stale
        );
        assert_eq!(
            heard.heed(nonce(b'd'), now + window + 1, now),
            Heeded::Stale
        );
        // From a sender whose clock is ahead: kept as long as that clock
        // would call it fresh, past this one's window.
        let ahead = 30_000;
        assert_eq!(heard.heed(nonce(b'e'), now + ahead, now), Heeded::New);
        assert_eq!(
            heard.heed(nonce(b'e'), now + ahead, now + window + 1),
            Heeded::Again
        );
        // Forgotten once past the window, where its age refuses it anyway.
        assert_eq!(
            heard.heed(nonce(b'a'), now, now + window + ahead + 10),
            Heeded::Stale
        );
        assert!(heard.nonces.is_empty() && heard.order.is_empty());
    }
}
