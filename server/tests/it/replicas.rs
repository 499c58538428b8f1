//! Three Paddock replicas on loopback serving one installation: one
//! PostgreSQL (the harness's cluster), one dockerd, one home folder
//! (workspaces and master key), each process under its own name. Viewers on
//! one replica follow sessions that run on another; prompts, decisions and
//! Stop sent to any replica reach the one running the session; and when
//! that one is killed (SIGKILL) mid-run, another takes its sessions over
//! once their lease lapses (a run cut off is interrupted, a question keeps
//! waiting), with no stored event lost or repeated and every viewer on the
//! survivors seeing each event once. A replica stopped with SIGTERM ends
//! its runs and hands its sessions over at once.

use crate::common::postgres;
use crate::common::rest::Rest;
use crate::common::{start_with, Binary};
use app::domain::{Event, EventKind, SessionStatus};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds a lease lasts without a heartbeat (the smallest allowed).
const LEASE_SECS: &str = "3";

fn replica(dir: &Path, name: &str, database: &str, model: &str) -> Binary {
    replica_with_lease(dir, name, database, model, LEASE_SECS)
}

fn replica_with_lease(dir: &Path, name: &str, database: &str, model: &str, lease: &str) -> Binary {
    start_with(
        dir,
        "127.0.0.1:0",
        &[
            ("DATABASE_URL", database),
            ("PADDOCK_REPLICA", name),
            ("PADDOCK_LEASE_SECS", lease),
            ("ANTHROPIC_BASE_URL", model),
            ("ANTHROPIC_API_KEY", "sk-test"),
        ],
    )
}

/// A viewer of one session's event stream on one replica, from its start.
struct Viewer {
    events: Arc<Mutex<Vec<Event>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Viewer {
    async fn open(rest: &Rest, session: &str) -> Self {
        let res = rest.stream(session).await;
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let task = tokio::spawn(async move {
            let mut frames = Box::pin(res.bytes_stream().eventsource());
            while let Some(Ok(frame)) = frames.next().await {
                if frame.event == "event" {
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_str(&frame.data).unwrap());
                }
            }
        });
        Self { events, task }
    }

