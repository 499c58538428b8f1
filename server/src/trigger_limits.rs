//! How many deliveries each trigger accepts (GCRA, from the governor
//! crate, keyed by trigger): past the rate, a delivery is answered 429 with
//! the seconds to wait ([`crate::triggers`]).

use app::triggers::TriggerId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// Deliveries admitted per trigger and minute, and refusals (deliveries
/// whose signature does not hold, audited up to the same rate): past
/// either, 429. A stranger's flood of bad signatures stops neither the
/// trigger's real deliveries nor the audit log's size.
pub struct DeliveryLimiter {
    accepted: DefaultKeyedRateLimiter<TriggerId>,
    refused: DefaultKeyedRateLimiter<TriggerId>,
}

impl DeliveryLimiter {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            accepted: RateLimiter::keyed(quota),
            refused: RateLimiter::keyed(quota),
        }
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
