//! Which addresses the egress proxy may connect to: public ones, and the
//! non-public networks the operator names (`PADDOCK_EGRESS_NETWORKS`, for
//! an internal mirror). A name that resolves to loopback, a private or
//! link-local network, or any other special range is refused otherwise, so
//! an allowed name cannot be pointed (rebound) at the server's own host or
//! its network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address range, `10.1.0.0/16` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a network: write it as 10.1.0.0/16 or fd00::/8");
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        // Every address: the host's loopback and the clouds' metadata
        // services too, which no sandbox should reach.
        if prefix == 0 {
            return Err(format!(
                "{s:?} opens every address, this host's own and its cloud's metadata service \
                 among them: name the networks to open"
            ));
        }
        Ok(Self { addr, prefix })
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, bits) = match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let host_bits = bits - u32::from(self.prefix);
        host_bits >= bits || (net >> host_bits) == (ip >> host_bits)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is the IPv4 one.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses of this host's own interfaces (from `/proc/net`): a
/// listed name that resolves to one of them would reach the host's own
/// services, past any firewall in front of it.
pub fn own_addresses() -> Vec<IpAddr> {
    let mut own = Vec::new();
    // IPv4: the routing trie names each local address before a
    // "/32 host LOCAL" line.
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last = None;
        for line in trie.lines() {
            if let Some(addr) = line.trim_start().strip_prefix("|-- ") {
                last = addr.trim().parse::<Ipv4Addr>().ok();
            } else if line.contains("/32 host LOCAL") {
                own.extend(last.map(IpAddr::V4));
            }
        }
    }
    if let Ok(table) = std::fs::read_to_string("/proc/net/if_inet6") {
        own.extend(table.lines().filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            u128::from_str_radix(hex, 16)
                .ok()
                .map(|n| IpAddr::V6(Ipv6Addr::from(n)))
        }));
    }
    own.sort();
    own.dedup();
    own
}

/// Whether the proxy may connect to `ip`: a public address, or one in a
/// network the operator opened; never one of this host's own interfaces
/// (`own`), which reach its own services whatever networks are opened
/// (an internal network opened for a mirror often holds the host too),
/// but for loopback, which only a network naming loopback opens.
pub fn reachable(ip: IpAddr, own: &[IpAddr], networks: &[Network]) -> bool {
    let ip = canonical(ip);
    let of_this_host = own.contains(&ip) && !ip.is_loopback();
    // A cloud's metadata service, also inside a network the operator
    // opened (`fd00::/8` holds AWS's): it hands out the host's credentials.
    !of_this_host
        && !is_cloud_metadata(ip)
        && (is_public(ip) || networks.iter().any(|n| n.contains(ip)))
}

/// Why `ip` may not be connected to (by the proxy, a clone or a
/// notification), if [`reachable`] says it may not.
pub fn unreachable_why(ip: IpAddr, own: &[IpAddr], networks: &[Network]) -> Option<&'static str> {
    if reachable(ip, own, networks) {
        return None;
    }
    let opened = networks.iter().any(|n| n.contains(ip));
    Some(if is_cloud_metadata(ip) {
        "a cloud's metadata service"
    } else if own.contains(&canonical(ip)) && (opened || is_public(ip)) {
        "an address of this server's own"
    } else {
        "a non-public address"
    })
}

/// Whether `ip` is an ordinary address on the internet: not loopback,
/// private, link-local, shared (CGNAT), multicast, documentation,
/// benchmarking, reserved or unspecified, nor a cloud's own service on a
/// public address ([`AZURE_WIRESERVER`]).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
        || ip == AZURE_WIRESERVER)
}

/// Whether `ip` is where clouds keep their machines' metadata services
/// and credentials (link-local; Azure's host service; Alibaba's, Oracle's;
/// AWS's and GCP's over IPv6, and EKS's pod identity): nothing else is
/// served there.
pub fn is_cloud_metadata(ip: IpAddr) -> bool {
    // An IPv4 address written in a NAT64 or 6to4 one is that one (a NAT64
    // translator on this host would reach its own metadata service).
    let ip = match canonical(ip) {
        IpAddr::V6(v6) if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
            IpAddr::V4(Ipv4Addr::from(u128::from(v6) as u32))
        }
        IpAddr::V6(v6) if v6.segments()[0] == 0x2002 => {
            IpAddr::V4(Ipv4Addr::from((u128::from(v6) >> 80) as u32))
        }
        ip => ip,
    };
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local()
                || v4 == AZURE_WIRESERVER
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
                || v4 == Ipv4Addr::new(192, 0, 0, 192)
        }
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)
                || v6 == Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// Azure's host service (it hands each machine its configuration, and
