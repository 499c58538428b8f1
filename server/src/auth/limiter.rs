//! Sign-in attempts, limited per account from one address, per account
//! from everywhere, and per address (GCRA, from the governor crate):
//! guessing one person's password from one address, or many people's,
//! slows to a few tries a minute; guessing it from many addresses, to a
//! few a second. One guessing from elsewhere holds back that person's own
//! sign-in only at the second limit. Attempts are counted before the
//! password is checked, and for unknown logins too, so the limit says
//! nothing about which accounts exist.

use app::domain::AppError;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// Attempts per minute for one login from one address.
pub const PER_LOGIN_PER_MINUTE: u32 = 5;
/// Attempts per minute for one login from all addresses together.
pub const PER_LOGIN_EVERYWHERE_PER_MINUTE: u32 = 60;
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
    by_login_from: DefaultKeyedRateLimiter<(String, Option<IpAddr>)>,
    by_login: DefaultKeyedRateLimiter<String>,
    by_address: DefaultKeyedRateLimiter<IpAddr>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Default for SignInLimiter {
    fn default() -> Self {
        Self {
            by_login_from: RateLimiter::keyed(per_minute(PER_LOGIN_PER_MINUTE)),
            by_login: RateLimiter::keyed(per_minute(PER_LOGIN_EVERYWHERE_PER_MINUTE)),
            by_address: RateLimiter::keyed(per_minute(PER_ADDRESS_PER_MINUTE)),
        }
    }
}

impl SignInLimiter {
    /// Counts one attempt; refused when either limit is reached.
    pub fn attempt(&self, login: &str, address: Option<IpAddr>) -> Result<(), AppError> {
        if self.by_login_from.len() > MAX_KEYS {
            self.by_login_from.retain_recent();
        }
        if self.by_login.len() > MAX_KEYS {
            self.by_login.retain_recent();
        }
        if self.by_address.len() > MAX_KEYS {
            self.by_address.retain_recent();
        }
        let (login, network) = (login.to_lowercase(), address.map(network_of));
        let address_ok = network.is_none_or(|n| self.by_address.check_key(&n).is_ok());
        let from_ok = self
            .by_login_from
            .check_key(&(login.clone(), network))
            .is_ok();
        // Attempts held back from one address do not count everywhere:
        // one address alone cannot reach the limit for all.
        let login_ok = from_ok && self.by_login.check_key(&login).is_ok();
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
        assert!(limiter.attempt("ADA", Some(a)).is_err());
        // From another address the same login goes on.
        limiter.attempt("ADA", Some(b)).unwrap();
        // Another login from the first address goes on, up to its limit
        // (the attempt refused above counts there too).
        let mut counted = PER_LOGIN_PER_MINUTE + 1;
        for i in 0..PER_ADDRESS_PER_MINUTE {
            if limiter.attempt(&format!("user{i}"), Some(a)).is_ok() {
                counted += 1;
            }
        }
        assert_eq!(counted, PER_ADDRESS_PER_MINUTE);
        assert!(limiter.attempt("someone-else", Some(a)).is_err());
        assert!(limiter.attempt("someone-else", Some(b)).is_ok());
    }

    #[test]
    fn one_login_guessed_from_many_addresses_is_held_back_for_all() {
        let limiter = SignInLimiter::default();
        let from = |i: u32| Some(IpAddr::from([198, 51, 100, i as u8]));
        // Each address beyond its own limit: those do not count for all.
        for i in 0..3 * PER_LOGIN_EVERYWHERE_PER_MINUTE {
            let _ = limiter.attempt("ada", from(0));
            let _ = limiter.attempt("ada", from(i % 2 + 1));
        }
        limiter.attempt("ada", from(200)).unwrap();
        let mut allowed = 1;
        for i in 0..PER_LOGIN_EVERYWHERE_PER_MINUTE {
            if limiter.attempt("ada", from(i + 3)).is_ok() {
                allowed += 1;
            }
        }
        assert!(
            allowed < PER_LOGIN_EVERYWHERE_PER_MINUTE,
            "held back at the limit for all: {allowed}"
        );
        assert!(limiter.attempt("ada", from(250)).is_err());
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
