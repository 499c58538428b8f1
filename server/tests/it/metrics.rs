//! `GET /metrics`: admins only when sign-in is on, and what it serves is
//! valid Prometheus text (`promtool check metrics`, from Debian's
//! `prometheus`) holding what a run recorded: the run, its model calls,
//! its tool call, its tokens, the viewer following it, the sessions by
//! status. Other tests share this process's recorder, so counts are read
//! as "at least". And JSON logs carry a request's id into the run its
//! prompt started.

use crate::accounts::team;
use crate::common::{self, rest::Rest, start_with};
use app::accounts::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};

/// The value of the series of metric `name` with `labels` (each
/// `key="value"`, in any order) in `text`.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        let inside = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}'));
        let have: Vec<&str> = inside.map_or_else(Vec::new, |i| i.split(',').collect());
        (have.len() == labels.len() && labels.iter().all(|l| have.contains(l)))
            .then(|| value.parse().ok())?
    })
}

#[tokio::test]
async fn metrics_are_for_admins_and_valid_prometheus_text() {
    let (_model, url) = common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo measured"}}}]},
            {"reply": "done"}
        ]),
        None,
    )
    .await;
    let flags = common::model_flags(&url, "sk-test");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let t = team(&flags).await;
    let admin = t.person("root", Role::Admin).await;
    let member = t.person("mia", Role::Member).await;

    let (status, _) = t.status(t.request(Method::GET, "/metrics")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no credentials");
    let (status, body) = t.status(t.as_(&member, Method::GET, "/metrics")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let s = t
        .create(
            &admin,
            json!({"name": "measured", "permission_mode": "auto"}),
        )
        .await;
    // A viewer following the session while it runs and while we scrape.
    let viewer = t
        .as_(
            &admin,
            Method::GET,
            &format!("/api/sessions/{}/events", s.id),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(viewer.status(), StatusCode::OK);
    let (status, _) = t
        .status(
            t.as_(
                &admin,
                Method::POST,
                &format!("/api/sessions/{}/prompt", s.id),
            )
            .json(&json!({"text": "measure"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let events = common::wait_idle(&t.paddock, s.id).await;
    assert_eq!(
        common::last_status(&events).0,
        app::domain::SessionStatus::Idle
    );

    let res = t.as_(&admin, Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus; scripts/setup --tests installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let at_least = |name: &str, labels: &[&str], min: f64| {
        let v =
            value(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
        assert!(
            v >= min,
            "{name} {labels:?} is {v}, expected at least {min}"
        );
    };
    at_least("paddock_runs_started_total", &[], 1.0);
    at_least(
        "paddock_runs_finished_total",
        &["outcome=\"completed\""],
        1.0,
    );
    at_least(
        "paddock_model_call_duration_seconds_count",
        &["model=\"claude-sonnet-4-5\"", "outcome=\"ok\""],
        2.0,
    );
    at_least(
        "paddock_tool_call_duration_seconds_count",
        &["tool=\"bash\""],
        1.0,
    );
    at_least("paddock_tokens_total", &["direction=\"input\""], 1.0);
    at_least("paddock_viewers", &["stream=\"events\""], 1.0);
    at_least("paddock_sessions", &["status=\"idle\""], 1.0);
    assert!(text.contains("# TYPE paddock_model_call_duration_seconds histogram"));
    drop(viewer);
}

#[tokio::test]
async fn json_logs_carry_the_request_id_into_the_run() {
    // The model refuses the server's key: the run fails, and says so in
    // the log, inside the span of the request that sent the prompt.
    let (_model, url) = common::scripted(&json!([{"reply": "never"}]), Some("the-right-key")).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        dir.path(),
        "127.0.0.1:0",
        &[
            ("PADDOCK_LOG_FORMAT", "json"),
            ("PADDOCK_SANDBOX", "local"),
            ("ANTHROPIC_BASE_URL", &url),
            ("ANTHROPIC_API_KEY", "a-wrong-key"),
        ],
    );
    let paddock = Rest::new(&server.url, None);
    let id = paddock.create(json!({"name": "logged"})).await;
    let res = paddock
        .request(Method::POST, &format!("/api/sessions/{id}/prompt"))
        .header("x-request-id", "prompt-4711")
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.headers()["x-request-id"], "prompt-4711");
    // An id that could forge a log line's fields is replaced.
    let forged = paddock
        .request(Method::GET, "/api/sessions")
        .header("x-request-id", "x method=POST path=/api/admin")
        .send()
        .await
        .unwrap();
    let replaced = forged.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(replaced).is_ok(), "{replaced}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let line = loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| l.contains("the run failed")) {
            break line.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let line: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let spans = line["spans"].as_array().expect("its spans");
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "request" && s["id"] == "prompt-4711"),
        "{line}"
    );
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "run" && s["session"] == id.as_str()),
        "{line}"
    );
}
