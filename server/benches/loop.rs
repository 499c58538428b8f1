//! The agent loop under load, end to end, with the real pieces: the `paddock`
//! binary built by this bench (release optimisation; spawned, so the RSS read
//! from `/proc/<pid>/status` is the server's alone), a SQLite file in a
//! temporary folder, Docker sandboxes running the tools, the scripted model
//! server, and real HTTP clients reading `/api/sessions/{id}/events`.
//!
//!     cargo bench --bench loop           # needs dockerd and the agent image
//!     LOOP_BENCH_SESSIONS=20 LOOP_BENCH_VIEWERS=200 cargo bench --bench loop
//!
//! In order, on one server: a scripted 20-tool-call task (wall time from the
//! prompt's POST to the session going idle); `SESSIONS` sessions each running
//! a task with a tool call at once (errors, wall time); the server's RSS idle
//! and with those sessions live; the latency Paddock adds between the model
//! emitting each token delta and a viewer receiving it, while all those
//! sessions stream at once; and `VIEWERS` viewers of one session, each of
//! which must receive every stored event exactly once.
//!
//! Delta latency is measured on one clock. The scripted models run in this
//! process behind a small front that hands each session's requests to that
//! session's own scenario (a `ScriptedModel` has one cursor, so sessions
//! sharing one would take each other's turns; the front tells them apart by
//! the system prompt, which Paddock sends on every call). The front passes
//! the reply's SSE frames through to hyper one by one and notes the instant
//! each text delta went out; every delta's text is unique, and the viewers,
//! in this process too, note the instant the same text arrives. Between the
//! two is everything Paddock adds: its HTTP client and SSE parser, the
//! engine, the hub, the event-stream route and both loopback hops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/listening.rs"]
mod listening;

use app::domain::{Delta, Event, EventKind, Session, SessionStatus};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use common::{ms, percentile};
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::future::join_all;
use futures_util::{Stream, StreamExt};
use listening::listening_url;
use paddock_model::{Scenario, ScriptedModel};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// Characters per text delta (the scripted model's default chunk).
const CHUNK: usize = 16;
/// Longest wait for any one frame, or for a run to end.
const PATIENCE: Duration = Duration::from_secs(120);

