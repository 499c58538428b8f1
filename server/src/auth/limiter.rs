//! Sign-in attempts, limited per account from one address (an IPv6
//! site), per account from everywhere, per address and per IPv6 site
//! (GCRA, from the governor crate): guessing one person's password from one
//! address, or many people's, slows to a few tries a minute; guessing it
//! from many addresses, to one every two seconds. A site's many /64s
//! together keep within a few attempts a second, so that one holder of a
//! /48 cannot keep the password checks busy for everyone. One guessing from elsewhere holds
//! back that person's own sign-in only at the second limit. Attempts are
//! counted before the password is checked, and for unknown logins too, so
//! the limit says nothing about which accounts exist.

use crate::sync::lock;
use app::domain::AppError;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts per minute for one login from one address.
pub const PER_LOGIN_PER_MINUTE: u32 = 5;
/// Attempts per minute for one login from all addresses together.
pub const PER_LOGIN_EVERYWHERE_PER_MINUTE: u32 = 30;
/// Attempts per minute from one address (behind a reverse proxy, every
/// client shares the proxy's address, hence more).
pub const PER_ADDRESS_PER_MINUTE: u32 = 30;
/// Attempts per minute from one IPv6 site (a /48; an IPv4 address is its
/// own, held to the address's limit first).
pub const PER_SITE_PER_MINUTE: u32 = 120;
/// Refused actions audited per minute for one caller.
pub const REFUSALS_AUDITED_PER_MINUTE: u32 = 10;
/// Keys kept before old ones are dropped.
const MAX_KEYS: usize = 10_000;
/// How often, at most, old keys are looked for: each look reads them all,
/// so a flood of new keys must not make every attempt pay for one.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// A limit per key, whose keys past [`MAX_KEYS`] are dropped once full
/// again.
struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    pruned: Mutex<Instant>,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn per_minute(n: u32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN),
            )),
            pruned: Mutex::new(Instant::now()),
        }
    }

    /// Counts one for `key`: whether it was within the limit.
    fn allows(&self, key: &K) -> bool {
        if self.limiter.len() > MAX_KEYS {
            let mut pruned = lock(&self.pruned);
            if pruned.elapsed() >= PRUNE_EVERY {
                *pruned = Instant::now();
                drop(pruned);
                self.limiter.retain_recent();
            }
        }
        self.limiter.check_key(key).is_ok()
    }
}

/// Which refusals are told (written to the audit log, or logged): one
/// caller retrying in a loop (a watcher's script pressing Stop, a
/// sandbox's process sending a wrong token) is told of a few times a
/// minute, not at the rate it sends.
pub struct RefusalLimiter(Keyed<String>);

impl Default for RefusalLimiter {
    fn default() -> Self {
        Self(Keyed::per_minute(REFUSALS_AUDITED_PER_MINUTE))
    }
}

impl RefusalLimiter {
    /// Counts one refusal of `actor`'s; whether it is told.
    pub fn told(&self, actor: &str) -> bool {
        self.0.allows(&actor.to_owned())
    }
}

pub struct SignInLimiter {
    by_login_from: Keyed<(String, Option<IpAddr>)>,
    by_login: Keyed<String>,
    by_address: Keyed<IpAddr>,
    by_site: Keyed<IpAddr>,
}

impl Default for SignInLimiter {
    fn default() -> Self {
        Self {
            by_login_from: Keyed::per_minute(PER_LOGIN_PER_MINUTE),
            by_login: Keyed::per_minute(PER_LOGIN_EVERYWHERE_PER_MINUTE),
            by_address: Keyed::per_minute(PER_ADDRESS_PER_MINUTE),
            by_site: Keyed::per_minute(PER_SITE_PER_MINUTE),
        }
    }
}

impl SignInLimiter {
    /// Counts one attempt; refused when any limit is reached.
    pub fn attempt(&self, login: &str, address: Option<IpAddr>) -> Result<(), AppError> {
        // Per site (an IPv6 /48): one person commonly holds many /64s.
        let site = address.map(|a| network_of(a, 48));
        let address_ok = address.is_none_or(|a| self.by_address.allows(&network_of(a, 64)))
            && site.is_none_or(|s| self.by_site.allows(&s));
        // Attempts held back by their address count for no login (nor
        // keep a key for one); those held back from one address do not
        // count everywhere: one address alone cannot reach the limit for
        // all.
        let login = login.to_lowercase();
        let login_ok = address_ok
            && self.by_login_from.allows(&(login.clone(), site))
            && self.by_login.allows(&login);
        if login_ok {
            Ok(())
        } else {
            Err(AppError::RateLimited(
                "Too many sign-in attempts. Wait a minute, then try again.".into(),
            ))
        }
    }
}

/// Where attempts are counted from: an IPv4 address, or the network of
/// an IPv6 one's first `bits` (a single machine is commonly given a whole
/// /64, so its addresses are free to change; a site, a /48).
pub(super) fn network_of(address: IpAddr, bits: u32) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << (128 - bits))).into()),
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
        // One login from one site's many /64s counts as from one address.
        let limiter = SignInLimiter::default();
        for i in 0..PER_LOGIN_PER_MINUTE {
            let a: IpAddr = format!("2001:db8:7:{:x}::1", i + 1).parse().unwrap();
            limiter.attempt("ada", Some(a)).unwrap();
        }
        let same_site: IpAddr = "2001:db8:7:ff::1".parse().unwrap();
        assert!(limiter.attempt("ada", Some(same_site)).is_err());
        let elsewhere: IpAddr = "2001:db8:8::1".parse().unwrap();
        assert!(limiter.attempt("ada", Some(elsewhere)).is_ok());
    }

    #[test]
    fn one_sites_many_machines_are_held_back_together() {
        let limiter = SignInLimiter::default();
        // A new /64 and a new login each time: within every other limit.
        let from = |i: u32| -> IpAddr { format!("2001:db8:9:{i:x}::1").parse().unwrap() };
        let allowed = (0..2 * PER_SITE_PER_MINUTE)
            .filter(|i| {
                limiter
                    .attempt(&format!("guess{i}"), Some(from(*i)))
                    .is_ok()
            })
            .count();
        assert_eq!(allowed, PER_SITE_PER_MINUTE as usize);
        let elsewhere: IpAddr = "2001:db8:a::1".parse().unwrap();
        assert!(limiter.attempt("ada", Some(elsewhere)).is_ok());
    }
}
