//! How notifications are posted: one HTTP client, no redirects, a time
//! limit, and (unless private networks are allowed) only public addresses,
//! checked on every address a name resolves to at the moment it is
//! connected to, so a name cannot be turned towards this host's or its
//! network's own services: public addresses of this host's own (which
//! reach its services past a firewall in front) are refused too.

use crate::egress::{own_addresses, reachable, unreachable_why};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Longest a try may take.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a try waits to connect: an address that never answers gives
/// up the sender's slot sooner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves names to public addresses of other hosts only.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let own = own_addresses();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| reachable(a.ip(), &own, &[]))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{} has no public address of another host (notifications go only to \
                     public addresses, not this server's own)",
                    name.as_str()
                )
                .into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// The client notifications are posted with.
pub fn client(private_allowed: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TRY_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("Paddock/", env!("CARGO_PKG_VERSION")));
    // Through no proxy: the addresses checked are the ones connected to.
    let builder = match private_allowed {
        true => builder,
        false => builder.no_proxy().dns_resolver(Arc::new(PublicOnly)),
    };
    builder.build()
}

/// The host a URL names, if it names one.
pub fn host_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .filter(|h| !h.is_empty())
}

/// Why `url` may not be posted to, if it may not: it is not a URL with a
/// host, or an address written in it is not public (names are checked as
/// they resolve).
pub fn refused_address(url: &str, private_allowed: bool) -> Option<String> {
    let Some(host) = host_of(url) else {
        return Some(format!("{url:?} is not a URL with a host"));
    };
    if private_allowed {
        return None;
    }
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    refused_ip(ip, &own_addresses())
}

/// Why `ip` may not be posted to, if it may not, for a host whose own
/// addresses are `own`.
fn refused_ip(ip: IpAddr, own: &[IpAddr]) -> Option<String> {
    unreachable_why(ip, own, &[]).map(|why| {
        format!("{ip} is {why} (notifications go only to public addresses of other hosts)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_public_addresses_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]/x",
            "http://10.0.0.7/",
            "http://169.254.169.254/latest",
        ] {
            assert!(refused_address(url, false).is_some(), "{url}");
            assert!(refused_address(url, true).is_none(), "{url}");
        }
        assert!(refused_address("https://8.8.8.8/x", false).is_none());
        for bad in ["http://", "not a url", "http://:80/x"] {
            assert!(refused_address(bad, true).is_some(), "{bad}");
        }
        assert!(refused_address("https://hooks.example.com/x", false).is_none());
        // Public, but this host's own: its services, past a firewall.
        let own: IpAddr = "8.8.4.4".parse().unwrap();
        assert!(refused_ip(own, &[own]).is_some_and(|why| why.contains("this server's own")));
        assert!(refused_ip("8.8.8.8".parse().unwrap(), &[own]).is_none());
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