/// What to run, from `LOOP_BENCH_*` variables.
struct Params {
    /// Sessions working (and then streaming) at once.
    sessions: usize,
    /// Viewers of the one crowded session.
    viewers: usize,
    /// Text deltas each session streams in the latency run.
    deltas: usize,
    /// Pause between two SSE events of a streamed reply.
    delay_ms: u64,
    /// Runs of the 20-tool-call task.
    tool_runs: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Params {
    fn from_env() -> Self {
        Self {
            sessions: env_or("LOOP_BENCH_SESSIONS", 50),
            viewers: env_or("LOOP_BENCH_VIEWERS", 1000),
            deltas: env_or("LOOP_BENCH_DELTAS", 250),
            delay_ms: env_or("LOOP_BENCH_DELAY_MS", 20),
            tool_runs: env_or("LOOP_BENCH_TOOL_RUNS", 5),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap()
}

// ------------------------------------------------------ scripted models ---

/// The model endpoint Paddock is pointed at: one scripted model per session,
/// chosen by the request's system prompt.
#[derive(Default)]
struct Front {
    models: Mutex<HashMap<String, Upstream>>,
    /// When each text delta of a timed session was handed to hyper.
    emitted: Mutex<HashMap<String, Instant>>,
}

#[derive(Clone)]
struct Upstream {
    router: axum::Router,
    timed: bool,
}

impl Front {
    /// Serves the session whose system prompt is `key` from `turns`; `timed`
    /// notes when each of its text deltas goes out.
    fn script(&self, key: &str, turns: Value, timed: bool) {
        let scenario = Scenario::from_json(&turns.to_string()).unwrap();
        let router = ScriptedModel::new(scenario).router();
        lock(&self.models).insert(key.to_owned(), Upstream { router, timed });
    }

    async fn spawn(self: Arc<Self>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // No Nagle delay on this hop: the real API streams each event as it
        // is written, and a held-back frame would count against Paddock.
        let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
        let app = axum::Router::new().fallback(forward).with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}

async fn forward(State(front): State<Arc<Front>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let key = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["system"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let Some(upstream) = lock(&front.models).get(&key).cloned() else {
        let message = format!("no scenario for the system prompt {key:?}");
        return (StatusCode::NOT_FOUND, message).into_response();
    };
    let response = upstream
        .router
        .oneshot(Request::from_parts(parts, Body::from(body)))
        .await
        .unwrap_or_else(|never| match never {});
    if !upstream.timed {
        return response;
    }
    // The scripted server yields one SSE event per body frame, after its
    // delay; hyper writes each to the socket as soon as it is yielded.
    let (parts, body) = response.into_parts();
    let frames = body.into_data_stream().inspect(move |frame| {
        let now = Instant::now();
        if let Some(text) = frame.as_ref().ok().and_then(|f| text_delta(f)) {
            lock(&front.emitted).insert(text, now);
        }
    });
    Response::from_parts(parts, Body::from_stream(frames))
}

/// The text of a `content_block_delta` frame carrying a `text_delta`.
fn text_delta(frame: &[u8]) -> Option<String> {
    let frame = std::str::from_utf8(frame).ok()?;
    let data = frame
        .strip_prefix("event: content_block_delta\n")?
        .strip_prefix("data: ")?;
    let event: Value = serde_json::from_str(data.trim_end()).ok()?;
    event["delta"]["text"].as_str().map(str::to_owned)
}

/// Text made of `n` deltas of exactly [`CHUNK`] characters, each unique in
/// the whole run (`tag` tells sessions apart).
fn unique_text(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            let piece = format!("{tag}.{i}");
            assert!(piece.len() < CHUNK, "{piece} does not fit a delta");
            format!("{piece:<width$}", width = CHUNK)
        })
        .collect()
}

/// A task of one tool call: a bash command in the sandbox, checked by the
/// next turn, which ends it.
fn one_tool_task(i: usize) -> [Value; 2] {
    let command = format!("echo done-{i} > out.txt && cat out.txt");
    [
        json!({"reply": [{"text": "Writing the file."},
                         {"tool_use": {"name": "bash", "input": {"command": command}}}]}),
        json!({"expect": {"tool_result_contains": format!("done-{i}")}, "reply": "Done."}),
    ]
}

/// 20 tool calls, one per model turn, alternating `write_file` (the host
/// writes into the workspace) and `bash` (an exec in the container) whose
/// output the next turn checks, then a final answer.
fn twenty_tool_task() -> Value {
    let mut turns = Vec::new();
    let mut expect = json!({});
    for step in 0..20 {
        let tool = if step % 2 == 0 {
            json!({"name": "write_file",
                   "input": {"path": format!("step{step}.txt"), "content": format!("step {step}\n")}})
        } else {
            json!({"name": "bash",
                   "input": {"command": format!("cat step{}.txt >> log.txt && echo lines=$(wc -l < log.txt)", step - 1)}})
        };
        turns.push(json!({
            "expect": expect,
            "reply": [{"text": format!("Step {step} of 20.")}, {"tool_use": tool}],
        }));
        expect = if step % 2 == 0 {
            json!({"tool_result_contains": "step"})
        } else {
            json!({"tool_result_contains": format!("lines={}", step / 2 + 1)})
        };
    }
    turns.push(json!({"expect": expect, "reply": "All 20 steps done."}));
    Value::Array(turns)
}

// ------------------------------------------------------------ the server ---

/// The real `paddock` binary, on its own SQLite file and workspaces.
struct Paddock {
    child: Child,
    url: String,
    workspaces: PathBuf,
    /// Log lines saying a viewer fell behind and was caught up from the store.
    lag_recoveries: Arc<AtomicUsize>,
    /// Log lines at ERROR level.
    errors_logged: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Paddock {
    fn spawn(model_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let workspaces = std::fs::canonicalize(dir.path())
            .unwrap()
            .join("workspaces");
        let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
            .env("PADDOCK_ADDR", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/paddock.db", dir.path().display()),
            )
            .env("WORKSPACE_ROOT", &workspaces)
            .env("PADDOCK_MASTER_KEY_FILE", dir.path().join("master.key"))
            // The loop, not the door (the identity bench measures that).
            .env("PADDOCK_AUTH", "off")
            .env("PADDOCK_SANDBOX", "docker")
            .env("ANTHROPIC_BASE_URL", model_url)
            .env("ANTHROPIC_API_KEY", "sk-bench")
            .env_remove("RUST_LOG") // the default filter, as deployed
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = listening_url(&mut lines);
        let lag_recoveries = Arc::new(AtomicUsize::new(0));
        let errors_logged = Arc::new(AtomicUsize::new(0));
        let (lag, errors) = (lag_recoveries.clone(), errors_logged.clone());
        // Drain the log (a full pipe would block the server), counting.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("fell behind") {
                    lag.fetch_add(1, Ordering::Relaxed);
                }
                if line.contains(" ERROR ") {
                    errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("paddock: {line}");
                }
            }
        });
        Self {
            child,
            url,
            workspaces,
            lag_recoveries,
            errors_logged,
            _dir: dir,
        }
    }

