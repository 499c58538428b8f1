//! Deliveries to a trigger accepted per second, from the signature's check
//! to the queued prompt: the real `paddock` binary on its own SQLite file
//! (local sandboxes, sign-in off), the scripted model answering the runs
//! the deliveries queue, and senders posting signed deliveries from
//! `SENDERS` connections at once.
//!
//!     cargo bench --bench triggers
//!
//! Two cases: every delivery continuing one conversation's session (the
//! check, the claim, the transcript's delivery event and the queued
//! prompt), and every delivery starting a session of its own (the same,
//! plus making the session, whose workspace and sandbox are prepared in
//! the background). Latency is each delivery's, from sending it to its 202;
//! one put off (503: its conversation's session has 32 prompts waiting) is
//! sent again 20 ms later, and counted.
//!
//! Then notifications: a template's endpoint on a loopback receiver, and
//! `NOTIFIED_RUNS` runs of its session one after another; the delay is from
//! the run's end (the `finished` event's time, which the message carries)
//! to the message arriving at the receiver.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/listening.rs"]
mod listening;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{ms, percentile};
use hmac::{Hmac, Mac};
use listening::listening_url;
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SENDERS: usize = 8;
/// Runs whose notification is timed.
const NOTIFIED_RUNS: usize = 200;

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