/// answers only from within it): public in form, the host's own in fact,
/// as the other clouds' metadata services in 169.254.0.0/16 are.
const AZURE_WIRESERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    // Only global unicast (2000::/3), less documentation (2001:db8::/32),
    // and NAT64 / 6to4 / Teredo forms that embed an address of any kind.
    (first & 0xe000) == 0x2000
        && !(first == 0x2001 && ip.segments()[1] == 0x0db8)
        && first != 0x2002
        && !(first == 0x2001 && ip.segments()[1] == 0)
        && !(first == 0x0064 && ip.segments()[1] == 0xff9b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "168.63.129.16",
            "::ffff:168.63.129.16",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2001:0::1",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in [
            "1.1.1.1",
            "151.101.0.223",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn this_hosts_own_addresses_are_known() {
        let own = own_addresses();
        assert!(own.contains(&ip("127.0.0.1")), "{own:?}");
    }

    #[test]
    fn this_hosts_own_addresses_are_never_reached() {
        let own = [ip("127.0.0.1"), ip("10.1.0.7"), ip("203.0.113.5")];
        let opened: [Network; 2] = [
            "10.1.0.0/16".parse().unwrap(),
            "127.0.0.0/8".parse().unwrap(),
        ];
        // In an opened network, but the host's own interface.
        assert!(!reachable(ip("10.1.0.7"), &own, &opened));
        assert!(!reachable(ip("::ffff:10.1.0.7"), &own, &opened));
        assert!(reachable(ip("10.1.2.3"), &own, &opened));
        // Public, but the host's own.
        assert!(!reachable(ip("203.0.113.5"), &own, &opened));
        assert!(reachable(ip("1.1.1.1"), &own, &opened));
        // Loopback only where a network names it.
        assert!(reachable(ip("127.0.0.1"), &own, &opened));
        assert!(!reachable(ip("127.0.0.1"), &own, &opened[..1]));
        assert!(!reachable(ip("10.9.9.9"), &own, &[]));
        // A cloud's metadata service, inside a network opened too.
        let wide: [Network; 2] = [
            "fd00::/8".parse().unwrap(),
            "100.64.0.0/10".parse().unwrap(),
        ];
        assert!(reachable(ip("fd00:ec2::1"), &own, &wide));
        for metadata in [
            "fd00:ec2::254",
            "fd00:ec2::23",
            "100.100.100.200",
            "169.254.169.254",
        ] {
            assert!(!reachable(ip(metadata), &own, &wide), "{metadata}");
            assert_eq!(
                unreachable_why(ip(metadata), &own, &wide),
                Some("a cloud's metadata service")
            );
        }
        // Written in NAT64 and 6to4 form, too.
        let nat64: [Network; 1] = ["64:ff9b::/96".parse().unwrap()];
        assert!(reachable(ip("64:ff9b::808:808"), &own, &nat64));
        assert!(!reachable(ip("64:ff9b::a9fe:a9fe"), &own, &nat64));
        assert!(is_cloud_metadata(ip("2002:a9fe:a9fe::1")));
    }

    #[test]
    fn networks_parse_and_contain() {
        let lo: Network = "127.0.0.0/8".parse().unwrap();
        assert!(lo.contains(ip("127.9.9.9")) && lo.contains(ip("::ffff:127.0.0.1")));
        assert!(!lo.contains(ip("128.0.0.1")) && !lo.contains(ip("::1")));
        let one: Network = "10.1.2.3/32".parse().unwrap();
        assert!(one.contains(ip("10.1.2.3")) && !one.contains(ip("10.1.2.4")));
        let wide: Network = "8.0.0.0/1".parse().unwrap();
        assert!(wide.contains(ip("8.8.8.8")) && !wide.contains(ip("200.1.1.1")));
        let ula: Network = "fd00::/8".parse().unwrap();
        assert!(ula.contains(ip("fd12::1")) && !ula.contains(ip("fe80::1")));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/-1",
            "",
            "0.0.0.0/0",
            "::/0",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
