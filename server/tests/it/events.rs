//! The JSON API and the live event stream, against a real server on port 0
//! and a real SQLite file: REST calls and their errors (nothing written on
//! bad input), and SSE resume/live-tail correctness (every stored event
//! exactly once, in order, from any resume point, for slow and concurrent
//! viewers alike).

use crate::common::{self, Home, Served};
use app::accounts::Caller;
use app::domain::{Delta, DeltaKind, Event, EventKind, NewSession, Session, SessionId};
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use server::hub::Hub;
use server::paddock::Paddock;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for any one frame before a test fails.
const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    _home: Home,
    workspaces: PathBuf,
    paddock: Arc<Paddock>,
    served: Served,
    client: reqwest::Client,
}

async fn start() -> Server {
    start_with(Hub::new(), &[]).await
}

async fn start_with(hub: Hub, extra: &[String]) -> Server {
    let home = Home::new();
    // Local sandboxes: no containers for the sessions these tests create.
    let paddock = common::open_with_hub(&home, "local", extra, hub).await;
    let served = common::serve(paddock.clone()).await;
    Server {
        workspaces: std::fs::canonicalize(home.workspaces()).unwrap(),
        _home: home,
        paddock,
        served,
        client: reqwest::Client::new(),
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        self.served.url(path)
    }

    /// A session made straight in the store (no sandbox needed to stream).
    async fn session(&self) -> SessionId {
        let new = NewSession {
            name: "stream".into(),
            ..Default::default()
        };
        common::session(&self.paddock, new).await.id
    }

    /// Sessions, stored events (all sessions), and workspace folders: what a
    /// refused request must leave untouched.
    async fn footprint(&self) -> (usize, i64, usize) {
        let sessions = self.paddock.store.list_sessions(None).await.unwrap();
        let events = sessions.iter().map(|s| s.last_seq).sum();
        let folders = std::fs::read_dir(&self.workspaces)
            .map(|d| d.count())
            .unwrap_or(0);
        (sessions.len(), events, folders)
    }
}

async fn record(paddock: &Paddock, session: SessionId, text: String) -> Event {
    paddock
        .journal
        .record(session, EventKind::AssistantText { text })
        .await
        .unwrap()
}

async fn record_n(paddock: &Paddock, session: SessionId, n: usize) {
    for i in 0..n {
        record(paddock, session, format!("event {i}")).await;
    }
}

/// What a viewer receives.
#[derive(Debug)]
enum Frame {
    Event(Event),
    Delta { delta: Delta, last_event_id: String },
}

type Frames = Pin<
    Box<dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>>,
>;

/// Opens the event stream of `session`, resuming after `last_event_id`.
async fn connect(s: &Server, session: SessionId, last_event_id: Option<i64>) -> Frames {
    let mut req = s
        .client
        .get(s.url(&format!("/api/sessions/{session}/events")));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    Box::pin(res.bytes_stream().eventsource())
}

async fn next_frame(frames: &mut Frames) -> Frame {
    let frame = tokio::time::timeout(PATIENCE, frames.next())
        .await
        .expect("no frame in time")
        .expect("stream ended")
        .unwrap();
    match frame.event.as_str() {
        "event" => {
            let event: Event = serde_json::from_str(&frame.data).unwrap();
            assert_eq!(frame.id, event.seq.to_string(), "SSE id is the seq");
            Frame::Event(event)
        }
        "delta" => Frame::Delta {
            delta: serde_json::from_str(&frame.data).unwrap(),
            last_event_id: frame.id,
        },
        other => panic!("unexpected frame type {other:?}: {frame:?}"),
    }
}

/// Event seqs received until (and including) `last`; deltas are skipped.
async fn seqs_until(frames: &mut Frames, last: i64) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        if let Frame::Event(e) = next_frame(frames).await {
            seqs.push(e.seq);
            if e.seq >= last {
                return seqs;
            }
        }
    }
}

/// Publishes a marker delta and returns the event seqs that arrive before
/// it: the marker goes through the same channel after everything already
/// published, so an empty answer means no late duplicate was pending.
async fn seqs_before_marker(
    paddock: &Paddock,
    session: SessionId,
    frames: &mut Frames,
) -> Vec<i64> {
    let marker = uuid::Uuid::now_v7().to_string();
    paddock.hub.publish_delta(Delta {
        session_id: session,
        seq_hint: 0,
        block: 0,
        kind: DeltaKind::Text,
        text: marker.clone(),
    });
    let mut seqs = Vec::new();
    loop {
        match next_frame(frames).await {
            Frame::Event(e) => seqs.push(e.seq),
            Frame::Delta { delta, .. } if delta.text == marker => return seqs,
            Frame::Delta { .. } => {}
        }
    }
}