fn start(dir: &std::path::Path, model: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/paddock.db", dir.display()),
        )
        .env("WORKSPACE_ROOT", dir.join("workspaces"))
        .env("PADDOCK_MASTER_KEY_FILE", dir.join("master.key"))
        .env("PADDOCK_SANDBOX", "local")
        .env("PADDOCK_SANDBOX_DISK_MB", "0")
        .env("PADDOCK_AUTH", "off")
        .env("PADDOCK_TRIGGER_DELIVERIES_PER_MINUTE", "100000")
        .env("ANTHROPIC_BASE_URL", model)
        .env("ANTHROPIC_API_KEY", "sk-bench")
        .env("PADDOCK_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn,server=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = listening_url(&mut lines);
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

/// A new agent template's id.
async fn new_template(http: &reqwest::Client, url: &str, name: &str) -> String {
    let template: Value = http
        .post(format!("{url}/api/templates"))
        .json(&json!({"name": name, "session": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    template["id"].as_str().unwrap().to_owned()
}

/// A trigger on a new template: its path and secret.
async fn trigger(
    http: &reqwest::Client,
    url: &str,
    conversation: Option<&str>,
) -> (String, String) {
    let template = new_template(http, url, "bench").await;
    let made: Value = http
        .post(format!("{url}/api/templates/{template}/triggers"))
        .json(&json!({"name": "bench", "prompt": "Look at {{ payload.n }}", "conversation": conversation}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        made["path"].as_str().unwrap().to_owned(),
        made["secret"].as_str().unwrap().to_owned(),
    )
}

fn signature(secret: &str, id: &str, at: i64, body: &str) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{at}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Sends `count` signed deliveries from [`SENDERS`] connections at once:
/// the wall time, each one's latency (from its first sending to its 202),
/// and how many times one was put off. A conversation's session holds 32
/// prompts waiting; a delivery past them is put off (503, "send it again
/// later") while its runs catch up, and is sent again 20 ms later, as a
/// sender would.
async fn deliver(
    url: &str,
    path: &str,
    secret: &str,
    count: usize,
    tag: &str,
) -> (Duration, Vec<Duration>, usize) {
    let started = Instant::now();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (url, path, secret, tag) = (
            url.to_owned(),
            path.to_owned(),
            secret.to_owned(),
            tag.to_owned(),
        );
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut latencies, mut put_off) = (Vec::new(), 0);
            for i in (s..count).step_by(SENDERS) {
                let body = json!({"n": i, "thread": "one"}).to_string();
                let id = format!("{tag}-{i}");
                let sent = Instant::now();
                loop {
                    let at = chrono::Utc::now().timestamp();
                    let res = http
                        .post(format!("{url}{path}"))
                        .header("content-type", "application/json")
                        .header("webhook-id", &id)
                        .header("webhook-timestamp", at.to_string())
                        .header("webhook-signature", signature(&secret, &id, at, &body))
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    if res.status() == 503 {
                        assert!(
                            sent.elapsed() < Duration::from_secs(30),
                            "put off for 30 s: {}",
                            res.text().await.unwrap()
                        );
                        put_off += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
                    break;
                }
                latencies.push(sent.elapsed());
            }
            (latencies, put_off)
        }));
    }
    let (mut latencies, mut put_off) = (Vec::new(), 0);
    for s in senders {
        let (theirs, off) = s.await.unwrap();
        latencies.extend(theirs);
        put_off += off;
    }
    (started.elapsed(), latencies, put_off)
}

/// Times [`NOTIFIED_RUNS`] notifications: from each run's end to its
/// message's arrival.
async fn notification_delays(http: &reqwest::Client, url: &str) -> Vec<Duration> {
    let (arrived, mut arrivals) =
        tokio::sync::mpsc::unbounded_channel::<(chrono::DateTime<chrono::Utc>, String)>();
    let receiver = axum::Router::new().fallback(move |body: String| {
        let arrived = arrived.clone();
        async move {
            let _ = arrived.send((chrono::Utc::now(), body));
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let template = new_template(http, url, "notified").await;
    let res = http
        .post(format!("{url}/api/templates/{template}/notifications"))
        .json(&json!({"url": hook, "events": ["finished"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let session: Value = http
        .post(format!("{url}/api/sessions"))
        .json(&json!({"name": "notified", "template": template}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = session["id"].as_str().unwrap();
    let mut delays = Vec::new();
    for i in 0..NOTIFIED_RUNS {
        let res = http
            .post(format!("{url}/api/sessions/{session}/prompt"))
            .json(&json!({"text": format!("Run {i}")}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        let (at, body) = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await
            .expect("a notification")
            .unwrap();
        let message: Value = serde_json::from_str(&body).unwrap();
        let finished =
            chrono::DateTime::parse_from_rfc3339(message["timestamp"].as_str().unwrap()).unwrap();
        delays.push(
            (at - finished.with_timezone(&chrono::Utc))
                .to_std()
                .unwrap_or_default(),
        );
    }
    delays
}

fn report(
    case: &str,
    count: usize,
    (wall, latencies, put_off): &mut (Duration, Vec<Duration>, usize),
) {
    println!(
        "| {case} | {count} | {:.0}/s | {} | {} | {put_off} |",
        count as f64 / wall.as_secs_f64(),
        ms(percentile(latencies, 0.5)),
        ms(percentile(latencies, 0.99)),
    );
}

#[tokio::main]
async fn main() {
    let continued: usize = std::env::var("TRIGGER_BENCH_DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let started = continued / 5;
    let turns: Vec<Value> = (0..continued + started + 100 + NOTIFIED_RUNS)
        .map(|_| json!({"reply": "Looked."}))
        .collect();
    let model = paddock_model::ScriptedModel::new(
        paddock_model::Scenario::from_json(&json!(turns).to_string()).unwrap(),
    );
    let model_url = format!("http://{}", model.spawn().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &model_url);
    let http = reqwest::Client::new();

    let (path, secret) = trigger(&http, &server.url, Some("{{ payload.thread }}")).await;
    // Warm up: the conversation's session made, connections and caches.
    deliver(&server.url, &path, &secret, 50, "warm").await;
    let mut one = deliver(&server.url, &path, &secret, continued, "one").await;
    let (path, secret) = trigger(&http, &server.url, None).await;
    let mut new = deliver(&server.url, &path, &secret, started, "new").await;

    println!("\n{SENDERS} senders at once, one run\n");
    println!("| deliveries | count | accepted | latency p50 | latency p99 | put off |");
    println!("| --- | --- | --- | --- | --- | --- |");
    report("continuing one conversation", continued, &mut one);
    report("each starting a session", started, &mut new);

    let mut delays = notification_delays(&http, &server.url).await;
    println!("\nnotifications, one endpoint, runs one after another\n");
    println!("| runs | run finished → message received p50 | p99 |");
    println!("| --- | --- | --- |");
    println!(
        "| {} | {} | {} |",
        delays.len(),
        ms(percentile(&mut delays, 0.5)),
        ms(percentile(&mut delays, 0.99))
    );
    drop(server);
}
