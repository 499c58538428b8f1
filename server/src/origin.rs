//! Web origins (scheme, host, port), as browsers send them in `Origin` and
//! `Referer` and as the operator gives Paddock's public URL.

use axum::http::uri::Authority;
use axum::http::Uri;
use std::fmt;

/// A web origin: scheme, host and port (the default port made explicit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl Origin {
    /// The origin of an absolute `http(s)` URL: an `Origin` or `Referer`
    /// header, or the public URL. `None` for anything else (opaque origins,
    /// other schemes, user info, garbage).
    pub fn of_url(url: &str) -> Option<Origin> {
        let uri: Uri = url.parse().ok()?;
        let scheme = match uri.scheme_str()?.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        };
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        Some(Origin {
            scheme,
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(scheme.default_port()),
        })
    }

    /// Whether a request sent to `host` (and `port`, if the request named
    /// one) was sent to this origin.
    pub fn is_host(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && self.port == port.unwrap_or(self.scheme.default_port())
    }

    /// The host name (IPv6 addresses in brackets, as in a URL).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The origin with its port written out even when it is the
    /// default one (`https://host:443`), as some senders sign it.
    pub fn with_port(&self) -> String {
        let shown = self.to_string();
        match self.port == self.scheme.default_port() {
            true => format!("{shown}:{}", self.port),
            false => shown,
        }
    }

    /// Whether pages are served over TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::Https
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}", self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// `PADDOCK_PUBLIC_URL`: an `http(s)` URL with nothing after its host and
/// port, since Paddock is served from the root of its origin.
pub fn parse_public_url(value: &str) -> Result<Origin, String> {
    let origin = Origin::of_url(value).ok_or_else(|| {
        format!("{value:?} is not an http:// or https:// URL such as https://paddock.example.com")
    })?;
    let rest = value
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, path)| path);
    match rest {
        None | Some("") => Ok(origin),
        Some(_) => Err(format!(
            "{value:?} has a path: Paddock is served from the root of its origin, so give only \
             scheme, host and port (such as {origin})"
        )),
    }
}

/// One name of `PADDOCK_ALLOWED_HOSTS`: a host name or IP address, no port.
pub fn parse_allowed_host(value: &str) -> Result<String, String> {
    let authority: Authority = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a host name"))?;
    if authority.port().is_some() || authority.as_str().contains('@') || authority.host().is_empty()
    {
        return Err(format!("{value:?}: give the host name alone, without port"));
    }
    Ok(authority.host().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_and_allowed_hosts_are_validated() {
        let o = parse_public_url("https://Paddock.example.com:8443/").unwrap();
        assert_eq!(o.to_string(), "https://paddock.example.com:8443");
        assert_eq!(o.host(), "paddock.example.com");
        assert!(o.is_https());
        assert_eq!(
            parse_public_url("http://x.example:80").unwrap().to_string(),
            "http://x.example"
        );
        for bad in [
            "paddock.example.com",
            "ftp://x.example",
            "https://x.example/paddock",
            "https://u:p@x.example",
            "",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_allowed_host(" Team.Internal ").unwrap(),
            "team.internal"
        );
        assert_eq!(parse_allowed_host("[::2]").unwrap(), "[::2]");
        for bad in ["team.internal:80", "a b", "", "u@host"] {
            assert!(parse_allowed_host(bad).is_err(), "{bad}");
        }
    }
}
