//! Reaching the Docker daemon `DOCKER_HOST` names: its Unix socket (the
//! default), or a daemon on another machine over TCP with mutual TLS, as
//! the Docker CLI reaches one (`DOCKER_TLS_VERIFY` set; the daemon's CA in
//! `ca.pem` and the client's `cert.pem` and `key.pem` in `DOCKER_CERT_PATH`,
//! else `~/.docker`). The daemon's certificate must chain to that `ca.pem`
//! alone, not to any public CA. Plain TCP is refused but to a loopback
//! address, since whoever reaches a daemon's API is root on its host.

use super::{Result, SandboxError};
use bollard::{Docker, API_DEFAULT_VERSION};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Seconds a request to the daemon may take (bollard's default).
const TIMEOUT_SECS: u64 = 120;

/// A client for the daemon `DOCKER_HOST` names (not yet asked anything).
pub(super) fn client() -> Result<Docker> {
    let host = std::env::var("DOCKER_HOST").ok();
    let tls = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
    match host.as_deref() {
        Some(host) if (is_tcp(host) && tls) || host.starts_with("https://") => {
            mutual_tls(host, &cert_path()?)
        }
        Some(host) if is_tcp(host) => {
            check_plain_tcp(host, tls)?;
            through(tcp_connector(), format!("http://{}", address(host)))
        }
        _ => Docker::connect_with_defaults().map_err(unavailable),
    }
}

/// Whether the daemon is on another machine, whose sandboxes see nothing of
/// this one's filesystem: as `setting` says (`PADDOCK_DOCKER_REMOTE`), else
/// when `DOCKER_HOST` names it over TCP at an address that is not loopback.
pub(super) fn is_remote(setting: Option<bool>) -> bool {
    setting.unwrap_or_else(|| {
        std::env::var("DOCKER_HOST")
            .is_ok_and(|host| is_tcp(&host) && !host_name(&host).is_some_and(is_loopback))
    })
}

/// The machine a `tcp://`, `http://` or `https://` address names.
fn host_name(host: &str) -> Option<&str> {
    let address = ["tcp://", "http://", "https://"]
        .iter()
        .find_map(|scheme| host.strip_prefix(scheme))?;
    let name = address.split('/').next().unwrap_or_default();
    Some(name.rsplit_once(':').map_or(name, |(name, _port)| name))
}

fn is_loopback(name: &str) -> bool {
    name == "localhost"
        || name
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn unavailable(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Unavailable(e.to_string())
}

fn is_tcp(host: &str) -> bool {
    ["tcp://", "http://", "https://"]
        .iter()
        .any(|scheme| host.starts_with(scheme))
}

/// `DOCKER_CERT_PATH`, else `~/.docker`.
fn cert_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".docker"))
        .ok_or_else(|| {
            unavailable("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME")
        })
}

/// A client over TLS to `host` that trusts `ca.pem` only and presents the
/// client certificate of `certs`.
fn mutual_tls(host: &str, certs: &Path) -> Result<Docker> {
    let read = |name: &str| {
        std::fs::read(certs.join(name)).map_err(|e| {
            unavailable(format!(
                "DOCKER_TLS_VERIFY: cannot read {}: {e}",
                certs.join(name).display()
            ))
        })
    };
    let bad = |name: &str, e: &dyn std::fmt::Display| {
        unavailable(format!(
            "DOCKER_TLS_VERIFY: {} in {}: {e}",
            name,
            certs.display()
        ))
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read("ca.pem")?) {
        roots
            .add(ca.map_err(|e| bad("ca.pem", &e))?)
            .map_err(|e| bad("ca.pem", &e))?;
    }
    if roots.is_empty() {
        return Err(bad("ca.pem", &"no certificate"));
    }
    let chain = CertificateDer::pem_slice_iter(&read("cert.pem")?)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("cert.pem", &e))?;
    let key = PrivateKeyDer::from_pem_slice(&read("key.pem")?).map_err(|e| bad("key.pem", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("cert.pem and key.pem", &e))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(tcp_connector());
    through(https, format!("https://{}", address(host)))
}

/// `host:port` of a `DOCKER_HOST` such as `tcp://host:port`.
fn address(host: &str) -> &str {
    host.split_once("://").map_or(host, |(_, a)| a)
}

/// TCP to the daemon without Nagle's algorithm: an agent's small HTTP/2
/// frames ride an exec's stream on these connections, and each would
/// otherwise wait for the daemon's delayed acknowledgement (40 ms a round
/// trip).
fn tcp_connector() -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    tcp
}

/// A client whose requests go through `connector` to `address`.
fn through<C>(connector: C, address: String) -> Result<Docker>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let client = Client::builder(TokioExecutor::new()).build(connector);
    Docker::connect_with_custom_transport(
        move |request| {
            let client = client.clone();
            async move { Ok(client.request(request).await?) }
        },
        Some(address),
        TIMEOUT_SECS,
        API_DEFAULT_VERSION,
    )
    .map_err(unavailable)
}

/// Refuses a `DOCKER_HOST` that would speak plain TCP to another machine.
fn check_plain_tcp(host: &str, tls: bool) -> Result<()> {
    if host.starts_with("https://") {
        return Ok(());
    }
    let Some(name) = host_name(host) else {
        return Ok(());
    };
    if tls || is_loopback(name) {
        Ok(())
    } else {
        Err(SandboxError::Unavailable(format!(
            "DOCKER_HOST={host} without TLS: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (the \
             folder holding ca.pem, cert.pem and key.pem), since anyone who reaches a Docker \
             daemon's API is root on its host"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::{check_plain_tcp, host_name, is_loopback};

    #[test]
    fn loopback_addresses_are_this_machine() {
        for (host, here) in [
            ("tcp://127.0.0.1:2376", true),
            ("tcp://localhost:2376", true),
            ("https://[::1]:2376", true),
            ("tcp://10.0.0.5:2376", false),
            ("tcp://docker.example.com:2376", false),
        ] {
            assert_eq!(host_name(host).is_some_and(is_loopback), here, "{host}");
        }
        assert_eq!(host_name("unix:///var/run/docker.sock"), None);
    }

    #[test]
    fn plain_tcp_only_to_loopback() {
        for host in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2375",
            "tcp://[::1]:2375",
            "http://127.0.0.2:2375",
        ] {
            assert!(check_plain_tcp(host, false).is_ok(), "{host}");
        }
        for host in ["tcp://10.0.0.5:2375", "tcp://docker.example.com:2375"] {
            let err = check_plain_tcp(host, false).unwrap_err().to_string();
            assert!(err.contains("DOCKER_TLS_VERIFY"), "{err}");
            assert!(check_plain_tcp(host, true).is_ok(), "{host} with TLS");
        }
    }
}
