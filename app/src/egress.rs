//! A session's network allowlist: the hosts its sandbox may reach, through
//! Paddock's egress proxy, and nothing else. Each entry is a host name
//! (`mirror.example.com`), or every name under one (`*.github.com`),
//! either with a port (`registry.example.com:8443`) or without one (then
//! ports 80 and 443). Empty, the default: no network at all. Names only: an IP address
//! names nobody the owner chose, and is refused.

use std::fmt;
use std::str::FromStr;

/// Entries a session's allowlist holds at most.
pub const EGRESS_MAX: usize = 64;

/// One entry of an allowlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRule {
    /// `*.host`: the names under `host`, not `host` itself.
    under: bool,
    /// Lower case, without a trailing dot.
    host: String,
    port: Option<u16>,
}

impl EgressRule {
    /// Whether a connection to `host:port` is allowed (`host` as
    /// [`normal_host`] gives it).
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let named = if self.under {
            host.strip_suffix(self.host.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
        } else {
            host == self.host
        };
        named
            && match self.port {
                Some(p) => p == port,
                None => port == 80 || port == 443,
            }
    }
}

impl FromStr for EgressRule {
    type Err = String;

    fn from_str(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (name, port) = match entry.rsplit_once(':') {
            Some((name, port)) => {
                let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    format!("{entry:?}: the port must be a number from 1 to 65535.")
                })?;
                (name, Some(port))
            }
            None => (entry, None),
        };
        let (under, name) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        let host = normal_host(name).map_err(|why| format!("{entry:?}: {why}"))?;
        Ok(Self { under, host, port })
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.under {
            f.write_str("*.")?;
        }
        f.write_str(&self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// A host name as rules compare it (lower case, no trailing dot), or why it
/// is not one: an IP address, an empty or too long name, a label with other
/// characters than letters, digits and `-`.
pub fn normal_host(name: &str) -> Result<String, &'static str> {
    let host = name.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 {
        return Err("a host name has 1 to 253 characters.");
    }
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return Err("name the host: an IP address is not allowed.");
    }
    let labels_ok = host.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !labels_ok {
        return Err("not a host name (letters, digits, '-' and dots).");
    }
    // Digits last, or a label in hex: how an IPv4 address may be spelt
    // (`2130706433`, `127.1`, `0x7f.1`).
    let hex = |label: &str| {
        label
            .strip_prefix("0x")
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let digits_last = host
        .rsplit('.')
        .next()
        .is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit()));
    if digits_last || host.split('.').any(hex) {
        return Err("name the host: an IP address is not allowed.");
    }
    Ok(host)
}

/// The entries of an allowlist, each checked and written the one way
/// ([`EgressRule`]'s), without repeats.
pub fn normal_allowlist(entries: &[String]) -> Result<Vec<String>, String> {
    let mut normal: Vec<String> = Vec::new();
    for entry in entries.iter().filter(|e| !e.trim().is_empty()) {
        let rule = entry.parse::<EgressRule>()?.to_string();
        if normal.contains(&rule) {
            continue;
        }
        // Refused at the first entry over the limit, so a long list costs
        // no more than a full one does.
        if normal.len() == EGRESS_MAX {
            return Err(format!(
                "A session's network allowlist has at most {EGRESS_MAX} entries."
            ));
        }
        normal.push(rule);
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> EgressRule {
        s.parse().unwrap()
    }

    #[test]
    fn rules_match_names_and_ports() {
        let mirror = rule("Mirror.Example.com.");
        assert_eq!(mirror.to_string(), "mirror.example.com");
        assert!(
            mirror.allows("mirror.example.com", 443) && mirror.allows("mirror.example.com", 80)
        );
        assert!(!mirror.allows("mirror.example.com", 22));
        assert!(!mirror.allows("files.mirror.example.com", 443));
        assert!(!mirror.allows("evilmirror.example.com", 443));
        let under = rule("*.github.com");
        assert!(under.allows("api.github.com", 443));
        assert!(under.allows("a.b.github.com", 443));
        assert!(!under.allows("github.com", 443));
        assert!(!under.allows("evilgithub.com", 443));
        let port = rule("registry.local:8443");
        assert!(port.allows("registry.local", 8443));
        assert!(!port.allows("registry.local", 443));
        assert_eq!(port.to_string(), "registry.local:8443");
        assert!(rule("localhost").allows("localhost", 80));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "",
            "127.0.0.1",
            "10.0.0.1:443",
            "[::1]:443",
            "::1",
            "1.2.3",
            "0x7f000001",
            "127.1.0x0",
            "0x7f.example.com",
            "a..b",
            "-a.com",
            "a_b.com",
            "*.",
            "*",
            "**.a.com",
            "a.com:0",
            "a.com:99999",
            "a.com:x",
            "exa mple.com",
            "é.com",
            &"a".repeat(64),
            &format!("{}.com", "a.".repeat(130)),
        ] {
            assert!(bad.parse::<EgressRule>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lists_are_normalised_without_repeats_and_bounded() {
        let list = normal_allowlist(&[
            " Mirror.Example.com ".into(),
            "mirror.example.com".into(),
            "".into(),
            "*.GitHub.com:443".into(),
        ])
        .unwrap();
        assert_eq!(list, ["mirror.example.com", "*.github.com:443"]);
        let many: Vec<String> = (0..=EGRESS_MAX).map(|i| format!("h{i}.com")).collect();
        assert!(normal_allowlist(&many).is_err());
        // As many as a 2 MiB body holds: refused at the 65th, not after
        // comparing each with all before it (minutes, on one thread).
        let flood: Vec<String> = (0..300_000).map(|i| format!("h{i}")).collect();
        assert!(normal_allowlist(&flood).is_err());
        let repeated = vec!["same.com".to_owned(); 300_000];
        assert_eq!(normal_allowlist(&repeated).unwrap(), ["same.com"]);
        assert!(normal_allowlist(&["ok.com".into(), "1.1.1.1".into()]).is_err());
    }
}
