//! Notifications over a real server: a loopback receiver (answering what
//! the test tells it) gets each message, verified by the `standardwebhooks`
//! library as a receiver would; a 500 is tried again; a restart resumes
//! from the endpoint's cursor, with what happened while no sender ran.

use crate::common::senders::sender_sign;
use crate::common::{self, postgres, Home};
use app::notifications::{EndpointSecret, Message, MessageState};
use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use server::paddock::Paddock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the receiver got: each request's headers and body.
#[derive(Clone, Default)]
struct Received {
    requests: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Requests still to answer 500.
    failing: Arc<AtomicUsize>,
    /// How long each request waits for its answer, in ms.
    delay_ms: Arc<AtomicUsize>,
    /// Requests answered.
    answered: Arc<AtomicUsize>,
}

impl Received {
    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Waits until `n` requests came.
    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, String)> {
        for _ in 0..600 {
            let got = self.requests.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the receiver got {} of {n} requests", self.count());
    }
}

/// A receiver on a loopback port: its URL.
async fn receiver(received: Received) -> String {
    let app = axum::Router::new().fallback(
        |axum::extract::State(r): axum::extract::State<Received>,
         headers: HeaderMap,
         body: String| async move {
            r.requests.lock().unwrap().push((headers, body));
            let delay = r.delay_ms.load(Ordering::SeqCst) as u64;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            r.answered.fetch_add(1, Ordering::SeqCst);
            let failing = r.failing.load(Ordering::SeqCst);
            if failing > 0 {
                r.failing.store(failing - 1, Ordering::SeqCst);
                // What a broken receiver may say: a NUL and a terminal's
                // escape among its words.
                return (StatusCode::INTERNAL_SERVER_ERROR, "down\0 \x1b[31mhard");
            }
            (StatusCode::NO_CONTENT, "")
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app.with_state(received)).await });
    url
}

/// A message as `standardwebhooks` verifies it: its payload.
fn verified(secret: &str, (headers, body): &(HeaderMap, String)) -> Value {
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|name| {
                let value = headers[*name].to_str().unwrap().to_owned();
                (name.to_string(), Value::String(value))
            })
            .collect();
    let out = sender_sign(
        &["verify-standard-webhooks", secret],
        &json!({"headers": headers, "body": body}).to_string(),
    );
    serde_json::from_str(&out).unwrap()
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let res = http.post(url).json(&body).send().await.unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

