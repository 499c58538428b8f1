//! Sign-in attempts, limited per account and per address (GCRA, from the
//! governor crate): guessing one person's password, or many people's from
//! one address, slows to a few tries a minute. Attempts are counted before
//! the password is checked, and for unknown logins too, so the limit says
//! nothing about which accounts exist.

use app::domain::AppError;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// Attempts per minute for one login.
pub const PER_LOGIN_PER_MINUTE: u32 = 5;
/// Attempts per minute from one address (behind a reverse proxy, every
/// client shares the proxy's address, hence more).
pub const PER_ADDRESS_PER_MINUTE: u32 = 30;
/// Refused actions audited per minute for one caller.
pub const REFUSALS_AUDITED_PER_MINUTE: u32 = 10;
/// Keys kept before old ones are dropped.
const MAX_KEYS: usize = 10_000;

/// Which refusals are told (written to the audit log, or logged): one
/// caller retrying in a loop (a watcher's script pressing Stop, a
/// sandbox's process sending a wrong token) is told of a few times a
/// minute, not at the rate it sends.
pub struct RefusalLimiter(DefaultKeyedRateLimiter<String>);

impl Default for RefusalLimiter {
    fn default() -> Self {
        Self(RateLimiter::keyed(per_minute(REFUSALS_AUDITED_PER_MINUTE)))
    }
}

impl RefusalLimiter {
    /// Counts one refusal of `actor`'s; whether it is told.
    pub fn told(&self, actor: &str) -> bool {
        if self.0.len() > MAX_KEYS {
            self.0.retain_recent();
        }
        self.0.check_key(&actor.to_owned()).is_ok()
    }
}

pub struct SignInLimiter {
    by_login: DefaultKeyedRateLimiter<String>,
    by_address: DefaultKeyedRateLimiter<IpAddr>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Default for SignInLimiter {
    fn default() -> Self {
        Self {
            by_login: RateLimiter::keyed(per_minute(PER_LOGIN_PER_MINUTE)),
            by_address: RateLimiter::keyed(per_minute(PER_ADDRESS_PER_MINUTE)),
        }
    }
}

impl SignInLimiter {
    /// Counts one attempt; refused when either limit is reached.
    pub fn attempt(&self, login: &str, address: Option<IpAddr>) -> Result<(), AppError> {
        if self.by_login.len() > MAX_KEYS {
            self.by_login.retain_recent();
        }
        if self.by_address.len() > MAX_KEYS {
            self.by_address.retain_recent();
        }
        let address_ok = address.is_none_or(|a| self.by_address.check_key(&network_of(a)).is_ok());
        let login_ok = self.by_login.check_key(&login.to_lowercase()).is_ok();
        if address_ok && login_ok {
            Ok(())
        } else {
            Err(AppError::RateLimited(
                "Too many sign-in attempts. Wait a minute, then try again.".into(),
            ))
        }
    }
}

/// Where attempts are counted from: an IPv4 address, or the /64 network
/// of an IPv6 one (a single machine is commonly given a whole /64, so its
/// addresses are free to change).
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_audited_a_few_a_minute_per_caller() {
        let limiter = RefusalLimiter::default();
        let audited = (0..50).filter(|_| limiter.told("max")).count();
        assert_eq!(audited, REFUSALS_AUDITED_PER_MINUTE as usize);
        assert!(limiter.told("ada"), "another caller's are counted apart");
    }

    #[test]
    fn limits_per_login_and_per_address() {
        let limiter = SignInLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..PER_LOGIN_PER_MINUTE {
            limiter.attempt("ada", Some(a)).unwrap();
        }
        assert!(limiter.attempt("ADA", Some(b)).is_err());
        // Another login from the first address goes on, up to its limit.
        let mut allowed = PER_LOGIN_PER_MINUTE;
        for i in 0..PER_ADDRESS_PER_MINUTE {
            if limiter.attempt(&format!("user{i}"), Some(a)).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, PER_ADDRESS_PER_MINUTE);
        assert!(limiter.attempt("someone-else", Some(a)).is_err());
        assert!(limiter.attempt("someone-else", Some(b)).is_ok());
    }

    #[test]
    fn one_machines_ipv6_addresses_count_as_one() {
        let limiter = SignInLimiter::default();
        for i in 0..PER_ADDRESS_PER_MINUTE {
            let a: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            limiter.attempt(&format!("user{i}"), Some(a)).unwrap();
        }
        let same: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(limiter.attempt("another", Some(same)).is_err());
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.attempt("another", Some(other)).is_ok());
    }
}
