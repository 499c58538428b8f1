//! Configuration from flags and the environment (12-factor: every flag has an
//! environment variable, which is how containers and PaaS set them).

use clap::Parser;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "paddock",
    version,
    about = "Run Claude agents in closed sandboxes"
)]
pub struct Config {
    /// Address to listen on [default: 127.0.0.1:3000, or 0.0.0.0:$PORT when
    /// only PORT is set, as a PaaS does].
    #[arg(long, env = "PADDOCK_ADDR")]
    pub addr: Option<SocketAddr>,

    /// Port given by a PaaS; ignored when PADDOCK_ADDR is set.
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,

    /// Database URL; a missing SQLite file (and its folder) is created.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/paddock.db")]
    pub database_url: String,

    /// Folder under which each session's workspace lives.
    #[arg(long, env = "WORKSPACE_ROOT", default_value = "data/workspaces")]
    pub workspace_root: PathBuf,
}

impl Config {
    /// Loopback unless told otherwise: an explicit address wins; a bare PORT
    /// means a platform routes traffic to us, so all interfaces.
    pub fn listen_addr(&self) -> SocketAddr {
        match (self.addr, self.port) {
            (Some(addr), _) => addr,
            (None, Some(port)) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            (None, None) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(addr: Option<&str>, port: Option<u16>) -> Config {
        Config {
            addr: addr.map(|a| a.parse().unwrap()),
            port,
            database_url: String::new(),
            workspace_root: PathBuf::new(),
        }
    }

    #[test]
    fn binds_loopback_by_default() {
        assert_eq!(
            config(None, None).listen_addr(),
            "127.0.0.1:3000".parse().unwrap()
        );
    }

    #[test]
    fn port_alone_binds_all_interfaces_and_addr_wins() {
        assert_eq!(
            config(None, Some(8080)).listen_addr(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            config(Some("127.0.0.1:9000"), Some(8080)).listen_addr(),
            "127.0.0.1:9000".parse().unwrap()
        );
    }

    #[test]
    fn flags_parse() {
        let c = Config::try_parse_from([
            "paddock",
            "--addr",
            "127.0.0.1:1",
            "--database-url",
            "sqlite://x.db",
        ])
        .unwrap();
        assert_eq!(c.listen_addr(), "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.database_url, "sqlite://x.db");
    }
}