    /// Waits until it has seen `last` events, then says which `seq`s it saw
    /// (in the order seen).
    async fn seqs_through(&self, last: i64) -> Vec<i64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seqs: Vec<i64> = self.events.lock().unwrap().iter().map(|e| e.seq).collect();
            if seqs.len() as i64 >= last || Instant::now() > deadline {
                // Anything late would be a duplicate: give it a moment.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.events.lock().unwrap().iter().map(|e| e.seq).collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The session's stored transcript, read from `rest`'s replica.
async fn stored(rest: &Rest, session: &str) -> Vec<Event> {
    let last = rest.session(session).await["last_seq"].as_i64().unwrap();
    rest.transcript(session, last).await
}

/// Waits until the session's status is `want`; how long that took.
async fn wait_status(
    rest: &Rest,
    session: &str,
    want: SessionStatus,
    logs: &dyn Fn() -> String,
) -> Duration {
    let started = Instant::now();
    loop {
        let s = rest.session(session).await;
        if s["status"] == want.as_str() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never {want}: {s}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the open permission request of the session; its id.
async fn wait_request(viewer: &Viewer) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = viewer
            .events
            .lock()
            .unwrap()
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::PermissionRequest { request_id, .. } => Some(request_id.clone()),
                _ => None,
            });
        if let Some(id) = open {
            return id;
        }
        assert!(Instant::now() < deadline, "no permission request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every viewer saw exactly the stored transcript: each `seq` once, in
/// order, none missing.
async fn all_saw(viewers: &[(&str, &Viewer)], transcript: &[Event]) {
    let want: Vec<i64> = (1..=transcript.len() as i64).collect();
    assert_eq!(
        transcript.iter().map(|e| e.seq).collect::<Vec<_>>(),
        want,
        "the stored transcript is gapless"
    );
    for (who, viewer) in viewers {
        let seqs = viewer.seqs_through(want.len() as i64).await;
        assert_eq!(seqs, want, "the viewer on {who} saw each event once");
        let seen = viewer.events.lock().unwrap().clone();
        assert_eq!(
            &seen[..],
            transcript,
            "the viewer on {who} saw what is stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_sessions_and_survive_a_sigkill() {
    let (_model, model) = crate::common::scripted(
        &json!([
            // The "ask" session, run on A, decided on C, queued on B.
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo yes > approved.txt"}}}]},
            {"expect": {"tool_result_contains": ""}, "reply": "Written."},
            {"expect": {"contains": ["and then this"]}, "reply": "Done too."},
            // Stopped on C while it runs on B.
            {"expect": {"contains": ["sleep now"]}, "reply": [{"tool_use": {"name": "bash", "input": {"command": "sleep 60"}}}]},
            // Two sessions on A when it is killed: one asking, one mid-tool.
            {"expect": {"contains": ["wait for me"]}, "reply": [{"tool_use": {"name": "bash", "input": {"command": "echo waited > waited.txt"}}}]},
            {"expect": {"contains": ["first task"]}, "reply": [{"tool_use": {"name": "bash", "input": {"command": "echo one > one.txt; sleep 60"}}}]},
            {"expect": {"tool_result_contains": ""}, "reply": "Waited."},
            {"expect": {"contains": ["first task", "interrupted", "second task"]}, "reply": "Resumed where we were."}
        ]),
        None,
    )
    .await;
    let database = postgres::database().await;
    let dir = std::fs::canonicalize(tempfile::tempdir().unwrap().keep()).unwrap();
    let a = replica(&dir, "a", &database, &model);
    let b = replica(&dir, "b", &database, &model);
    let c = replica(&dir, "c", &database, &model);
    let (ra, rb, rc) = (
        Rest::new(&a.url, None),
        Rest::new(&b.url, None),
        Rest::new(&c.url, None),
    );
    let logs = || format!("A:\n{}\nB:\n{}\nC:\n{}", a.log(), b.log(), c.log());

    // A session created on A is listed by the others.
    let asking = ra
        .create(json!({"name": "asking", "permission_mode": "ask"}))
        .await;
    let on_b = Viewer::open(&rb, &asking).await;
    let on_c = Viewer::open(&rc, &asking).await;

    // Prompted on A: it runs there and asks; the viewers on B and C see it.
    ra.prompt(&asking, "write it").await;
    let request = wait_request(&on_b).await;
    wait_request(&on_c).await;
    // A prompt sent to B meanwhile queues behind A's run.
    rb.prompt(&asking, "and then this").await;
    // The decision, sent to C, reaches A; a decision for no open request
    // is refused there.
    let res = rc
        .decide(&asking, "perm_none", json!({"decision": "allow"}))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = rc
        .decide(
            &asking,
            &request,
            json!({"decision": "allow_session", "reason": "fine"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT, "{}", logs());
    rb.wait_idle(&asking, 3, logs).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("workspaces").join(&asking).join("approved.txt")).unwrap(),
        "yes\n"
    );

    // Sent to B, it runs on B; Stop sent to C stops it there.
    rb.prompt(&asking, "sleep now").await;
    let sleeping = Instant::now();
    loop {
        let events = stored(&rb, &asking).await;
        if events.iter().any(|e| matches!(&e.kind, EventKind::ToolCall { input, .. } if input["command"] == "sleep 60")) {
            break;
        }
        assert!(sleeping.elapsed() < Duration::from_secs(60), "{}", logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = rc
        .request(Method::POST, &format!("/api/sessions/{asking}/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let stopped = wait_status(&ra, &asking, SessionStatus::Idle, &logs).await;
    assert!(stopped < Duration::from_secs(20), "Stop took {stopped:?}");
    let transcript = stored(&ra, &asking).await;
    assert!(
        transcript.iter().any(
            |e| matches!(&e.kind, EventKind::Status { message: Some(m), .. } if m == "Stopped.")
        ),
        "{transcript:?}"
    );
    all_saw(&[("B", &on_b), ("C", &on_c)], &transcript).await;
    drop((on_b, on_c));

    // The sessions A runs when it is killed: one waits for a decision...
    let waiting = ra
        .create(json!({"name": "waiting", "permission_mode": "ask"}))
        .await;
    let waiting_on_c = Viewer::open(&rc, &waiting).await;
    ra.prompt(&waiting, "wait for me").await;
    let question = wait_request(&waiting_on_c).await;
    wait_status(&ra, &waiting, SessionStatus::AwaitingPermission, &logs).await;
    // ...and one is mid-tool.
    let crashy = ra
        .create(json!({"name": "crashy", "permission_mode": "auto"}))
        .await;
    let on_b = Viewer::open(&rb, &crashy).await;
    let on_c = Viewer::open(&rc, &crashy).await;
    ra.prompt(&crashy, "first task").await;
    let marker = dir.join("workspaces").join(&crashy).join("one.txt");
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the tool never ran\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = stored(&rb, &crashy).await;
    a.crash();
    let taken = wait_status(&rb, &crashy, SessionStatus::Interrupted, &|| {
        format!("B:\n{}\nC:\n{}", b.log(), c.log())
    })
    .await;
    eprintln!("taken over {taken:?} after the SIGKILL (lease {LEASE_SECS} s)");
    let after = stored(&rc, &crashy).await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "every stored event survives"
    );

    // The question still waits, now on a survivor: a decision sent while
    // nobody holds it is refused as "try again" (503), then it is taken.
    let deciding = Instant::now();
    loop {
        let res = rc
            .decide(&waiting, &question, json!({"decision": "allow"}))
            .await;
        match res.status() {
            StatusCode::NO_CONTENT => break,
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("{other}: {}", res.text().await.unwrap()),
        }
        assert!(
            deciding.elapsed() < Duration::from_secs(30),
            "never taken over\nB:\n{}\nC:\n{}",
            b.log(),
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rb.wait_idle(&waiting, 2, || format!("B:\n{}\nC:\n{}", b.log(), c.log()))
        .await;
    assert_eq!(
        std::fs::read_to_string(dir.join("workspaces").join(&waiting).join("waited.txt")).unwrap(),
        "waited\n"
    );
    let transcript = stored(&rc, &waiting).await;
    assert!(
        !transcript.iter().any(|e| matches!(
            e.kind,
            EventKind::Status {
                status: SessionStatus::Interrupted,
                ..
            }
        )),
        "a question is not an interrupted run: {transcript:?}"
    );
    all_saw(&[("C", &waiting_on_c)], &transcript).await;

    // The other goes on from a survivor.
    rc.prompt(&crashy, "second task").await;
    rc.wait_idle(&crashy, 2, || format!("B:\n{}\nC:\n{}", b.log(), c.log()))
        .await;
    let transcript = stored(&rb, &crashy).await;
    assert!(transcript.iter().any(
        |e| matches!(&e.kind, EventKind::AssistantText { text } if text == "Resumed where we were.")
    ));
    let interrupted = transcript
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Status {
                    status: SessionStatus::Interrupted,
                    ..
                }
            )
        })
        .count();
    assert_eq!(interrupted, 1, "taken over once: {transcript:?}");
    all_saw(&[("B", &on_b), ("C", &on_c)], &transcript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_shutting_down_hands_its_sessions_over_at_once() {
    let (_model, model) = crate::common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo one > one.txt; sleep 60"}}}]}
        ]),
        None,
    )
    .await;
    let database = postgres::database().await;
    let dir = std::fs::canonicalize(tempfile::tempdir().unwrap().keep()).unwrap();
    // A lease far longer than the wait below: only the hand-off explains
    // a takeover within it.
    let a = replica_with_lease(&dir, "a", &database, &model, "120");
    let b = replica_with_lease(&dir, "b", &database, &model, "120");
    let (ra, rb) = (Rest::new(&a.url, None), Rest::new(&b.url, None));
    let session = ra
        .create(json!({"name": "handed", "permission_mode": "auto"}))
        .await;
    ra.prompt(&session, "first task").await;
    let marker = dir.join("workspaces").join(&session).join("one.txt");
    let started = Instant::now();
    while !marker.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGTERM, as a platform stops a container.
    let mut a = a;
    let pid = rustix::process::Pid::from_raw(a.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let taken = wait_status(&rb, &session, SessionStatus::Interrupted, &|| b.log()).await;
    // B's heartbeat comes every 40 s: only the hand-off explains this.
    assert!(taken < Duration::from_secs(5), "taken over after {taken:?}");
    eprintln!("handed over {taken:?} after SIGTERM (lease 120 s)");
    let exited = Instant::now();
    while a.child.try_wait().unwrap().is_none() {
        assert!(exited.elapsed() < Duration::from_secs(10), "A never exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A ended its run before it let go: its tool is gone, and nothing it
    // wrote comes after the takeover.
    let top = std::process::Command::new("docker")
        .args(["top", &format!("paddock-{session}")])
        .output()
        .unwrap();
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(!top.contains("sleep 60"), "{top}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let transcript = stored(&rb, &session).await;
    assert!(
        matches!(
            transcript.last().unwrap().kind,
            EventKind::Status {
                status: SessionStatus::Interrupted,
                ..
            }
        ),
        "{transcript:?}"
    );
}

/// A second process of a replica's name stops at start, saying why (it
/// would take the first's sessions as its own); another name starts, and
/// the name is free again once its holder is gone.
#[tokio::test]
async fn a_second_replica_of_one_name_is_refused() {
    let (_model, model) = crate::common::scripted(&json!([]), None).await;
    let database = postgres::database().await;
    let dir = std::fs::canonicalize(tempfile::tempdir().unwrap().keep()).unwrap();
    let mut first = replica(&dir, "twin", &database, &model);
    let said = crate::common::refused_at_start(
        &dir,
        &[("DATABASE_URL", &database), ("PADDOCK_REPLICA", "twin")],
    )
    .await;
    assert!(
        said.contains("another Paddock replica named \"twin\" serves this database"),
        "{said}"
    );
    let _other = replica(&dir, "other", &database, &model);
    // The lock's connection lost (as when the database restarts): the lock
    // is taken again on a new one.
    let db = sqlx::PgPool::connect(&database).await.unwrap();
    let holder = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 \
         AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('paddock replica twin', 0)";
    let held = || async {
        sqlx::query_scalar::<_, i32>(holder)
            .fetch_optional(&db)
            .await
            .unwrap()
    };
    let pid = held().await.expect("the name is held");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&db)
        .await
        .unwrap();
    let lost = Instant::now();
    loop {
        match held().await {
            Some(again) if again != pid => break,
            _ => {
                assert!(lost.elapsed() < Duration::from_secs(40), "{}", first.log());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Its connection ends with it, and the lock with that.
    let again = replica(&dir, "twin", &database, &model);
    assert!(again.url.starts_with("http://"));
}

#[tokio::test]
async fn a_session_made_read_only_on_one_replica_closes_its_terminals_on_another() {
    use crate::terminal::{connect, read_until, type_in};
    let (_model, model) = crate::common::scripted(&json!([]), None).await;
    let database = postgres::database().await;
    let dir = std::fs::canonicalize(tempfile::tempdir().unwrap().keep()).unwrap();
    let a = replica(&dir, "a", &database, &model);
    let b = replica(&dir, "b", &database, &model);
    let ra = Rest::new(&a.url, None);
    let session = ra
        .create(json!({"name": "shell", "permission_mode": "ask"}))
        .await;
    let mut shell = connect(&b.url, &session, "rows=24&cols=80", Some(&b.url), &[])
        .await
        .unwrap();
    type_in(&mut shell, "echo ready-$((2*2))\r").await;
    read_until(&mut shell, "ready-4").await;
    let model_name = ra.session(&session).await["model"].clone();
    let changed = ra
        .request(Method::PUT, &format!("/api/sessions/{session}/settings"))
        .json(&json!({
            "name": "shell", "model": model_name, "permission_mode": "read-only", "budget_usd": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    // The shell on B could still change the workspace: it closes.
    read_until(&mut shell, "the session became read-only").await;
}

#[tokio::test]
async fn two_replicas_prepare_a_workspace_once() {
    let (_model, model) = crate::common::scripted(&json!([{"reply": "Read it."}]), None).await;
    let git = crate::common::git_server::GitServer::start(None).await;
    git.repo("app.git", &[("README.md", b"# App\n")]);
    // A slow forge: the clone A starts as the session is made is still
    // under way when B, given its first prompt, prepares it too.
    *git.delay.lock().unwrap() = Duration::from_millis(700);
    let database = postgres::database().await;
    let dir = std::fs::canonicalize(tempfile::tempdir().unwrap().keep()).unwrap();
    let a = replica(&dir, "a", &database, &model);
    let b = replica(&dir, "b", &database, &model);
    let (ra, rb) = (Rest::new(&a.url, None), Rest::new(&b.url, None));
    let session = ra
        .create(json!({
            "name": "on a repo", "permission_mode": "auto",
            "source": {"kind": "git", "url": format!("{}/app.git", git.url)}
        }))
        .await;
    rb.prompt(&session, "Read the README.").await;
    let logs = || format!("{}\n{}", a.log(), b.log());
    let started = Instant::now();
    loop {
        let s = rb.session(&session).await;
        if s["status"] == "error" || (s["status"] == "idle" && s["turns"] == 1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{s}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let transcript = stored(&rb, &session).await;
    let said: Vec<&EventKind> = transcript
        .iter()
        .map(|e| &e.kind)
        .filter(|k| matches!(k, EventKind::Workspace { .. } | EventKind::Error { .. }))
        .collect();
    assert!(
        matches!(said.as_slice(), [EventKind::Workspace { message }] if message.contains("cloned")),
        "{said:#?}"
    );
    let readme = dir.join("workspaces").join(&session).join("README.md");
    assert_eq!(std::fs::read_to_string(readme).unwrap(), "# App\n");
}

/// The value of `name` in a database URL's query (`host=<folder>`).
fn url_param<'a>(url: &'a str, name: &str) -> &'a str {
    let after = url.split(&format!("{name}=")).nth(1).unwrap();
    after.split('&').next().unwrap()
}

/// A relay of PostgreSQL's socket that can go silent the way a NAT that
/// forgot a connection does: what it carried stops, nothing closes, and
/// connections made afterwards pass.
struct SilentRelay {
    dir: tempfile::TempDir,
    /// Connections made so far; those made before the number in
    /// `silent_before` go silent.
    made: Arc<std::sync::atomic::AtomicUsize>,
    silent_before: Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentRelay {
    /// Relays the socket of the database at `url` (`host=<folder>`).
    fn start(url: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let folder = url_param(url, "host");
        let port = url_param(url, "port");
        let name = format!(".s.PGSQL.{port}");
        let real = Path::new(folder).join(&name);
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::UnixListener::bind(dir.path().join(&name)).unwrap();
        let silent_before = Arc::new(AtomicUsize::new(0));
        let made = Arc::new(AtomicUsize::new(0));
        let (silent, counted) = (silent_before.clone(), made.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let server = tokio::net::UnixStream::connect(&real).await.unwrap();
                let (client_in, client_out) = client.into_split();
                let (server_in, server_out) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(client_in) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(server_out) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    ),
                    (Box::new(server_in), Box::new(client_out)),
                ] {
                    let silent = silent.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0; 16 * 1024];
                        loop {
                            let Ok(read) = from.read(&mut buf).await else {
                                return;
                            };
                            if read == 0 {
                                return;
                            }
                            if n < silent.load(Ordering::SeqCst) {
                                // Held, never passed on, never closed.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buf[..read]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self {
            dir,
            made,
            silent_before,
        }
    }

    /// `url` through the relay.
    fn url(&self, url: &str) -> String {
        let folder = url_param(url, "host");
        url.replace(folder, &self.dir.path().display().to_string())
    }

    /// Every connection made so far goes silent.
    fn silence(&self) {
        use std::sync::atomic::Ordering;
        self.silent_before
            .store(self.made.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// A bus whose connection goes silent (dropped on the way without a word)
/// asks it, hears nothing, connects again, and says what it may have
/// missed (a gap, which viewers are repaired from), then hears what
/// follows.
#[tokio::test]
async fn a_bus_whose_connection_goes_silent_listens_again() {
    use server::bus::{Bus, Notice, Received, PURPOSE};
    use server::vault::MasterKey;
    /// What the bus hands on next, within `within` seconds.
    async fn hears(
        inbox: &mut tokio::sync::mpsc::Receiver<Received>,
        within: u64,
    ) -> Option<Received> {
        tokio::time::timeout(Duration::from_secs(within), inbox.recv())
            .await
            .ok()
            .flatten()
    }
    let url = postgres::database().await;
    let relay = SilentRelay::start(&url);
    let quiet = Duration::from_secs(2);
    let key = MasterKey::generate();
    let (_bus, mut inbox) = Bus::connect(&relay.url(&url), quiet, key.sealer(PURPOSE))
        .await
        .unwrap();
    let (other, _) = Bus::connect(&url, quiet, key.sealer(PURPOSE))
        .await
        .unwrap();
    // (Another role of the database may listen to the channel too.)
    let mut eavesdropper = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    eavesdropper.listen("paddock").await.unwrap();
    other.send(Notice::Access { user: None }).await.unwrap();
    assert!(matches!(
        hears(&mut inbox, 5).await,
        Some(Received::Notice(Notice::Access { user: None }))
    ));
    let overheard = eavesdropper.recv().await.unwrap().payload().to_owned();
    // What another installation's key seals, a plain notification any
    // role of the database may send on the channel, and one of this
    // installation's sent again by such a role, are not heard.
    let (stranger, _) = Bus::connect(&url, quiet, MasterKey::generate().sealer(PURPOSE))
        .await
        .unwrap();
    stranger.send(Notice::HandedOff).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_notify('paddock', $1)")
        .bind(r#"{"from":"x","at":0,"notices":[{"t":"handed_off"}]}"#)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT pg_notify('paddock', $1)")
        .bind(&overheard)
        .execute(&pool)
        .await
        .unwrap();
    other
        .send(Notice::Access {
            user: Some(uuid::Uuid::nil()),
        })
        .await
        .unwrap();
    let heard = hears(&mut inbox, 5).await;
    assert!(
        matches!(
            heard,
            Some(Received::Notice(Notice::Access { user: Some(_) }))
        ),
        "{heard:?}"
    );
    // The bus's connections go silent.
    relay.silence();
    other.send(Notice::Access { user: None }).await.unwrap();
    let heard = hears(&mut inbox, 15).await;
    assert!(matches!(heard, Some(Received::Gap)), "{heard:?}");
    let session = uuid::Uuid::now_v7();
    other.send(Notice::Event { session, seq: 1 }).await.unwrap();
    let heard = hears(&mut inbox, 5).await;
    assert!(
        matches!(heard, Some(Received::Notice(Notice::Event { seq: 1, .. }))),
        "{heard:?}"
    );
}

/// A replica paused past its lease (a frozen machine), whose session
/// another replica took over meanwhile: the end of the run it was in
/// writes nothing over the other's, and it takes none of the prompts
/// queued there.
#[tokio::test]
async fn a_replica_that_lost_its_lease_while_paused_writes_and_takes_nothing() {
    use app::accounts::Caller;
    use app::api::Backend;
    use app::domain::NewSession;
    let (model, url) = crate::common::scripted(
        &json!([
            {"reply": "The first, slowly.", "chunk": 2, "delay_ms": 150},
            {"reply": "The second."}
        ]),
        None,
    )
    .await;
    let home = crate::common::Home::new();
    let mut flags = crate::common::model_flags(&url, "sk-test");
    // No heartbeat within the test: only the run's own looks find out.
    flags.extend(["--replica=here".to_owned(), "--lease-secs=3600".to_owned()]);
    let paddock = crate::common::open(&home, "local", &flags).await;
    let me = Caller::local_operator();
    let s = crate::common::create(
        &paddock,
        NewSession {
            name: "paused".into(),
            permission_mode: Some("auto".parse().unwrap()),
            ..Default::default()
        },
    )
    .await;
    paddock
        .send_prompt(&me, s.id, "first".into())
        .await
        .unwrap();
    let status = || async {
        paddock
            .store
            .get_session(s.id)
            .await
            .unwrap()
            .unwrap()
            .status
    };
    let began = Instant::now();
    while status().await != SessionStatus::Running {
        assert!(began.elapsed() < Duration::from_secs(20), "never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    paddock
        .send_prompt(&me, s.id, "second".into())
        .await
        .unwrap();
    // Meanwhile, another replica took the session over.
    paddock.store.release_lease(s.id, "here").await.unwrap();
    let now = chrono::Utc::now();
    let later = now + chrono::Duration::hours(1);
    assert!(paddock
        .store
        .acquire_lease(s.id, "elsewhere", now, later)
        .await
        .unwrap());
    // The first run's answer is in; then nothing more from here.
    let answered = || async {
        paddock
            .store
            .events_after(s.id, 0, 1000)
            .await
            .unwrap()
            .iter()
            .any(|e| matches!(&e.kind, EventKind::AssistantText { text } if text == "The first, slowly."))
    };
    while !answered().await {
        assert!(began.elapsed() < Duration::from_secs(20), "never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(model.turns_used(), 1);
    assert_eq!(paddock.store.queued_prompts(s.id).await.unwrap(), 1);
    assert_eq!(status().await, SessionStatus::Running, "the other's run");
}