/// A new endpoint of the template's for `hook`: what its making answered.
async fn add_endpoint(
    http: &reqwest::Client,
    served: &common::Served,
    template: &str,
    hook: &str,
) -> Value {
    let (status, made) = post(
        http,
        served.url(&format!("/api/templates/{template}/notifications")),
        json!({"url": hook}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made
}

/// A session from the template, running `prompt` to its end.
async fn run(paddock: &Paddock, template: &str, prompt: &str) -> app::domain::SessionId {
    let session = common::create(
        paddock,
        app::domain::NewSession {
            name: "notified".into(),
            template: Some(template.parse().unwrap()),
            ..Default::default()
        },
    )
    .await;
    common::run(paddock, session.id, prompt).await;
    session.id
}

#[tokio::test]
async fn notifications_are_signed_tried_again_and_resume_after_a_restart() {
    let (_model, model_url) = common::scripted(
        &json!([
            {"reply": "All done: the tests pass."},
            {"reply": "Second run done."},
            {"reply": "Third run done."},
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "rm -rf build"}}}]},
        ]),
        None,
    )
    .await;
    let home = Home::new();
    let flags = common::model_flags(&model_url, "sk-test");
    let received = Received::default();
    let hook = receiver(received.clone()).await;
    let http = reqwest::Client::new();

    let first = common::open(&home, "local", &flags).await;
    let served = common::serve(first.clone()).await;
    let (status, template) = post(
        &http,
        served.url("/api/templates"),
        json!({"name": "nightly", "session": {"permission_mode": "ask"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let template = template["id"].as_str().unwrap().to_owned();
    let made: EndpointSecret =
        serde_json::from_value(add_endpoint(&http, &served, &template, &hook).await).unwrap();
    assert!(made.secret.starts_with("whsec_"));
    let endpoint = made.endpoint.id;
    server::notifications::sender::spawn(&first);

    // A run finishes: the receiver answers 500 once, and hears it again.
    received.failing.store(1, Ordering::SeqCst);
    let session = run(&first, &template, "Run the tests").await;
    let got = received.wait_for(2).await;
    assert_eq!(
        got[0].0["webhook-id"], got[1].0["webhook-id"],
        "the same message"
    );
    let payload = verified(&made.secret, &got[1]);
    assert_eq!(payload["type"], "session.finished");
    assert_eq!(payload["data"]["text"], "All done: the tests pass.");
    assert_eq!(payload["data"]["session"]["id"], session.to_string());
    assert_eq!(payload["data"]["session"]["template"], "nightly");
    assert!(payload["data"]["session"]["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/sessions/{session}")));
    let log: Vec<Message> = http
        .get(served.url(&format!("/api/notifications/{endpoint}/messages")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].state, log[0].attempts, log[0].response_code),
        (MessageState::Delivered, 2, Some(204))
    );

    // Down: the receiver fails; this server shuts down with the message
    // pending.
    received.failing.store(usize::MAX, Ordering::SeqCst);
    let before = received.count();
    run(&first, &template, "Run again").await;
    received.wait_for(before + 1).await;
    first.hub.shut_down();
    drop(served);
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Another server, on the same home: a run while no sender runs, then
    // its sender resumes from the cursor, in order, once the receiver is
    // back.
    received.failing.store(0, Ordering::SeqCst);
    let second = common::open(&home, "local", &flags).await;
    let third_session = run(&second, &template, "And once more").await;
    let resumed = received.count();
    server::notifications::sender::spawn(&second);
    let got = received.wait_for(resumed + 2).await;
    let texts: Vec<Value> = got[resumed..]
        .iter()
        .map(|r| verified(&made.secret, r)["data"]["text"].clone())
        .collect();
    assert_eq!(texts, [json!("Second run done."), json!("Third run done.")]);
    assert_eq!(
        verified(&made.secret, &got[resumed + 1])["data"]["session"]["id"],
        third_session.to_string()
    );

    // A permission request is heard, with the tool it asks for.
    let asking = common::create(
        &second,
        app::domain::NewSession {
            name: "asks".into(),
            template: Some(template.parse().unwrap()),
            ..Default::default()
        },
    )
    .await;
    let before = received.count();
    use app::api::Backend;
    second
        .send_prompt(
            &app::accounts::Caller::local_operator(),
            asking.id,
            "Clean the build".into(),
        )
        .await
        .unwrap();
    let got = received.wait_for(before + 1).await;
    let asked = verified(&made.secret, &got[before]);
    assert_eq!(asked["type"], "session.permission_requested");
    assert_eq!(asked["data"]["permission"]["tool"], "bash");
    assert_eq!(
        asked["data"]["permission"]["input"]["command"],
        "rm -rf build"
    );
    // Stopped, its run is over: heard as finished, "Stopped.".
    second.runner.stop(asking.id).await.unwrap();
    let got = received.wait_for(before + 2).await;
    let stopped = verified(&made.secret, &got[before + 1]);
    assert_eq!(
        (
            stopped["type"].as_str(),
            stopped["data"]["message"].as_str()
        ),
        (Some("session.finished"), Some("Stopped."))
    );

    // Sent again from the log: the same message, signed anew.
    let served = common::serve(second.clone()).await;
    let id = &log[0].id;
    let before = received.count();
    let res = http
        .post(served.url(&format!(
            "/api/notifications/{endpoint}/messages/{id}/redeliver"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let got = received.wait_for(before + 1).await;
    assert_eq!(got[before].0["webhook-id"].to_str().unwrap(), id);
    assert_eq!(
        verified(&made.secret, &got[before])["data"]["text"],
        "All done: the tests pass."
    );

    // Refused: a URL that is not one, an unknown endpoint or message.
    for bad in [
        json!({"url": "ftp://x"}),
        json!({"url": hook, "events": []}),
        json!({"url": hook, "events": ["never"]}),
        json!({}),
    ] {
        let (status, _) = post(
            &http,
            served.url(&format!("/api/templates/{template}/notifications")),
            bad.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let unknown = uuid::Uuid::now_v7();
    for url in [
        format!("/api/notifications/{unknown}/messages"),
        format!("/api/notifications/{endpoint}/messages/nothing/redeliver"),
        // PostgreSQL's text refuses a NUL: never asked for one.
        format!("/api/notifications/{endpoint}/messages/msg_%00/redeliver"),
    ] {
        let res = if url.ends_with("redeliver") {
            http.post(served.url(&url)).send().await.unwrap()
        } else {
            http.get(served.url(&url)).send().await.unwrap()
        };
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{url}");
    }
}

#[tokio::test]
async fn a_slow_endpoint_holds_up_only_its_own_messages() {
    let (_model, model_url) = common::scripted(
        &json!([{"reply": "First run done."}, {"reply": "Second run done."}]),
        None,
    )
    .await;
    let home = Home::new();
    let flags = common::model_flags(&model_url, "sk-test");
    let (slow, quick) = (Received::default(), Received::default());
    // Longer than a try may take: the slow endpoint's try is under way
    // until it gives up.
    slow.delay_ms.store(60_000, Ordering::SeqCst);
    let http = reqwest::Client::new();
    let paddock = common::open(&home, "local", &flags).await;
    let served = common::serve(paddock.clone()).await;
    let (_, template) = post(
        &http,
        served.url("/api/templates"),
        json!({"name": "watched"}),
    )
    .await;
    let template = template["id"].as_str().unwrap().to_owned();
    let slow_hook = add_endpoint(&http, &served, &template, &receiver(slow.clone()).await).await;
    add_endpoint(&http, &served, &template, &receiver(quick.clone()).await).await;
    server::notifications::sender::spawn(&paddock);

    let session = run(&paddock, &template, "Once").await;
    quick.wait_for(1).await;
    slow.wait_for(1).await;
    common::run(&paddock, session, "Twice").await;
    // Heard while the slow endpoint's first try is still under way.
    let got = tokio::time::timeout(Duration::from_secs(10), quick.wait_for(2))
        .await
        .expect("the quick endpoint waited for the slow one");
    assert_eq!(slow.answered.load(Ordering::SeqCst), 0);
    let texts: Vec<String> = got
        .iter()
        .map(|(_, body)| serde_json::from_str::<Value>(body).unwrap()["data"]["text"].to_string())
        .collect();
    assert_eq!(texts, ["\"First run done.\"", "\"Second run done.\""]);

    // The slow one's message is pending, its try under way: sending it
    // again is refused, not made twice.
    let slow_id = slow_hook["endpoint"]["id"].as_str().unwrap();
    let log: Vec<Message> = http
        .get(served.url(&format!("/api/notifications/{slow_id}/messages")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log[0].state, MessageState::Pending, "{log:?}");
    let res = http
        .post(served.url(&format!(
            "/api/notifications/{slow_id}/messages/{}/redeliver",
            log[0].id
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
}

/// A receiver's answer is kept as the message's error, also on PostgreSQL,
/// whose text cannot hold the NUL a broken receiver may send: the try is
/// counted and the next one waits (it was posted again every look, never
/// counted).
#[tokio::test]
async fn a_receivers_answer_with_a_nul_is_kept_on_postgres() {
    let (_model, model_url) = common::scripted(&json!([{"reply": "Done."}]), None).await;
    let home = Home::new();
    let mut flags = common::model_flags(&model_url, "sk-test");
    flags.push(format!("--database-url={}", postgres::database().await));
    let received = Received::default();
    received.failing.store(usize::MAX, Ordering::SeqCst);
    let http = reqwest::Client::new();
    let paddock = common::open(&home, "local", &flags).await;
    let served = common::serve(paddock.clone()).await;
    let (_, template) = post(
        &http,
        served.url("/api/templates"),
        json!({"name": "watched"}),
    )
    .await;
    let template = template["id"].as_str().unwrap().to_owned();
    let hook = receiver(received.clone()).await;
    let made: EndpointSecret =
        serde_json::from_value(add_endpoint(&http, &served, &template, &hook).await).unwrap();
    server::notifications::sender::spawn(&paddock);
    run(&paddock, &template, "Once").await;
    received.wait_for(1).await;
    let messages = served.url(&format!("/api/notifications/{}/messages", made.endpoint.id));
    let mut log: Vec<Message> = Vec::new();
    for _ in 0..100 {
        log = http
            .get(&messages)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if log.first().is_some_and(|m| m.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (log[0].state, log[0].attempts, log[0].response_code),
        (MessageState::Pending, 1, Some(500))
    );
    assert_eq!(
        log[0].error.as_deref(),
        Some("answered 500: down\u{FFFD} \u{FFFD}[31mhard")
    );
    assert_eq!(received.count(), 1, "tried again before its wait");
}
