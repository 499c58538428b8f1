//! The door every request passes first: which requests a browser may bring.
//!
//! Listening on 127.0.0.1 keeps other machines out, not the web pages open
//! in the user's own browser. Two checks close what such a page could do:
//!
//! - **Host** (DNS rebinding): a page on `evil.example` whose name is
//!   rebound to 127.0.0.1 becomes "same-origin" with Paddock and could read
//!   every transcript. Browsers always send the name they resolved in
//!   `Host`, so only the names Paddock is known by are served: loopback
//!   (`localhost`, loopback addresses), the address it listens on, the host
//!   of `PADDOCK_PUBLIC_URL` and those in `PADDOCK_ALLOWED_HOSTS`. Any other
//!   host gets 421 before anything is read or changed. The probes
//!   (`/healthz`, `/readyz`) are outside this check, because platforms probe
//!   with hosts of their own, and they reveal and change nothing.
//! - **Origin** (cross-site requests): a plain HTML form on any site can
//!   post to a server function, and a `no-cors` fetch can post to the REST
//!   API, without a preflight. Every request that is not a read (`GET`,
//!   `HEAD`, `OPTIONS`) and comes from a browser must come from Paddock's
//!   own origin: the `Origin` header, or lacking it `Sec-Fetch-Site`, or
//!   lacking that the `Referer`. Anything else gets 403. A request without
//!   any of them is not from a browser (curl, scripts) and is served.
//!
//! - **Who** (sign-in): the caller is identified here, once, by their
//!   browser session cookie or API token ([`Auth::identify`]), and put in
//!   the request for the [`Identity`](crate::auth::Identity) extractor. An anonymous request
//!   reaches only the sign-in and setup pages, their form posts, the page
//!   assets, `whoami` and `setup_link`; elsewhere it gets 401 (the API and
//!   `/metrics`, [`for_machines`]) or is sent to the
//!   sign-in page. A change made with a cookie must also prove it comes
//!   from Paddock's own pages (an `Origin`, `Sec-Fetch-Site` or `Referer`
//!   saying so), on top of the cookie's SameSite=Lax: that is the CSRF rule.
//!   A bearer token is never sent by a browser on its own, so it needs no
//!   such proof.
//!
//! All of it refuses before anything is read or changed (invariant 5).

use super::error::ApiError;
use crate::auth::{Auth, Via};
use crate::config::Config;
use crate::origin::Origin;
use app::domain::AppError;
use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// The `Host` a request was sent to.
struct RequestHost {
    name: String,
    port: Option<u16>,
}

impl RequestHost {
    /// From the `Host` header, or the URI's authority (HTTP/2, absolute-form
    /// requests). `Ok(None)`: the request names no host, which no browser
    /// sends. Never from `X-Forwarded-Host`: a rebound page may set any
    /// header it likes on its "same-origin" requests.
    fn of(headers: &HeaderMap, uri: &Uri) -> Result<Option<RequestHost>, String> {
        let authority = match headers.get(header::HOST) {
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.parse::<Authority>().ok())
                    .ok_or_else(|| shown(value))?,
            ),
            None => uri.authority().cloned(),
        };
        Ok(authority.map(|a| RequestHost {
            name: a.host().to_ascii_lowercase(),
            port: a.port_u16(),
        }))
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Sent to a host name Paddock is not known by (421).
    ForeignHost(String),
    /// A state-changing request from a page of another origin (403).
    CrossOrigin(String),
    /// A change made with a browser session cookie that does not say it
    /// comes from Paddock's own pages (403).
    Unproven,
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::ForeignHost(_) => AppError::Misdirected(message),
            Refusal::CrossOrigin(_) | Refusal::Unproven => AppError::Forbidden(message),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ForeignHost(host) => write!(
                f,
                "This Paddock does not serve the host {host}. Open it by an address it serves \
                 (such as 127.0.0.1), or add the name to PADDOCK_PUBLIC_URL or \
                 PADDOCK_ALLOWED_HOSTS."
            ),
            Refusal::CrossOrigin(source) => write!(
                f,
                "Refused: this request was sent by a page of {source}, not by Paddock's own \
                 pages. Changes are accepted only from Paddock's own origin and from clients \
                 that are not browsers."
            ),
            Refusal::Unproven => write!(
                f,
                "Refused: a change made with a browser's sign-in cookie must come from \
                 Paddock's own pages, and this request does not say where it comes from (no \
                 Origin header). Scripts use an API token instead."
            ),
        }
    }
}

