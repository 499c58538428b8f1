//! How many deliveries each trigger accepts (GCRA, from the governor
//! crate, keyed by trigger): past the rate, a delivery is answered 429 with
//! the seconds to wait ([`crate::triggers`]).

use app::triggers::TriggerId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// Deliveries admitted per trigger and minute; past it, 429.
pub struct DeliveryLimiter(DefaultKeyedRateLimiter<TriggerId>);

impl DeliveryLimiter {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self(RateLimiter::keyed(quota))
    }

    /// Counts one; refused with the seconds to wait.
    pub fn admit(&self, trigger: TriggerId) -> Result<(), u64> {
        self.0.check_key(&trigger).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            wait.as_secs().max(1)
        })
    }
}