    /// Resident set size of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// CPU time (user + system, all threads) the server has used so far.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // After the parenthesised command name come fields 3, 4, …; utime
        // and stime are fields 14 and 15, in USER_HZ ticks (100 a second).
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        Duration::from_millis((fields[11] + fields[12]) * 10)
    }
}

impl Drop for Paddock {
    /// Whatever happened, no server and no container is left behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let names: Vec<String> = std::fs::read_dir(&self.workspaces)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!("paddock-{}", e.file_name().to_string_lossy()))
            .collect();
        if !names.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&names)
                .output();
        }
    }
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows
/// in every figure here, so the report says how busy it was.
fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap();
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// How many of these sessions' containers are running.
fn containers_running(sessions: &[Session]) -> usize {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}"])
        .args(sessions.iter().map(|s| format!("paddock-{}", s.id)))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "true")
        .count()
}

/// Waits until the sandboxes warmed up at creation are running, so a
/// measurement starts from live sessions.
async fn wait_for_sandboxes(sessions: &[Session]) {
    let deadline = Instant::now() + PATIENCE;
    while containers_running(sessions) < sessions.len() {
        assert!(Instant::now() < deadline, "sandboxes did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// --------------------------------------------------------------- clients ---

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn create(&self, name: &str, system_prompt: &str) -> Session {
        let res = self
            .http
            .post(format!("{}/api/sessions", self.url))
            .json(&json!({"name": name, "system_prompt": system_prompt, "permission_mode": "auto"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        res.json().await.unwrap()
    }

    async fn get(&self, session: &Session) -> Session {
        let url = format!("{}/api/sessions/{}", self.url, session.id);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The `seq` of each session's newest event: a run that starts now ends
    /// with a status event after it.
    async fn last_seqs(&self, sessions: &[Session]) -> Vec<i64> {
        let sessions = join_all(sessions.iter().map(|s| self.get(s))).await;
        sessions.iter().map(|s| s.last_seq).collect()
    }

    /// Sends a prompt; an answer other than 202 is an error.
    async fn prompt(&self, session: &Session, text: &str) -> Result<(), String> {
        let url = format!("{}/api/sessions/{}/prompt", self.url, session.id);
        let res = self
            .http
            .post(url)
            .json(&json!({ "text": text }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match res.status() {
            StatusCode::ACCEPTED => Ok(()),
            status => Err(format!("prompt: {status}")),
        }
    }

    async fn delete(&self, session: &Session) {
        let url = format!("{}/api/sessions/{}", self.url, session.id);
        let res = self.http.delete(url).send().await.unwrap();
        assert_eq!(res.status(), 204);
    }

    /// Connects a viewer to the session's event stream, from its start.
    async fn watch(&self, session: &Session) -> Viewer {
        let url = format!("{}/api/sessions/{}/events", self.url, session.id);
        let res = self.http.get(url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        Viewer {
            frames: Box::pin(res.bytes_stream().eventsource()),
        }
    }
}

type Frames = Pin<
    Box<
        dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

struct Viewer {
    frames: Frames,
}

/// What a viewer saw of one run.
#[derive(Default)]
struct Seen {
    /// Every event `seq` received, in order (the replay included).
    seqs: Vec<i64>,
    /// Text deltas and when each arrived, when asked for.
    deltas: Vec<(String, Instant)>,
    delta_count: usize,
    /// Failures the transcript reports: error events, failed tools, an
    /// error status.
    errors: Vec<String>,
    /// When the run's final status arrived.
    done: Option<Instant>,
}

impl Viewer {
    /// Reads until the run that follows event `after` ends (a status event
    /// after it saying idle or error).
    async fn until_done(&mut self, after: i64, keep_deltas: bool) -> Seen {
        let mut seen = Seen::default();
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.frames.next())
                .await
                .expect("no frame in time")
                .expect("the stream ended")
                .expect("a readable frame");
            let now = Instant::now();
            if frame.event == "delta" {
                seen.delta_count += 1;
                if keep_deltas {
                    let delta: Delta = serde_json::from_str(&frame.data).unwrap();
                    seen.deltas.push((delta.text, now));
                }
                continue;
            }
            // The workspace's changes (`files`), and whatever else is not
            // a stored event.
            if frame.event != "event" {
                continue;
            }
            let event: Event = serde_json::from_str(&frame.data).unwrap();
            seen.seqs.push(event.seq);
            match event.kind {
                EventKind::Error { message } => seen.errors.push(message),
                EventKind::ToolResult {
                    is_error: true,
                    output,
                    ..
                } => seen.errors.push(format!("tool failed: {output}")),
                EventKind::Status { status, message } if event.seq > after => match status {
                    SessionStatus::Idle => {
                        seen.done = Some(now);
                        return seen;
                    }
                    SessionStatus::Error => {
                        seen.errors.push(format!("session error: {message:?}"));
                        seen.done = Some(now);
                        return seen;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// Runs `until_done` for every viewer at once; gives the viewers back.
async fn all_done(viewers: Vec<Viewer>, afters: &[i64], keep_deltas: bool) -> Vec<(Viewer, Seen)> {
    let tasks: Vec<_> = viewers
        .into_iter()
        .zip(afters.to_vec())
        .map(|(mut viewer, after)| {
            tokio::spawn(async move {
                let seen = viewer.until_done(after, keep_deltas).await;
                (viewer, seen)
            })
        })
        .collect();
    join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Raises this process's open-file limit to its hard limit (the server,
/// spawned from here, inherits it): every viewer is a socket on each side.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).unwrap();
    limit.current.unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------- benches ---

/// A scripted 20-tool-call task in a fresh session (sandbox already up):
/// wall time from the prompt's POST to a viewer receiving the idle status.
async fn twenty_tools(api: &Api, front: &Front, paddock: &Paddock, run: usize) -> Duration {
    let key = format!("bench-tools-{run}");
    front.script(&key, twenty_tool_task(), false);
    let session = api.create(&key, &key).await;
    wait_for_sandboxes(std::slice::from_ref(&session)).await;
    let mut viewer = api.watch(&session).await;
    let after = api.get(&session).await.last_seq;
    let start = Instant::now();
    api.prompt(&session, "Do the twenty steps.").await.unwrap();
    let seen = viewer.until_done(after, false).await;
    let took = seen.done.unwrap() - start;
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    let log = paddock
        .workspaces
        .join(session.id.to_string())
        .join("log.txt");
    assert_eq!(std::fs::read_to_string(log).unwrap().lines().count(), 10);
    api.delete(&session).await;
    took
}

fn report_latency(mut samples: Vec<Duration>) {
    let n = samples.len();
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    let p999 = percentile(&mut samples, 0.999);
    let max = *samples.last().unwrap();
    println!("| deltas timed | p50 | p99 | p99.9 | max |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {n} | {} | {} | {} | {} |",
        ms(p50),
        ms(p99),
        ms(p999),
        ms(max)
    );
}

#[tokio::main]
async fn main() {
    let p = Params::from_env();
    let fd_limit = raise_fd_limit();
    let front = Arc::new(Front::default());
    let model_url = front.clone().spawn().await;
    let paddock = Paddock::spawn(&model_url);
    let api = Api {
        http: reqwest::Client::new(),
        url: paddock.url.clone(),
    };
    println!(
        "\npaddock pid {}, open-file limit {fd_limit}, load average {}",
        paddock.child.id(),
        load_average()
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_start = paddock.rss_kib();

    // ---- a scripted 20-tool-call task, alone on the server
    let mut runs: Vec<Duration> = Vec::new();
    for run in 0..p.tool_runs {
        runs.push(twenty_tools(&api, &front, &paddock, run).await);
    }
    println!(
        "\n## 20-tool-call task ({} runs; 21 model turns, 10 write_file + 10 bash)\n",
        p.tool_runs
    );
    println!("| p50 | min | max | per tool call (p50 / 20) |");
    println!("| --- | --- | --- | --- |");
    let p50 = percentile(&mut runs, 0.5);
    println!(
        "| {} | {} | {} | {} |",
        ms(p50),
        ms(runs[0]),
        ms(*runs.last().unwrap()),
        ms(p50 / 20)
    );

    // ---- SESSIONS sessions, each a task with a tool call, all at once
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = paddock.rss_kib();
    let keys: Vec<String> = (0..p.sessions).map(|i| format!("bench-{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let [first, second] = one_tool_task(i);
        let stream = json!({
            "expect": {"contains": "stream"},
            "reply": unique_text(&format!("s{i}"), p.deltas),
            "chunk": CHUNK,
            "delay_ms": p.delay_ms,
        });
        front.script(key, json!([first, second, stream]), true);
    }
    let sessions: Vec<Session> = join_all(keys.iter().map(|k| api.create(k, k))).await;
    wait_for_sandboxes(&sessions).await;
    let viewers: Vec<Viewer> = join_all(sessions.iter().map(|s| api.watch(s))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_no_prompt = paddock.rss_kib();

    let afters = api.last_seqs(&sessions).await;
    let start = Instant::now();
    let posted = join_all(sessions.iter().map(|s| api.prompt(s, "Write out.txt"))).await;
    let results = all_done(viewers, &afters, false).await;
    let wall = results
        .iter()
        .map(|(_, seen)| seen.done.unwrap() - start)
        .max()
        .unwrap();
    let mut errors: Vec<String> = posted.into_iter().filter_map(Result::err).collect();
    for (i, (session, (_, seen))) in sessions.iter().zip(&results).enumerate() {
        errors.extend(seen.errors.iter().cloned());
        let out = paddock
            .workspaces
            .join(session.id.to_string())
            .join("out.txt");
        if std::fs::read_to_string(&out).ok() != Some(format!("done-{i}\n")) {
            errors.push(format!("{} was not written", out.display()));
        }
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    println!(
        "\n## {} concurrent sessions, one bash tool call each\n",
        p.sessions
    );
    println!("| sessions | errors | wall time (all prompts POSTed → last idle) |");
    println!("| --- | --- | --- |");
    println!("| {} | {} | {} |", p.sessions, errors.len(), ms(wall));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_live = paddock.rss_kib();

    // ---- delta latency, every session streaming at once
    let viewers: Vec<Viewer> = results.into_iter().map(|(v, _)| v).collect();
    let afters = api.last_seqs(&sessions).await;
    lock(&front.emitted).clear();
    let (cpu_before, start) = (paddock.cpu_time(), Instant::now());
    let posted = join_all(sessions.iter().map(|s| api.prompt(s, "Now stream"))).await;
    assert!(posted.iter().all(Result::is_ok), "{posted:?}");
    let results = all_done(viewers, &afters, true).await;
    let (cpu, wall) = (paddock.cpu_time() - cpu_before, start.elapsed());
    let emitted = std::mem::take(&mut *lock(&front.emitted));
    let mut samples = Vec::new();
    let mut unmatched = 0;
    for (_, seen) in &results {
        assert!(seen.errors.is_empty(), "{:?}", seen.errors);
        for (text, received) in &seen.deltas {
            match emitted.get(text) {
                Some(sent) => samples.push(*received - *sent),
                None => unmatched += 1,
            }
        }
    }
    let received: HashSet<&String> = results
        .iter()
        .flat_map(|(_, seen)| seen.deltas.iter().map(|(text, _)| text))
        .collect();
    let lost = emitted.keys().filter(|t| !received.contains(t)).count();
    println!(
        "\n## Delta latency, model emits → viewer receives ({} sessions streaming at once, {} deltas of {CHUNK} chars each, {} ms apart)\n",
        p.sessions, p.deltas, p.delay_ms
    );
    report_latency(samples);
    println!(
        "\ndeltas emitted {}, lost {lost}, unmatched {unmatched}; server CPU {} in {} ({:.0} µs per delta, everything included)",
        emitted.len(),
        ms(cpu),
        ms(wall),
        cpu.as_secs_f64() * 1e6 / emitted.len() as f64
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_streamed = paddock.rss_kib();

    println!("\n## Server RSS (VmRSS of the paddock process)\n");
    println!("| state | RSS |");
    println!("| --- | --- |");
    println!("| idle, 2 s after start | {} |", mib(rss_start));
    println!(
        "| idle, after the 20-tool runs (sessions deleted) | {} |",
        mib(rss_before)
    );
    println!(
        "| {} sessions live (sandbox up, a viewer each), before any prompt | {} |",
        p.sessions,
        mib(rss_no_prompt)
    );
    println!(
        "| {} sessions live, after their tool-call task | {} |",
        p.sessions,
        mib(rss_live)
    );
    println!(
        "| {} sessions live, after streaming | {} |",
        p.sessions,
        mib(rss_streamed)
    );
    let per_session = |rss: u64| {
        format!(
            "{:.2} MiB",
            rss.saturating_sub(rss_before) as f64 / 1024.0 / p.sessions as f64
        )
    };
    println!(
        "\nper live session (vs. idle before them): before any prompt {}, after the task {}, after streaming {}",
        per_session(rss_no_prompt),
        per_session(rss_live),
        per_session(rss_streamed)
    );

    join_all(sessions.iter().map(|s| api.delete(s))).await;
    drop(results);

    // ---- VIEWERS viewers of one session, after the same run with one
    println!(
        "\n## Viewers of one session (5 tool turns + a final answer: {CROWD_DELTAS} text deltas, {} ms apart)\n",
        p.delay_ms
    );
    println!("| viewers | events each | viewers with a gap or duplicate | connect all | prompt → first viewer done | prompt → last viewer done | deltas per viewer (min–max) | lag catch-ups | server CPU | RSS with viewers connected |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let rss_one = crowd(&api, &front, &paddock, 1, p.delay_ms).await;
    let rss_all = crowd(&api, &front, &paddock, p.viewers, p.delay_ms).await;
    println!(
        "\nRSS per viewer: {:.1} KiB",
        rss_all.saturating_sub(rss_one) as f64 / (p.viewers - 1) as f64
    );
    println!(
        "\nserver log: {} ERROR lines; load average {}",
        paddock.errors_logged.load(Ordering::Relaxed),
        load_average()
    );
    assert_cleaned_up(&paddock.workspaces);
}

/// Text deltas of the crowd's run: 40 in each of its 6 turns.
const CROWD_DELTAS: usize = 6 * 40;

/// `viewers` viewers of one fresh session, connected before its prompt:
/// each must receive every stored event exactly once, in order. Prints a
/// table row; returns the server's RSS with the viewers connected (KiB).
async fn crowd(api: &Api, front: &Front, paddock: &Paddock, viewers: usize, delay_ms: u64) -> u64 {
    let key = format!("bench-crowd-{viewers}");
    let mut turns: Vec<Value> = (0..5)
        .map(|t| {
            json!({
                "reply": [
                    {"text": unique_text(&format!("c{t}"), CROWD_DELTAS / 6)},
                    {"tool_use": {"name": "bash", "input": {"command": format!("echo turn {t}")}}},
                ],
                "delay_ms": delay_ms,
            })
        })
        .collect();
    turns.push(json!({"reply": unique_text("cend", CROWD_DELTAS / 6), "delay_ms": delay_ms}));
    front.script(&key, Value::Array(turns), false);
    let session = api.create(&key, &key).await;
    wait_for_sandboxes(std::slice::from_ref(&session)).await;
    let connecting = Instant::now();
    let crowd: Vec<Viewer> = join_all((0..viewers).map(|_| api.watch(&session))).await;
    let connect_time = connecting.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = paddock.rss_kib();
    let after = api.get(&session).await.last_seq;
    let lag_before = paddock.lag_recoveries.load(Ordering::Relaxed);
    let (cpu_before, start) = (paddock.cpu_time(), Instant::now());
    api.prompt(&session, "Five steps for a crowd")
        .await
        .unwrap();
    let results = all_done(crowd, &vec![after; viewers], false).await;
    let cpu = paddock.cpu_time() - cpu_before;
    let first = results.iter().map(|(_, s)| s.done.unwrap()).min().unwrap() - start;
    let last = results.iter().map(|(_, s)| s.done.unwrap()).max().unwrap() - start;
    let last_seq = api.get(&session).await.last_seq;
    let expected: Vec<i64> = (1..=last_seq).collect();
    let (mut gapped, mut missing, mut duplicated) = (0, 0, 0);
    for (_, seen) in &results {
        assert!(seen.errors.is_empty(), "{:?}", seen.errors);
        if seen.seqs != expected {
            gapped += 1;
            let distinct: HashSet<i64> = seen.seqs.iter().copied().collect();
            missing += expected.iter().filter(|s| !distinct.contains(s)).count();
            duplicated += seen.seqs.len() - distinct.len();
        }
    }
    let deltas: Vec<usize> = results.iter().map(|(_, s)| s.delta_count).collect();
    println!(
        "| {viewers} | {last_seq} | {gapped} (missing {missing}, duplicated {duplicated}) | {} | {} | {} | {}–{} | {} | {} | {} |",
        ms(connect_time),
        ms(first),
        ms(last),
        deltas.iter().min().unwrap(),
        deltas.iter().max().unwrap(),
        paddock.lag_recoveries.load(Ordering::Relaxed) - lag_before,
        ms(cpu),
        mib(rss),
    );
    drop(results);
    api.delete(&session).await;
    rss
}

/// Every session was deleted: no workspace may remain.
fn assert_cleaned_up(workspaces: &Path) {
    let left = std::fs::read_dir(workspaces).map_or(0, |d| d.count());
    assert_eq!(left, 0, "workspaces left behind");
}
