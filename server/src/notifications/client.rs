//! How notifications are posted: one HTTP client, no redirects, no
//! proxy, a time limit, and (unless private networks are allowed) only
//! public addresses, checked on every address a name resolves to at the
//! moment it is connected to, so a name cannot be turned towards this
//! host's or its network's own services: public addresses of this host's
//! own (which reach its services past a firewall in front) are refused
//! too. With private networks allowed, a cloud's metadata service
//! (link-local addresses) is still refused: no receiver is there, and a
//! member could read its answers in the message log.

use crate::egress::{is_cloud_metadata, own_addresses, unreachable_why};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Longest a try may take.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a try waits to connect: an address that never answers gives
/// up the sender's slot sooner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves names to the addresses notifications may go to
/// ([`refused_ip`]).
struct Reachable {
    private_allowed: bool,
}

impl Resolve for Reachable {
    fn resolve(&self, name: Name) -> Resolving {
        let private_allowed = self.private_allowed;
        Box::pin(async move {
            let own = own_addresses();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| refused_ip(a.ip(), &own, private_allowed).is_none())
                .collect();
            if found.is_empty() {
                let only = match private_allowed {
                    true => "no address but a cloud's metadata service",
                    false => {
                        "no public address of another host (notifications go only to public \
                         addresses, not this server's own)"
                    }
                };
                return Err(format!("{} has {only}", name.as_str()).into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// The client notifications are posted with. Through no proxy: the
/// addresses checked are the ones connected to.
pub fn client(private_allowed: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TRY_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("Paddock/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .dns_resolver(Arc::new(Reachable { private_allowed }))
        .build()
}

/// The host a URL names, if it names one.
pub fn host_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .filter(|h| !h.is_empty())
}

/// Why `url` may not be posted to, if it may not: it is not a URL with a
/// host, or an address written in it may not be posted to (names are
/// checked as they resolve).
pub fn refused_address(url: &str, private_allowed: bool) -> Option<String> {
    let Some(host) = host_of(url) else {
        return Some(format!("{url:?} is not a URL with a host"));
    };
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    refused_ip(ip, &own_addresses(), private_allowed)
}

/// Why `ip` may not be posted to, if it may not, for a host whose own
/// addresses are `own`: anything but a public address of another host,
/// or with private networks allowed, a cloud's metadata service.
fn refused_ip(ip: IpAddr, own: &[IpAddr], private_allowed: bool) -> Option<String> {
    if private_allowed {
        return is_cloud_metadata(ip)
            .then(|| format!("{ip} is a cloud's metadata service: never a receiver"));
    }
    unreachable_why(ip, own, &[]).map(|why| {
        format!("{ip} is {why} (notifications go only to public addresses of other hosts)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_public_addresses_unless_allowed() {
        for url in ["http://127.0.0.1:9/x", "http://[::1]/x", "http://10.0.0.7/"] {
            assert!(refused_address(url, false).is_some(), "{url}");
            assert!(refused_address(url, true).is_none(), "{url}");
        }
        // A cloud's metadata service: never.
        for url in [
            "http://169.254.169.254/latest",
            "http://[fe80::a9fe:a9fe]/x",
            "http://[::ffff:169.254.169.254]/x",
            "http://168.63.129.16/machine",
            "http://100.100.100.200/latest",
            "http://[fd00:ec2::254]/latest",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://[fd20:ce::254]/computeMetadata",
            "http://192.0.0.192/latest",
        ] {
            assert!(refused_address(url, false).is_some(), "{url}");
            assert!(refused_address(url, true).is_some(), "{url}");
        }
        assert!(refused_address("https://8.8.8.8/x", false).is_none());
        for bad in ["http://", "not a url", "http://:80/x"] {
            assert!(refused_address(bad, true).is_some(), "{bad}");
        }
        assert!(refused_address("https://hooks.example.com/x", false).is_none());
        // Public, but this host's own: its services, past a firewall.
        let own: IpAddr = "8.8.4.4".parse().unwrap();
        assert!(refused_ip(own, &[own], false).is_some_and(|why| why.contains("this server's own")));
        assert!(refused_ip("8.8.8.8".parse().unwrap(), &[own], false).is_none());
        // A name that resolves to loopback is refused as it resolves.
        let err = client(false)
            .unwrap()
            .post("http://localhost:9/x")
            .send()
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("no public address"), "{err:?}");
    }
}