/// A header value as it may be shown in a message: quoted, escaped, short.
fn shown(value: &HeaderValue) -> String {
    let text = String::from_utf8_lossy(value.as_bytes());
    let short: String = text.chars().take(100).collect();
    format!("{short:?}")
}

/// The hosts Paddock answers to and the origin it trusts besides its own.
#[derive(Debug)]
pub struct RequestGuard {
    /// Host names served besides loopback ones, lowercase.
    hosts: HashSet<String>,
    /// The address Paddock listens on, unless it listens on all of them.
    listen_ip: Option<IpAddr>,
    /// The public URL's origin: the one a proxy in front may rewrite `Host`
    /// away from.
    public: Option<Origin>,
}

impl RequestGuard {
    pub fn new(config: &Config) -> Self {
        let public = config.public_url.clone();
        let mut hosts: HashSet<String> = config.allowed_hosts.iter().cloned().collect();
        hosts.insert("localhost".into());
        hosts.extend(public.as_ref().map(|o| o.host().to_owned()));
        let ip = config.listen_addr().ip();
        Self {
            hosts,
            listen_ip: (!ip.is_unspecified()).then_some(ip),
            public,
        }
    }

    /// What to tell the operator at start-up: listening beyond loopback
    /// without a public URL serves only those who open it as localhost.
    pub fn startup_warning(&self) -> Option<String> {
        let exposed = self.listen_ip.is_none_or(|ip| !ip.is_loopback());
        (exposed && self.public.is_none()).then(|| {
            "PADDOCK_PUBLIC_URL is not set: only requests to localhost, loopback addresses and \
             the listening address are served. Set it to the URL people open (such as \
             https://paddock.example.com), or name more hosts in PADDOCK_ALLOWED_HOSTS."
                .into()
        })
    }

    fn serves(&self, host: &str) -> bool {
        if self.hosts.contains(host) {
            return true;
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || Some(ip) == self.listen_ip)
    }

    /// Whether `origin` is Paddock's own for a request sent to `host` (a
    /// host already found to be served).
    /// An origin on the public URL's host is its own only as the public URL
    /// says it, scheme included: behind a TLS proxy the request's `Host`
    /// carries no scheme (nor, often, the port), and a plain-http page on
    /// that name (one a network attacker can serve) is another origin. A
    /// request whose `Host` names another port than the public URL's came
    /// to the server directly, and its own origin is that host and port.
    fn is_own(&self, origin: &Origin, host: Option<&RequestHost>) -> bool {
        let as_sent = host.is_some_and(|h| origin.is_host(&h.name, h.port));
        match &self.public {
            Some(public) if public.host() == origin.host() => {
                let direct = host.is_some_and(|h| {
                    h.port
                        .is_some_and(|port| !public.is_host(&h.name, Some(port)))
                });
                public == origin || (direct && as_sent)
            }
            public => public.as_ref() == Some(origin) || as_sent,
        }
    }

