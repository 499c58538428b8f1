//! What the door's identity check costs: the real `paddock` binary, twice in
//! one run (sign-in off, and on), on its own SQLite file.
//!
//!     cargo bench --bench identity
//!
//! - a REST call (`GET /api/sessions/{id}`) with no credentials (sign-in
//!   off), with an API token, and with a browser session cookie;
//! - connecting an event stream (`GET /api/sessions/{id}/events`: until its
//!   response headers arrive), off and with a token;
//! - the server's resident memory per connected viewer, off and on (an
//!   open stream with sign-in on also watches for access changes).
//!
//! Latency is p50/p99 over sequential requests on one kept-alive connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // this bench prints microseconds, not `common::ms`
mod common;
#[path = "common/listening.rs"]
mod listening;

use common::percentile;
use listening::listening_url;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REQUESTS: usize = 2000;
const CONNECTS: usize = 300;
const VIEWERS: usize = 500;
const PASSWORD: &str = "bench password, long enough";

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Resident memory, from /proc.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

fn command(dir: &Path, auth: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_paddock"));
    c.env(
        "DATABASE_URL",
        format!("sqlite://{}/paddock.db", dir.display()),
    )
    .env("WORKSPACE_ROOT", dir.join("workspaces"))
    .env("PADDOCK_MASTER_KEY_FILE", dir.join("master.key"))
    .env("PADDOCK_SANDBOX", "local")
    .env("PADDOCK_AUTH", auth)
    .env("RUST_LOG", "warn,server=info")
    .env("NO_COLOR", "1");
    c
}

fn start(dir: &Path, auth: &str) -> Server {
    let mut child = command(dir, auth)
        .env("PADDOCK_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = listening_url(&mut lines);
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

/// Credentials for one request.
#[derive(Clone, Copy)]
enum Credential<'a> {
    None,
    Token(&'a str),
    Cookie(&'a str),
}

fn with(req: reqwest::RequestBuilder, credential: Credential) -> reqwest::RequestBuilder {
    match credential {
        Credential::None => req,
        Credential::Token(t) => req.bearer_auth(t),
        Credential::Cookie(c) => req.header(reqwest::header::COOKIE, c),
    }
}

async fn rest_latency(
    http: &reqwest::Client,
    url: &str,
    credential: Credential<'_>,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS + 100 {
        let started = Instant::now();
        let res = with(http.get(url), credential).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
        if i >= 100 {
            samples.push(started.elapsed());
        }
    }
    samples
}

async fn connect_latency(url: &str, credential: Credential<'_>) -> Vec<Duration> {
    let http = reqwest::Client::new();
    let mut samples = Vec::with_capacity(CONNECTS);
    for _ in 0..CONNECTS {
        let started = Instant::now();
        let res = with(http.get(url), credential).send().await.unwrap();
        assert_eq!(res.status(), 200);
        samples.push(started.elapsed());
        drop(res);
    }
    samples
}

/// Resident memory added per open event stream.
async fn memory_per_viewer(server: &Server, url: &str, credential: Credential<'_>) -> f64 {
    // Warm up the allocator and the runtime with a first batch, closed again.
    let mut open = Vec::new();
    for _ in 0..VIEWERS {
        open.push(
            with(reqwest::Client::new().get(url), credential)
                .send()
                .await
                .unwrap(),
        );
    }
    drop(open);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();
    let mut open = Vec::new();
    for _ in 0..VIEWERS {
        let res = with(reqwest::Client::new().get(url), credential)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        open.push(res);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    drop(open);
    (after.saturating_sub(before)) as f64 / VIEWERS as f64
}

async fn create_session(
    http: &reqwest::Client,
    server: &Server,
    credential: Credential<'_>,
) -> String {
    let res = with(
        http.post(format!("{}/api/sessions", server.url)),
        credential,
    )
    .json(&serde_json::json!({"name": "bench"}))
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let s: serde_json::Value = res.json().await.unwrap();
    s["id"].as_str().unwrap().to_owned()
}

fn row(
    what: &str,
    samples: &mut [Duration],
    baseline: Option<(Duration, Duration)>,
) -> (Duration, Duration) {
    let p50 = percentile(samples, 0.5);
    let p99 = percentile(samples, 0.99);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let added = baseline.map_or(String::new(), |(b50, b99)| {
        format!(
            "  ({:+.0} µs p50, {:+.0} µs p99)",
            us(p50) - us(b50),
            us(p99) - us(b99)
        )
    });
    println!(
        "{what:<40} p50 {:>5.0} µs  p99 {:>5.0} µs{added}",
        us(p50),
        us(p99)
    );
    (p50, p99)
}

#[tokio::main]
async fn main() {
    let http = reqwest::Client::new();

    // Sign-in off: the baseline.
    let off_dir = tempfile::tempdir().unwrap();
    let off = start(off_dir.path(), "off");
    let off_id = create_session(&http, &off, Credential::None).await;
    let off_rest = format!("{}/api/sessions/{off_id}", off.url);
    let off_events = format!("{}/api/sessions/{off_id}/events", off.url);

    // Sign-in on: an account made by the CLI, a cookie and a token.
    let on_dir = tempfile::tempdir().unwrap();
    let mut add = command(on_dir.path(), "on")
        .args(["user", "add", "bench", "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(add.wait().unwrap().success());
    let on = start(on_dir.path(), "on");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = no_redirects
        .post(format!("{}/auth/signin", on.url))
        .header(reqwest::header::ORIGIN, &on.url)
        .form(&[("login", "bench"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let token: serde_json::Value = http
        .post(format!("{}/api/create_token", on.url))
        .header(reqwest::header::COOKIE, &cookie)
        .header(reqwest::header::ORIGIN, &on.url)
        .form(&[("name", "bench")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["secret"].as_str().unwrap().to_owned();
    let on_id = create_session(&http, &on, Credential::Token(&token)).await;
    let on_rest = format!("{}/api/sessions/{on_id}", on.url);
    let on_events = format!("{}/api/sessions/{on_id}/events", on.url);

    println!(
        "identity check, {REQUESTS} sequential REST calls and {CONNECTS} stream connects each:"
    );
    let base = row(
        "GET /api/sessions/{id}, sign-in off",
        &mut rest_latency(&http, &off_rest, Credential::None).await,
        None,
    );
    row(
        "GET /api/sessions/{id}, API token",
        &mut rest_latency(&http, &on_rest, Credential::Token(&token)).await,
        Some(base),
    );
    row(
        "GET /api/sessions/{id}, browser cookie",
        &mut rest_latency(&http, &on_rest, Credential::Cookie(&cookie)).await,
        Some(base),
    );
    let base = row(
        "connect an event stream, sign-in off",
        &mut connect_latency(&off_events, Credential::None).await,
        None,
    );
    row(
        "connect an event stream, API token",
        &mut connect_latency(&on_events, Credential::Token(&token)).await,
        Some(base),
    );
    let off_kib = memory_per_viewer(&off, &off_events, Credential::None).await;
    let on_kib = memory_per_viewer(&on, &on_events, Credential::Token(&token)).await;
    println!(
        "memory per connected viewer ({VIEWERS} open streams): sign-in off {off_kib:.1} KiB, on {on_kib:.1} KiB ({:+.1} KiB)",
        on_kib - off_kib
    );
}