fn range(from: i64, to: i64) -> Vec<i64> {
    (from..=to).collect()
}

async fn error_of(res: reqwest::Response) -> (StatusCode, String, String) {
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap();
    let error = &body["error"];
    let kind = error["type"].as_str().unwrap().to_owned();
    let message = error["message"].as_str().unwrap().to_owned();
    assert!(!message.is_empty());
    (status, kind, message)
}

// ---------------------------------------------------------------- REST ---

#[tokio::test]
async fn rest_create_list_get_delete() {
    let s = start().await;
    let res = s.client.get(s.url("/api/sessions")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Vec<Session>>().await.unwrap(), vec![]);

    let res = s
        .client
        .post(s.url("/api/sessions"))
        .json(&serde_json::json!({
            "name": "  refactor <the> parser ",
            "model": "claude-haiku-4-5",
            "system_prompt": "Be brief.",
            "permission_mode": "accept-edits",
            "engine": "native",
            "limits": { "memory_mb": 512, "pids": 64 },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created: Session = res.json().await.unwrap();
    assert_eq!(location, format!("/api/sessions/{}", created.id));
    assert_eq!(created.name, "refactor <the> parser");
    assert_eq!(created.model, "claude-haiku-4-5");
    assert_eq!(created.system_prompt, "Be brief.");
    assert_eq!(created.engine.as_str(), "native");
    assert_eq!(created.permission_mode.as_str(), "accept-edits");
    assert_eq!(created.limits.memory_mb, Some(512));

    // Defaults for everything but the name.
    let res = s
        .client
        .post(s.url("/api/sessions"))
        .json(&serde_json::json!({ "name": "minimal" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let minimal: Session = res.json().await.unwrap();
    assert_eq!(minimal.model, app::domain::DEFAULT_MODEL);

    // The sandbox warm-up made the workspace.
    let workspace = s.workspaces.join(created.id.to_string());
    for _ in 0..100 {
        if workspace.is_dir() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(workspace.is_dir(), "the sandbox was not warmed up");

    let listed: Vec<Session> = s
        .client
        .get(s.url("/api/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<_> = listed.iter().map(|x| x.id).collect();
    ids.sort();
    let mut expected = vec![created.id, minimal.id];
    expected.sort();
    assert_eq!(ids, expected);

    let res = s.client.get(s.url(&location)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Session>().await.unwrap(), created);

    let res = s.client.delete(s.url(&location)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.bytes().await.unwrap().is_empty());
    assert!(!workspace.exists(), "the workspace must be removed");

    let (status, kind, _) = error_of(s.client.get(s.url(&location)).send().await.unwrap()).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, _, _) = error_of(s.client.delete(s.url(&location)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let listed: Vec<Session> = s
        .client
        .get(s.url("/api/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, vec![minimal]);
}

#[tokio::test]
async fn rest_bad_input_is_refused_and_writes_nothing() {
    let s = start().await;
    // One real session, so "nothing written" also covers its transcript.
    let existing = s.session().await;
    record_n(&s.paddock, existing, 3).await;
    let before = s.footprint().await;

    let json_cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            r#"{"name": "#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "not an object",
            "[1, 2]".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "empty body",
            "".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "missing name",
            "{}".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "wrong type",
            r#"{"name": 5}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown field",
            r#"{"name": "x", "colour": "red"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown limits field",
            r#"{"name": "x", "limits": {"disk_gb": 1}}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown engine",
            r#"{"name": "x", "engine": "root"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "blank name",
            r#"{"name": "   "}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "long name",
            format!(r#"{{"name": "{}"}}"#, "x".repeat(10_000)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "control character",
            r#"{"name": "a\u0000b"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "bad model",
            r#"{"name": "x", "model": "<script>"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "bad limits",
            r#"{"name": "x", "limits": {"memory_mb": 1}}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "over the server's ceiling",
            r#"{"name": "x", "limits": {"cpus": 64}}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "over the body limit",
            format!(r#"{{"name": "{}"}}"#, "y".repeat(3 * 1024 * 1024)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (what, body, status, kind) in json_cases {
        let res = s
            .client
            .post(s.url("/api/sessions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (got_status, got_kind, message) = error_of(res).await;
        assert_eq!(
            (got_status, got_kind.as_str()),
            (status, kind),
            "{what}: {message}"
        );
        if what.starts_with("unknown field") {
            assert!(message.contains("unknown field `colour`"), "{message}");
        }
        if what.starts_with("over the server's ceiling") {
            assert!(message.contains("PADDOCK_SANDBOX_MAX_CPUS"), "{message}");
        }
        assert_eq!(s.footprint().await, before, "{what} wrote something");
    }

    // Over the limit without a Content-Length: cut off while streaming.
    let chunks = (0..48).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
    let res = s
        .client
        .post(s.url("/api/sessions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_of(res).await.1, "too_large");

    // Not JSON at all.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = s
            .client
            .post(s.url("/api/sessions"))
            .body(r#"{"name": "x"}"#);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (status, kind, message) = error_of(req.send().await.unwrap()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(kind, "unsupported_media_type");
        assert!(message.contains("application/json"), "{message}");
    }
    assert_eq!(s.footprint().await, before);

    // Unknown and malformed ids.
    let unknown = "0190f5a0-0000-7000-8000-000000000000";
    for id in [unknown, "not-a-uuid", "..%2F..%2Fetc%2Fpasswd", "%FF"] {
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let res = s
                .client
                .request(method.clone(), s.url(&format!("/api/sessions/{id}")))
                .send()
                .await
                .unwrap();
            let (status, kind, message) = error_of(res).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {id}: {message}");
            assert_eq!(kind, "not_found");
        }
    }
    assert_eq!(s.footprint().await, before);

    // Server functions live beside the API, untouched by it.
    let res = s
        .client
        .post(s.url("/api/list_sessions"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Vec<Session>>().await.unwrap().len(), 1);
}

#[tokio::test]
async fn stream_errors_are_json_and_change_nothing() {
    let s = start().await;
    let session = s.session().await;
    record_n(&s.paddock, session, 3).await;
    let before = s.footprint().await;

    let get = |path: String, last_event_id: Option<&'static str>| {
        let mut req = s.client.get(s.url(&path));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        req.send()
    };
    let cases = [
        (
            "/api/sessions/0190f5a0-0000-7000-8000-000000000000/events".to_string(),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/sessions/nope/events".into(),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/sessions/{session}/events?after=abc"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/sessions/{session}/events?after=-1"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/sessions/{session}/events?after=1.5"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/sessions/{session}/events?after="),
            None,
            StatusCode::BAD_REQUEST,
        ),
        // A resume point misspelt: refused, not the whole transcript again.
        (
            format!("/api/sessions/{session}/events?since=2"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/sessions/{session}/events?after=4"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/sessions/{session}/events"),
            Some("x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/sessions/{session}/events"),
            Some("-3"),
            StatusCode::BAD_REQUEST,
        ),
        // Beyond the newest event: nothing to resume after.
        (
            format!("/api/sessions/{session}/events"),
            Some("99"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, last_event_id, status) in cases {
        let res = get(path.clone(), last_event_id).await.unwrap();
        let (got, kind, message) = error_of(res).await;
        assert_eq!(got, status, "{path} {last_event_id:?}: {message}");
        let expected = if status == StatusCode::NOT_FOUND {
            "not_found"
        } else {
            "invalid_request"
        };
        assert_eq!(kind, expected);
    }
    assert_eq!(s.footprint().await, before);
}

// ----------------------------------------------------------------- SSE ---

#[tokio::test]
async fn replay_from_every_resume_point() {
    let s = start().await;
    let session = s.session().await;
    record_n(&s.paddock, session, 30).await;

    for k in 0..=30 {
        let mut frames = connect(&s, session, Some(k)).await;
        let seqs = seqs_before_marker(&s.paddock, session, &mut frames).await;
        assert_eq!(seqs, range(k + 1, 30), "Last-Event-ID: {k}");
    }

    // `?after=` on a first connection; Last-Event-ID (a reconnect) wins.
    let res = s
        .client
        .get(s.url(&format!("/api/sessions/{session}/events?after=25")))
        .send()
        .await
        .unwrap();
    let mut frames: Frames = Box::pin(res.bytes_stream().eventsource());
    let seqs = seqs_before_marker(&s.paddock, session, &mut frames).await;
    assert_eq!(seqs, range(26, 30));
    let res = s
        .client
        .get(s.url(&format!("/api/sessions/{session}/events?after=3")))
        .header("Last-Event-ID", "28")
        .send()
        .await
        .unwrap();
    let mut frames: Frames = Box::pin(res.bytes_stream().eventsource());
    let seqs = seqs_before_marker(&s.paddock, session, &mut frames).await;
    assert_eq!(seqs, range(29, 30));

    // The frames carry the stored events themselves.
    let mut frames = connect(&s, session, Some(29)).await;
    let Frame::Event(event) = next_frame(&mut frames).await else {
        panic!("expected an event");
    };
    let stored = s.paddock.store.events_after(session, 29, 1).await.unwrap();
    assert_eq!(vec![event], stored);
}

#[tokio::test]
async fn replay_spans_several_pages() {
    let s = start().await;
    let session = s.session().await;
    let n = app::api::EVENTS_PAGE * 2 + 7;
    record_n(&s.paddock, session, n as usize).await;
    let mut frames = connect(&s, session, Some(3)).await;
    assert_eq!(seqs_until(&mut frames, n).await, range(4, n));
    assert_eq!(
        seqs_before_marker(&s.paddock, session, &mut frames).await,
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn live_tail_is_gapless() {
    let s = start().await;
    let session = s.session().await;
    record_n(&s.paddock, session, 5).await;
    let mut frames = connect(&s, session, None).await;
    let paddock = s.paddock.clone();
    let writer = tokio::spawn(async move {
        for i in 0..50 {
            record(&paddock, session, format!("live {i}")).await;
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    assert_eq!(seqs_until(&mut frames, 55).await, range(1, 55));
    writer.await.unwrap();
    assert_eq!(
        seqs_before_marker(&s.paddock, session, &mut frames).await,
        Vec::<i64>::new()
    );

    // And a reconnect from the last seen event picks up only what is new.
    record_n(&s.paddock, session, 2).await;
    let mut frames = connect(&s, session, Some(55)).await;
    assert_eq!(
        seqs_before_marker(&s.paddock, session, &mut frames).await,
        range(56, 57)
    );
}

/// An event stored with no word of it to this server (its notice from
/// another replica lost on the way) reaches a quiet viewer all the same:
/// a stream that hears nothing looks in the store now and then.
#[tokio::test]
async fn an_event_no_one_told_of_reaches_a_quiet_viewer() {
    // On PostgreSQL, where replicas tell each other through a bus.
    let database = format!("--database-url={}", common::postgres::database().await);
    let s = start_with(Hub::new(), &[database]).await;
    let session = s.session().await;
    record_n(&s.paddock, session, 2).await;
    let mut frames = connect(&s, session, None).await;
    assert_eq!(seqs_until(&mut frames, 2).await, range(1, 2));
    // Stored, not published: as another replica's event whose notice never
    // came.
    s.paddock
        .store
        .append_event(
            session,
            &EventKind::AssistantText {
                text: "unheard".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(seqs_until(&mut frames, 3).await, [3]);
}

#[tokio::test]
async fn connecting_during_concurrent_appends_sees_each_event_once() {
    let s = start().await;
    let session = s.session().await;
    let paddock = s.paddock.clone();
    let writer = tokio::spawn(async move {
        for i in 0..200 {
            record(&paddock, session, format!("event {i}")).await;
            if i % 20 == 0 {
                // Pauses, so the connection lands in the middle.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    // Connect once the writer is under way: the store holds some events,
    // more are being committed and published while the stream starts.
    while s
        .paddock
        .store
        .get_session(session)
        .await
        .unwrap()
        .unwrap()
        .last_seq
        < 10
    {
        tokio::task::yield_now().await;
    }
    let mut frames = connect(&s, session, None).await;
    assert_eq!(seqs_until(&mut frames, 200).await, range(1, 200));
    writer.await.unwrap();
    assert_eq!(
        seqs_before_marker(&s.paddock, session, &mut frames).await,
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn concurrent_writers_publishing_out_of_order_are_repaired() {
    let s = start().await;
    let session = s.session().await;
    let mut frames = connect(&s, session, None).await;
    // Two writers: #1 and #2 are both committed, but #2 is published first
    // (the other writer was descheduled between commit and publish).
    let kind = |t: &str| EventKind::AssistantText { text: t.into() };
    let one = s
        .paddock
        .store
        .append_event(session, &kind("a"))
        .await
        .unwrap()
        .unwrap();
    let two = s
        .paddock
        .store
        .append_event(session, &kind("b"))
        .await
        .unwrap()
        .unwrap();
    s.paddock.hub.publish_event(two);
    s.paddock.hub.publish_event(one);
    record(&s.paddock, session, "c".into()).await;
    assert_eq!(seqs_until(&mut frames, 3).await, range(1, 3));
    assert_eq!(
        seqs_before_marker(&s.paddock, session, &mut frames).await,
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn deltas_are_frames_without_an_id() {
    let s = start().await;
    let session = s.session().await;
    record(&s.paddock, session, "before".into()).await;
    let res = s
        .client
        .get(s.url(&format!("/api/sessions/{session}/events")))
        .send()
        .await
        .unwrap();
    let delta = Delta {
        session_id: session,
        seq_hint: 1,
        block: 2,
        kind: DeltaKind::Thinking,
        text: "hmm\nlet me see".into(),
    };
    // The raw frames: the delta has no `id:` line at all. It is published
    // once the stream has sent the stored event, so it is following live
    // (a delta is never replayed).
    let mut raw = String::new();
    let mut body = res.bytes_stream();
    let mut published = false;
    while raw.matches("\n\n").count() < 3 {
        if !published && raw.contains("id: 1") {
            s.paddock.hub.publish_delta(delta.clone());
            record(&s.paddock, session, "after".into()).await;
            published = true;
        }
        let chunk = tokio::time::timeout(PATIENCE, body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        raw.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let frames: Vec<&str> = raw
        .split("\n\n")
        .filter(|f| !f.is_empty() && !f.starts_with(':'))
        .collect();
    assert_eq!(frames.len(), 3, "{raw}");
    assert!(
        frames[0].contains("event: event") && frames[0].contains("id: 1"),
        "{raw}"
    );
    assert!(frames[1].contains("event: delta"), "{raw}");
    assert!(
        !frames[1].lines().any(|l| l.starts_with("id")),
        "a delta must not carry an id: {raw}"
    );
    assert!(
        frames[2].contains("event: event") && frames[2].contains("id: 2"),
        "{raw}"
    );

    // Parsed as a browser would: the delta leaves the last event id alone,
    // and its data is the Delta.
    let mut frames = connect(&s, session, None).await;
    s.paddock.hub.publish_delta(delta.clone());
    assert_eq!(seqs_until(&mut frames, 2).await, range(1, 2));
    match next_frame(&mut frames).await {
        Frame::Delta {
            delta: got,
            last_event_id,
        } => {
            assert_eq!(got, delta);
            assert_eq!(last_event_id, "2", "a delta must not move the resume point");
        }
        other => panic!("expected the delta, got {other:?}"),
    }
}

/// The raw frames of `url` until `count` of them (comments skipped).
async fn raw_frames(s: &Server, url: &str, count: usize) -> Vec<String> {
    let res = s.client.get(s.url(url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut raw = String::new();
    let mut body = res.bytes_stream();
    loop {
        let frames: Vec<String> = raw
            .split("\n\n")
            .filter(|f| !f.is_empty() && !f.starts_with(':'))
            .map(str::to_owned)
            .collect();
        if raw.ends_with("\n\n") && frames.len() >= count {
            return frames;
        }
        let chunk = tokio::time::timeout(PATIENCE, body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        raw.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

fn frame_data<T: serde::de::DeserializeOwned>(frame: &str) -> T {
    let data: Vec<&str> = frame
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    serde_json::from_str(&data.join("\n")).unwrap()
}

#[tokio::test]
async fn the_dashboard_gets_the_models_markdown_rendered_before_its_event() {
    let s = start().await;
    let session = s.session().await;
    let hostile = "**bold** <script>alert(1)</script> [x](javascript:alert(1))";
    record(&s.paddock, session, hostile.into()).await;
    s.paddock
        .journal
        .record(
            session,
            EventKind::UserMessage {
                text: "**not rendered**".into(),
            },
        )
        .await
        .unwrap();
    record(&s.paddock, session, "# Done".into()).await;

    let frames = raw_frames(&s, &format!("/api/sessions/{session}/events?html=true"), 5).await;
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| f.lines().find_map(|l| l.strip_prefix("event: ")).unwrap())
        .collect();
    assert_eq!(kinds, ["html", "event", "event", "html", "event"]);
    for i in [0, 3] {
        assert!(
            !frames[i].lines().any(|l| l.starts_with("id")),
            "an html frame must not move the resume point: {}",
            frames[i]
        );
    }
    let first: app::domain::EventHtml = frame_data(&frames[0]);
    assert_eq!(first.seq, 1);
    assert!(
        first.html.contains("<strong>bold</strong>"),
        "{}",
        first.html
    );
    assert!(first.html.contains("&lt;script&gt;"), "{}", first.html);
    assert!(
        !first.html.contains("<script") && !first.html.contains("javascript:"),
        "{}",
        first.html
    );
    let last: app::domain::EventHtml = frame_data(&frames[3]);
    assert_eq!((last.seq, last.html.trim()), (3, "<h1>Done</h1>"));

    // Resuming after the first event: its html is not sent again, the next
    // one's is; and without `?html=true` there are none.
    let frames = raw_frames(
        &s,
        &format!("/api/sessions/{session}/events?html=true&after=1"),
        3,
    )
    .await;
    assert!(
        frames[0].contains("id: 2")
            && frames[1].contains("event: html")
            && frames[2].contains("id: 3")
    );
    let frames = raw_frames(&s, &format!("/api/sessions/{session}/events"), 3).await;
    assert!(
        frames.iter().all(|f| f.contains("event: event")),
        "{frames:?}"
    );

    let res = s
        .client
        .get(s.url(&format!("/api/sessions/{session}/events?html=yes")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn twenty_viewers_see_the_same_gapless_sequence() {
    let s = start().await;
    let session = s.session().await;
    record_n(&s.paddock, session, 10).await;
    let mut viewers = Vec::new();
    for i in 0..20 {
        // Some from the start, some resuming part-way.
        viewers.push(connect(&s, session, Some(i % 3)).await);
    }
    let paddock = s.paddock.clone();
    let writer = tokio::spawn(async move { record_n(&paddock, session, 60).await });
    let readers = viewers
        .into_iter()
        .enumerate()
        .map(|(i, mut frames)| async move {
            let from = (i % 3) as i64 + 1;
            assert_eq!(
                seqs_until(&mut frames, 70).await,
                range(from, 70),
                "viewer {i}"
            );
            frames
        });
    let mut viewers = futures_util::future::join_all(readers).await;
    writer.await.unwrap();
    // One marker for all: none of them has anything else pending.
    let marker = "all done".to_string();
    s.paddock.hub.publish_delta(Delta {
        session_id: session,
        seq_hint: 70,
        block: 0,
        kind: DeltaKind::Text,
        text: marker.clone(),
    });
    for frames in &mut viewers {
        match next_frame(frames).await {
            Frame::Delta { delta, .. } => assert_eq!(delta.text, marker),
            other => panic!("late frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_lagging_viewer_is_caught_up_from_the_store() {
    let s = start_with(Hub::with_capacity(4), &[]).await;
    let session = s.session().await;
    let mut frames = connect(&s, session, None).await;
    // Far more than the socket buffers hold, published while the viewer
    // reads nothing: its 4-slot channel overflows many times over.
    let big = "z".repeat(64 * 1024);
    for _ in 0..200 {
        record(&s.paddock, session, big.clone()).await;
    }
    let mut seqs = Vec::new();
    while seqs.last() != Some(&200) {
        if let Frame::Event(e) = next_frame(&mut frames).await {
            assert_eq!(e.kind, EventKind::AssistantText { text: big.clone() });
            seqs.push(e.seq);
        }
    }
    assert_eq!(seqs, range(1, 200));
    assert!(
        s.paddock.hub.lag_recoveries() > 0,
        "the viewer never lagged"
    );

    // Slow reading while the writer runs: lags, catches up, stays exact.
    let paddock = s.paddock.clone();
    let writer = tokio::spawn(async move {
        for i in 0..300 {
            record(&paddock, session, format!("small {i}")).await;
            paddock.hub.publish_delta(Delta {
                session_id: session,
                seq_hint: 200 + i,
                block: 0,
                kind: DeltaKind::Text,
                text: "tok".into(),
            });
        }
    });
    let mut seqs = Vec::new();
    while seqs.last() != Some(&500) {
        if let Frame::Event(e) = next_frame(&mut frames).await {
            seqs.push(e.seq);
            if e.seq % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    writer.await.unwrap();
    assert_eq!(seqs, range(201, 500));
    assert_eq!(
        seqs_before_marker(&s.paddock, session, &mut frames).await,
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn deleting_a_session_ends_its_streams() {
    let s = start().await;
    let session = s.session().await;
    record_n(&s.paddock, session, 2).await;
    let mut frames = connect(&s, session, None).await;
    assert_eq!(seqs_until(&mut frames, 2).await, range(1, 2));
    let res = s
        .client
        .delete(s.url(&format!("/api/sessions/{session}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let end = tokio::time::timeout(PATIENCE, frames.next()).await.unwrap();
    assert!(end.is_none(), "the stream should end: {end:?}");
    assert_eq!(s.paddock.hub.live_sessions(), 0);
    let res = s
        .client
        .get(s.url(&format!("/api/sessions/{session}/events")))
        .header("Last-Event-ID", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// A real scripted run: text streamed in small slow deltas, a tool call, more
/// text. A viewer that drops its connection after every few frames (in the
/// middle of streaming blocks) and resumes with Last-Event-ID ends up with
/// every stored event exactly once; afterwards, resuming after any seq of the
/// finished transcript replays exactly the rest.
#[tokio::test]
async fn a_scripted_run_resumed_mid_stream_and_after_every_seq() {
    use app::api::Backend;
    let text = "Streaming in small pieces so that a reconnect lands mid-block. ".repeat(3);
    let scenario = serde_json::json!([
        {"reply": [{"text": text}, {"tool_use": {"name": "list_files", "input": {}}}],
         "chunk": 4, "delay_ms": 5},
        {"reply": text, "chunk": 4, "delay_ms": 5}
    ]);
    let (model, url) = common::scripted(&scenario, None).await;
    let s = start_with(Hub::new(), &common::model_flags(&url, "sk-test")).await;
    let session = s.session().await;
    let mut frames = connect(&s, session, None).await;
    s.paddock
        .send_prompt(&Caller::local_operator(), session, "stream, please".into())
        .await
        .unwrap();

    let mut seen: Vec<i64> = Vec::new();
    let (mut deltas, mut reconnects) = (0, 0);
    loop {
        // Asked before the store is read: a run that ends between the two
        // would otherwise look finished at a stale last_seq.
        let running = s.paddock.runner.is_running(session);
        let stored = s.paddock.store.get_session(session).await.unwrap().unwrap();
        let done = !running && seen.last() == Some(&stored.last_seq);
        if done {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), next_frame(&mut frames)).await {
            Ok(Frame::Event(e)) => seen.push(e.seq),
            Ok(Frame::Delta { .. }) => {
                deltas += 1;
                if deltas % 7 == 0 {
                    // Drop the connection mid-block and resume.
                    reconnects += 1;
                    frames = connect(&s, session, seen.last().copied()).await;
                }
            }
            Err(_) => {} // idle: check whether the run is over
        }
    }
    let last = s
        .paddock
        .store
        .get_session(session)
        .await
        .unwrap()
        .unwrap()
        .last_seq;
    assert!(reconnects >= 3, "only {reconnects} reconnects");
    assert_eq!(seen, range(1, last), "every event exactly once");
    assert_eq!(model.turns_left(), 0);

    for k in 0..=last {
        let mut frames = connect(&s, session, Some(k)).await;
        let seqs = seqs_before_marker(&s.paddock, session, &mut frames).await;
        assert_eq!(seqs, range(k + 1, last), "Last-Event-ID: {k}");
    }
}

// ------------------------------------------------- one connection, many ---

/// `<topic> <name> <data>` lines of `GET /api/live`, until `done` says so.
async fn live_lines(frames: &mut Frames, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let frame = tokio::time::timeout(PATIENCE, frames.next())
            .await
            .expect("no frame in time")
            .expect("stream ended")
            .unwrap();
        assert_eq!(frame.event, "message", "{frame:?}");
        let stop = done(&frame.data);
        lines.push(frame.data);
        if stop {
            return lines;
        }
    }
}

/// The seqs of `session`'s event lines.
fn live_seqs(lines: &[String], session: SessionId) -> Vec<i64> {
    let prefix = format!("{session} event ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|data| serde_json::from_str::<Event>(data).unwrap().seq)
        .collect()
}

#[tokio::test]
async fn one_connection_follows_many_transcripts_and_the_list() {
    let s = start().await;
    let (a, b) = (s.session().await, s.session().await);
    record_n(&s.paddock, a, 3).await;
    record_n(&s.paddock, b, 2).await;
    let missing = uuid::Uuid::now_v7();
    let res = s
        .client
        .get(s.url(&format!(
            "/api/live?list=true&sessions={a}:1,{b}:0,{missing}:0"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut frames: Frames = Box::pin(res.bytes_stream().eventsource());

    // The stored events after each resume point, each with its HTML first;
    // the unknown session is closed while the others go on.
    let mut gone = false;
    let mut seen = (0, 0);
    let lines = live_lines(&mut frames, |line| {
        gone |= line == format!("{missing} closed gone");
        if line.starts_with(&format!("{a} event ")) {
            seen.0 += 1;
        }
        if line.starts_with(&format!("{b} event ")) {
            seen.1 += 1;
        }
        gone && seen == (2, 2)
    })
    .await;
    assert_eq!(live_seqs(&lines, a), [2, 3]);
    assert_eq!(live_seqs(&lines, b), [1, 2]);
    let html = lines
        .iter()
        .position(|l| l.starts_with(&format!("{a} html ")));
    let event = lines
        .iter()
        .position(|l| l.starts_with(&format!("{a} event ")));
    assert!(html.unwrap() < event.unwrap(), "{lines:?}");

    // Live: a new event in `a`; `b` deleted ends `b` alone (and the list
    // hears of it); `a` goes on.
    record(&s.paddock, a, "live".into()).await;
    let lines = live_lines(&mut frames, |l| l.starts_with(&format!("{a} event "))).await;
    assert_eq!(live_seqs(&lines, a), [4]);
    app::api::Backend::delete_session(&*s.paddock, &Caller::local_operator(), b)
        .await
        .unwrap();
    let deleted = format!("list deleted {b}");
    let mut heard = (false, false);
    live_lines(&mut frames, |l| {
        heard.0 |= l == format!("{b} closed gone");
        heard.1 |= l == deleted;
        heard == (true, true)
    })
    .await;
    record(&s.paddock, a, "still live".into()).await;
    let lines = live_lines(&mut frames, |l| l.starts_with(&format!("{a} event "))).await;
    assert_eq!(live_seqs(&lines, a), [5]);
    // Idle, it says it is alive (15 s after the last line), in a line of
    // no topic: keep-alive comments never reach the page.
    let lines = live_lines(&mut frames, |l| l == "- ping -").await;
    assert_eq!(lines, ["- ping -"]);
}

#[tokio::test]
async fn one_connection_refuses_bad_subscriptions_and_changes_nothing() {
    let s = start().await;
    let session = s.session().await;
    record_n(&s.paddock, session, 3).await;
    let before = s.footprint().await;
    let too_many: Vec<String> = (0..201)
        .map(|_| format!("{}:0", uuid::Uuid::now_v7()))
        .collect();
    for query in [
        String::new(),
        "list=false".into(),
        "list=maybe".into(),
        "sessions=nope:0".into(),
        format!("sessions={session}"),
        format!("sessions={session}:x"),
        format!("sessions={session}:-1"),
        format!("sessions={session}:1,{session}:2"),
        format!("sessions={}", too_many.join(",")),
        format!("sessions={}:0&list=true", "\u{202e}<script>".repeat(50)),
        // Misspelt: refused, not taken as following the list alone.
        format!("sesions={session}:0&list=true"),
    ] {
        let res = s
            .client
            .get(s.url(&format!("/api/live?{query}")))
            .send()
            .await
            .unwrap();
        let (status, kind, message) = error_of(res).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {message}");
        assert_eq!(kind, "invalid_request", "{query}");
        assert!(message.len() < 400, "{message}");
    }
    // Past the newest event: that transcript alone is refused, in the stream.
    let res = s
        .client
        .get(s.url(&format!("/api/live?sessions={session}:99&list=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut frames: Frames = Box::pin(res.bytes_stream().eventsource());
    let closed = format!("{session} closed invalid");
    live_lines(&mut frames, |l| l == closed).await;
    assert_eq!(s.footprint().await, before);
}