    /// Checks a request's host, and the origin of a state-changing one.
    pub fn admits(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Provenance, Refusal> {
        let host = RequestHost::of(headers, uri).map_err(Refusal::ForeignHost)?;
        if let Some(h) = &host {
            if !self.serves(&h.name) {
                return Err(Refusal::ForeignHost(format!("{:?}", h.name)));
            }
        }
        // A WebSocket opens with a GET, which the browser sends from any
        // page that asks, with its cookies: it is checked like a change.
        if is_read(method) && !is_websocket(headers) {
            return Ok(Provenance::Read);
        }
        let own = |url: &HeaderValue| {
            url.to_str()
                .ok()
                .and_then(Origin::of_url)
                .is_some_and(|o| self.is_own(&o, host.as_ref()))
        };
        let refuse = |value: &HeaderValue| Err(Refusal::CrossOrigin(shown(value)));
        let origin = headers.get(header::ORIGIN);
        // `Origin: null` is an opaque origin (a sandboxed frame, a file, a
        // no-referrer page): it proves nothing, so the other signals decide.
        match origin {
            Some(o) if o != "null" => {
                return if own(o) {
                    Ok(Provenance::OwnPage)
                } else {
                    refuse(o)
                }
            }
            _ => {}
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            // "none": the user's own action (a bookmark, the address bar).
            return if site == "same-origin" || site == "none" {
                Ok(Provenance::OwnPage)
            } else {
                refuse(site)
            };
        }
        match (headers.get(header::REFERER), origin) {
            (Some(r), _) if own(r) => Ok(Provenance::OwnPage),
            (Some(r), _) => refuse(r),
            (None, Some(null)) => refuse(null),
            (None, None) => Ok(Provenance::Unmarked),
        }
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Where an admitted request says it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// A read: where it comes from does not matter.
    Read,
    /// A change from one of Paddock's own pages.
    OwnPage,
    /// A change that carries none of the browser's headers (a script).
    Unmarked,
}

/// What an anonymous caller may reach: the sign-in and setup pages and
/// their form posts, the pages' assets (`/terminal.js` is in every page's
/// head), deliveries to triggers, `whoami` (which tells an anonymous
/// caller only that they are anonymous) and `setup_link` (only whether the
/// token they hold is the setup link's).
pub fn open_to_anonymous(method: &Method, path: &str) -> bool {
    match path {
        "/api/whoami" | "/api/setup_link" => true,
        "/auth/signin" | "/auth/setup" => *method == Method::POST,
        "/signin" | "/setup" | "/favicon.svg" | "/favicon.ico" | "/terminal.js" => is_read(method),
        _ if is_delivery(method, path) => true,
        _ => path.starts_with("/pkg/") && is_read(method),
    }
}

/// A delivery to a trigger (`POST /hooks/…`): it proves itself with its
/// sender's signature, whatever else it carries (a sender's own
/// `Authorization` header is not Paddock's to judge).
pub fn is_delivery(method: &Method, path: &str) -> bool {
    *method == Method::POST && path.starts_with("/hooks/")
}

/// The door's state: the host and origin rules, and sign-in.
pub struct Door {
    pub guard: RequestGuard,
    pub auth: Arc<Auth>,
    /// How long an anonymous request's body may take to come whole
    /// ([`body_deadline`](super::body_deadline)).
    pub stall: std::time::Duration,
}

/// Whether a path is for scripts and scrapers (the JSON API, the metrics),
/// which an anonymous caller is told to authenticate (401) rather than
/// sent to the sign-in page.
pub fn for_machines(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics"
}

/// An error as the door answers it: JSON for the API and deliveries, text
/// elsewhere.
fn refuse(path: &str, error: AppError) -> Response {
    let error = ApiError::from(error);
    if path.starts_with("/api/") || path.starts_with("/hooks/") {
        error.into_response()
    } else {
        (error.status(), error.to_string()).into_response()
    }
}

/// Where the sign-in page sends someone back to after signing in.
fn sign_in_redirect(uri: &Uri) -> Response {
    let next = uri.path_and_query().map_or("/", |p| p.as_str());
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    axum::response::Redirect::to(&format!("/signin?{query}")).into_response()
}

/// Whether a path has a `.` or `..` segment, also percent-encoded: no
/// route or page of Paddock's has one (the dashboard's router would not
/// know what to render), and none may climb out of another.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// The middleware: refuses what [`RequestGuard::admits`] refuses, then
/// identifies the caller and refuses an anonymous one wherever sign-in is
/// needed.
pub async fn check(State(door): State<Arc<Door>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if has_dot_segment(&path) {
        return refuse(
            &path,
            AppError::Invalid("A path with . or .. segments names nothing here.".into()),
        );
    }
    let provenance = match door.guard.admits(req.method(), req.headers(), req.uri()) {
        Ok(p) => p,
        Err(refusal) => {
            tracing::warn!(method = %req.method(), path, "refused: {refusal:?}");
            return refuse(&path, refusal.into());
        }
    };
    if is_delivery(req.method(), &path) {
        return next
            .run(super::body_deadline::within(req, door.stall))
            .await;
    }
    let session = req.extensions().get::<tower_sessions::Session>().cloned();
    let identity = match door.auth.identify(req.headers(), session.as_ref()).await {
        Ok(identity) => identity,
        Err(e) => {
            tracing::info!(method = %req.method(), path, "unauthenticated: {e}");
            return refuse(&path, e);
        }
    };
    match identity {
        Some(mut identity) => {
            if matches!(identity.via, Via::Browser(_)) && provenance == Provenance::Unmarked {
                tracing::warn!(method = %req.method(), path, "refused: {:?}", Refusal::Unproven);
                return refuse(&path, Refusal::Unproven.into());
            }
            identity.caller.by_token = matches!(identity.via, Via::Token(_));
            identity.caller.address = req
                .extensions()
                .get::<super::client_address::ClientAddress>()
                .and_then(|c| c.0);
            req.extensions_mut().insert(identity.caller.clone());
            req.extensions_mut().insert(identity);
        }
        None if open_to_anonymous(req.method(), &path) => {
            req = super::body_deadline::within(req, door.stall);
        }
        None if for_machines(&path) => {
            let mut response = refuse(
                &path,
                AppError::Unauthenticated(
                    "Sign in first, or send an API token (Authorization: Bearer pdk_…).".into(),
                ),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"paddock\""),
            );
            return response;
        }
        None if is_read(req.method()) => return sign_in_redirect(req.uri()),
        None => return refuse(&path, AppError::Unauthenticated("Sign in first.".into())),
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {

    #[test]
    fn dot_segments_are_found_also_encoded() {
        for path in [
            "/..",
            "/a/../..",
            "/%2e%2e",
            "/sessions/%2E",
            "/./x",
            "/a/%2e%2E/b",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/",
            "/sessions/1",
            "/a/.b",
            "/a/..b",
            "/files/x.tar.gz",
            "/%2e%2ex",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    use super::*;
    use clap::Parser;

    fn guard(args: &[&str]) -> RequestGuard {
        let mut argv = vec!["paddock"];
        argv.extend_from_slice(args);
        RequestGuard::new(&Config::try_parse_from(argv).unwrap())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn check(p: &RequestGuard, method: Method, pairs: &[(&str, &str)]) -> Result<(), Refusal> {
        p.admits(&method, &headers(pairs), &Uri::from_static("/api/sessions"))
            .map(|_| ())
    }

    #[test]
    fn provenance_tells_own_pages_from_scripts() {
        let p = guard(&[]);
        let admits = |method, pairs: &[(&str, &str)]| {
            p.admits(&method, &headers(pairs), &Uri::from_static("/api/x"))
        };
        let host = ("host", "127.0.0.1:3000");
        assert_eq!(admits(Method::GET, &[host]), Ok(Provenance::Read));
        assert_eq!(
            admits(Method::POST, &[host, ("origin", "http://127.0.0.1:3000")]),
            Ok(Provenance::OwnPage)
        );
        assert_eq!(admits(Method::POST, &[host]), Ok(Provenance::Unmarked));
    }

    #[test]
    fn anonymous_callers_reach_only_the_sign_in_pages() {
        for (method, path) in [
            (Method::GET, "/signin"),
            (Method::GET, "/setup"),
            (Method::POST, "/auth/signin"),
            (Method::POST, "/auth/setup"),
            (Method::POST, "/api/whoami"),
            (Method::POST, "/api/setup_link"),
            (Method::GET, "/pkg/paddock.wasm"),
            (Method::GET, "/favicon.svg"),
        ] {
            assert!(open_to_anonymous(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::GET, "/"),
            (Method::POST, "/signin"),
            (Method::GET, "/auth/signout"),
            (Method::POST, "/auth/signout"),
            (Method::POST, "/pkg/x"),
            (Method::GET, "/api/sessions"),
            (Method::GET, "/api/updates"),
            (Method::POST, "/api/list_sessions"),
            (Method::GET, "/sessions/x"),
            (Method::GET, "/signin/../api/sessions"),
        ] {
            assert!(!open_to_anonymous(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn loopback_names_and_addresses_are_served_others_are_not() {
        let p = guard(&[]);
        for host in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST",
            "[::1]:3000",
            "127.0.0.2",
        ] {
            assert_eq!(check(&p, Method::GET, &[("host", host)]), Ok(()), "{host}");
        }
        for host in [
            "rebind.evil.example",
            "evil.localhost",
            "localhost.evil.example",
            "10.0.0.1",
            "",
            "a b",
        ] {
            let refused = check(&p, Method::GET, &[("host", host)]);
            assert!(
                matches!(refused, Err(Refusal::ForeignHost(_))),
                "{host}: {refused:?}"
            );
        }
        // No Host at all: no browser sends that.
        assert_eq!(check(&p, Method::GET, &[]), Ok(()));
    }

    #[test]
    fn public_url_allowed_hosts_and_listen_address_are_served() {
        let p = guard(&[
            "--public-url=https://Paddock.Example.com",
            "--allowed-hosts=team.internal,10.1.2.3",
            "--addr=192.168.7.7:3000",
        ]);
        for host in [
            "paddock.example.com",
            "team.internal:8080",
            "10.1.2.3",
            "192.168.7.7:3000",
            "localhost",
        ] {
            assert_eq!(check(&p, Method::GET, &[("host", host)]), Ok(()), "{host}");
        }
        assert!(check(&p, Method::GET, &[("host", "192.168.7.8")]).is_err());
        assert_eq!(p.startup_warning(), None);
        assert!(guard(&["--port=8080"]).startup_warning().is_some());
        assert!(guard(&["--addr=0.0.0.0:3000"]).startup_warning().is_some());
        assert_eq!(guard(&[]).startup_warning(), None);
    }

    #[test]
    fn writes_from_other_origins_are_refused() {
        let p = guard(&[]);
        let host = ("host", "127.0.0.1:3000");
        let refused = |pairs: &[(&str, &str)]| {
            let r = check(&p, Method::POST, pairs);
            assert!(
                matches!(r, Err(Refusal::CrossOrigin(_))),
                "{pairs:?}: {r:?}"
            );
        };
        refused(&[host, ("origin", "http://evil.example")]);
        refused(&[host, ("origin", "http://127.0.0.1:8080")]);
        refused(&[host, ("origin", "https://127.0.0.1:3001")]);
        refused(&[host, ("origin", "http://localhost:3000")]);
        refused(&[host, ("origin", "null")]);
        refused(&[host, ("origin", "garbage")]);
        refused(&[host, ("origin", "http://evil.example@127.0.0.1:3000")]);
        refused(&[host, ("sec-fetch-site", "cross-site")]);
        refused(&[host, ("sec-fetch-site", "same-site")]);
        refused(&[host, ("referer", "http://evil.example/page")]);
        refused(&[
            host,
            ("origin", "null"),
            ("referer", "http://evil.example/"),
        ]);
        // The same-origin answer of one header does not excuse another's.
        refused(&[
            host,
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ]);
        // Every method that changes something.
        for method in [Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(check(&p, method, &[host, ("origin", "http://evil.example")]).is_err());
        }
    }

    #[test]
    fn own_origin_and_non_browsers_may_write() {
        let p = guard(&["--public-url=https://paddock.example.com"]);
        let host = ("host", "127.0.0.1:3000");
        let allowed = |pairs: &[(&str, &str)]| {
            assert_eq!(check(&p, Method::POST, pairs), Ok(()), "{pairs:?}");
        };
        allowed(&[host, ("origin", "http://127.0.0.1:3000")]);
        allowed(&[("host", "localhost"), ("origin", "http://localhost")]);
        allowed(&[("host", "[::1]:3000"), ("origin", "http://[::1]:3000")]);
        allowed(&[host, ("origin", "null"), ("sec-fetch-site", "same-origin")]);
        allowed(&[host, ("sec-fetch-site", "none")]);
        allowed(&[host, ("referer", "http://127.0.0.1:3000/sessions/x")]);
        // Behind a proxy that rewrites Host to ours, the public origin.
        allowed(&[host, ("origin", "https://paddock.example.com")]);
        allowed(&[
            ("host", "paddock.example.com"),
            ("origin", "https://paddock.example.com:443"),
        ]);
        // Reached on the public name at another port, as itself.
        allowed(&[
            ("host", "paddock.example.com:3000"),
            ("origin", "http://paddock.example.com:3000"),
        ]);
        // …but not a plain-http page on the public name.
        for origin in [
            "http://paddock.example.com",
            "http://paddock.example.com:443",
        ] {
            assert!(check(
                &p,
                Method::POST,
                &[("host", "paddock.example.com"), ("origin", origin)]
            )
            .is_err());
        }
        // A public URL on a port of its own, behind a proxy that passes the
        // name alone: its https origin, not a plain-http page on the name.
        let on_port = guard(&["--public-url=https://paddock.example.com:8443"]);
        let named = ("host", "paddock.example.com");
        assert_eq!(
            check(
                &on_port,
                Method::POST,
                &[named, ("origin", "https://paddock.example.com:8443")]
            ),
            Ok(())
        );
        assert!(check(
            &on_port,
            Method::POST,
            &[named, ("origin", "http://paddock.example.com")]
        )
        .is_err());
        // curl, scripts.
        allowed(&[host]);
        allowed(&[]);
        // Reads are not checked for their origin.
        assert_eq!(
            check(&p, Method::GET, &[host, ("origin", "http://evil.example")]),
            Ok(())
        );
    }
}
