//! How many deliveries each trigger accepts (GCRA, from the governor
//! crate, keyed by trigger): past the rate, a delivery is answered 429 with
//! the seconds to wait ([`crate::triggers`]).

use app::triggers::TriggerId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// Emails read at once, server-wide: each may bring 40 MiB on the wire and
/// keep 14 MiB, and anyone may email an inbound address (its provider
/// adds the URL's password), so a flood is read a few at a time.
pub const EMAIL_READS_AT_ONCE: usize = 4;
/// How long an email waits for its turn to be read (or to be kept, below)
/// before its sender is asked to send it again (503).
pub const EMAIL_READ_WAIT: Duration = Duration::from_secs(10);
/// What the emails being handled keep at once, server-wide (their
/// attachments and text, until their prompt is queued), in KiB: a
/// handling may wait minutes for its session's workspace (a clone), so a
/// flood of emails, each read in turn, would otherwise all be held.
pub const EMAIL_KEPT_MAX_KIB: u32 = 128 * 1024;

/// Deliveries admitted per trigger and minute, and refusals (deliveries
/// whose signature does not hold, audited up to the same rate): past
/// either, 429. A stranger's flood of bad signatures stops neither the
/// trigger's real deliveries nor the audit log's size.
pub struct DeliveryLimiter {
    accepted: DefaultKeyedRateLimiter<TriggerId>,
    refused: DefaultKeyedRateLimiter<TriggerId>,
    email_reads: Semaphore,
    email_kept: Arc<Semaphore>,
}

impl DeliveryLimiter {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            accepted: RateLimiter::keyed(quota),
            refused: RateLimiter::keyed(quota),
            email_reads: Semaphore::new(EMAIL_READS_AT_ONCE),
            email_kept: Arc::new(Semaphore::new(EMAIL_KEPT_MAX_KIB as usize)),
        }
    }

    /// A turn to read an email's body, held while it is read; none if
    /// others held them all for [`EMAIL_READ_WAIT`].
    pub async fn email_read(&self) -> Option<SemaphorePermit<'_>> {
        tokio::time::timeout(EMAIL_READ_WAIT, self.email_reads.acquire())
            .await
            .ok()?
            .ok()
    }

    /// Room for an email's `bytes` while it is handled, held until its
    /// handling ends; none if others held it all for [`EMAIL_READ_WAIT`].
    pub async fn email_keep(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(EMAIL_KEPT_MAX_KIB);
        let room = self.email_kept.clone().acquire_many_owned(kib);
        tokio::time::timeout(EMAIL_READ_WAIT, room).await.ok()?.ok()
    }

    /// Counts a delivery; refused with the seconds to wait.
    pub fn admit(&self, trigger: TriggerId) -> Result<(), u64> {
        check(&self.accepted, trigger)
    }

    /// Counts a refusal; past the rate, the seconds to wait.
    pub fn admit_refusal(&self, trigger: TriggerId) -> Result<(), u64> {
        check(&self.refused, trigger)
    }
}

fn check(limiter: &DefaultKeyedRateLimiter<TriggerId>, trigger: TriggerId) -> Result<(), u64> {
    use governor::clock::Clock;
    limiter.check_key(&trigger).map_err(|not_until| {
        let wait = not_until.wait_time_from(limiter.clock().now());
        // Whole seconds, rounded up: a sender that waits them is let in.
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    })
}
