//! Secrets, with the real `paddock` binary: saved through the dashboard's
//! server function, set in the environment of a session's commands, and
//! masked (`••••`) in the stored transcript, the live event stream (also
//! when the model streams the value three characters at a time), the tool
//! results the model is sent, the log and the database; a removed secret
//! stops a run with a clear error and leaves the session usable.

use crate::common::{self, start_with};
use crate::credential_store::{bash, client, container_env, contains, database_bytes, Browser};
use app::domain::{EventKind, Session, SessionStatus};
use reqwest::{header, Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const SECRET: &str = "ghp_canary0Secret9Token4Value";
const KEY: &str = "sk-model-key";

/// The text of every `delta` frame of an event stream, joined per block.
fn deltas(stream: &str) -> String {
    let mut joined = String::new();
    for frame in stream.split("\n\n") {
        if !frame.lines().any(|l| l == "event: delta") {
            continue;
        }
        for data in frame.lines().filter_map(|l| l.strip_prefix("data: ")) {
            let delta: app::domain::Delta = serde_json::from_str(data).unwrap();
            joined.push_str(&delta.text);
        }
    }
    joined
}

#[tokio::test]
async fn a_secret_reaches_the_commands_and_is_masked_everywhere_it_would_show() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let check = format!(
        "echo \"token=$DEPLOY_TOKEN\"; test \"$DEPLOY_TOKEN\" = {SECRET} && echo same-value"
    );
    let (model, model_url) = common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": check}}}], "chunk": 3},
            {
                "expect": {"tool_result_contains": ["token=••••", "same-value"]},
                "reply": format!("The token is {SECRET}, as asked."),
                "chunk": 3
            },
            bash("echo \"again=$DEPLOY_TOKEN\""),
            {"expect": {"tool_result_contains": "again=••••"}, "reply": "still there"}
        ]),
        Some(KEY),
    )
    .await;
    let env = [
        ("ANTHROPIC_BASE_URL", model_url.as_str()),
        ("ANTHROPIC_API_KEY", KEY),
        ("RUST_LOG", "debug"),
    ];
    let server = start_with(dir, "127.0.0.1:0", &env);
    let mut admin = Browser {
        url: server.url.clone(),
        cookie: String::new(),
        answers: String::new(),
    };

    // What a secret may be.
    for (name, value, why) in [
        ("DEPLOY_TOKEN", "short", "characters to"),
        ("1TOKEN", SECRET, "not a variable name"),
        ("PATH", SECRET, "the sandbox's own"),
        ("", SECRET, "not a variable name"),
    ] {
        let (status, body) = admin
            .try_call(
                "save_credential",
                &[
                    ("scope", "server"),
                    ("kind", "secret"),
                    ("name", name),
                    ("value", value),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert!(body.contains(why), "{name}: {body}");
    }
    let secret = [
        ("scope", "server"),
        ("kind", "secret"),
        ("name", "DEPLOY_TOKEN"),
        ("value", SECRET),
    ];
    let saved = admin.call("save_credential", &secret).await;
    assert!(
        saved.contains("\"hint\":\"••••\""),
        "no hint of it: {saved}"
    );
    let listed = admin.call("list_credentials", &[]).await;
    assert!(listed.contains("DEPLOY_TOKEN"), "{listed}");

    // A session may list only saved secrets.
    let (status, body) = admin
        .try_call("create_session", &[("name", "x"), ("secrets", "NOT_SAVED")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("NOT_SAVED is not saved"), "{body}");
    let session: Session = serde_json::from_str(
        &admin
            .rest(
                Method::POST,
                "/api/sessions",
                Some(json!({
                    "name": "secret",
                    "permission_mode": "auto",
                    "secrets": ["DEPLOY_TOKEN"]
                })),
            )
            .await,
    )
    .unwrap();
    assert_eq!(session.secrets, ["DEPLOY_TOKEN"]);

    // A viewer follows the run live.
    let stream = client()
        .get(format!("{}/api/sessions/{}/events", server.url, session.id))
        .header(header::ACCEPT, "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let viewer = tokio::spawn(async move {
        let mut stream = stream;
        let mut seen = String::new();
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(60), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("as asked.") && seen.contains("\"status\":\"idle\"") {
                break;
            }
        }
        seen
    });
    admin
        .rest(
            Method::POST,
            &format!("/api/sessions/{}/prompt", session.id),
            Some(json!({"text": format!("is {SECRET} set?")})),
        )
        .await;
    let events = admin.finished(&session).await;
    let transcript = serde_json::to_string(&events).unwrap();
    assert_eq!(model.turns_used(), 2, "{transcript}");
    assert!(transcript.contains("token=••••"), "{transcript}");
    assert!(
        transcript.contains("The token is ••••, as asked."),
        "{transcript}"
    );
    assert!(transcript.contains("is •••• set?"), "{transcript}");
    assert!(!transcript.contains(SECRET), "{transcript}");

    let live = viewer.await.unwrap();
    assert!(!live.contains(SECRET), "streamed: {live}");
    let streamed = deltas(&live);
    assert!(
        streamed.contains("The token is ••••, as asked.") && streamed.contains("= ••••"),
        "the deltas, three characters each, masked as they stream: {streamed}"
    );

    // What the model was sent back: the output as the transcript has it.
    for request in model.requests() {
        let last = request["messages"].as_array().unwrap().last().unwrap();
        assert!(
            !last.to_string().contains(SECRET),
            "sent to the model: {last}"
        );
    }
    assert!(
        !container_env(&session).contains(SECRET),
        "set for the commands, not the container"
    );

    // Removed, the secret stops the next run with a clear error, and a new
    // session cannot list it; saved again, the session runs again.
    admin.call("delete_credential", &secret[..3]).await;
    let (status, body) = admin
        .try_call(
            "create_session",
            &[("name", "y"), ("secrets", "DEPLOY_TOKEN")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    admin
        .rest(
            Method::POST,
            &format!("/api/sessions/{}/prompt", session.id),
            Some(json!({"text": "again"})),
        )
        .await;
    let events = admin.finished(&session).await;
    let error = events.iter().rev().find_map(|k| match k {
        EventKind::Error { message } => Some(message.clone()),
        _ => None,
    });
    assert!(
        error
            .as_deref()
            .is_some_and(|m| m.contains("DEPLOY_TOKEN is not saved any more")),
        "{events:?}"
    );
    assert_eq!(model.turns_used(), 2, "no model call without the secret");
    admin.call("save_credential", &secret).await;
    admin
        .rest(
            Method::POST,
            &format!("/api/sessions/{}/prompt", session.id),
            Some(json!({"text": "and now?"})),
        )
        .await;
    let events = admin.finished(&session).await;
    let s: Session = serde_json::from_str(
        &admin
            .call("get_session", &[("id", &session.id.to_string())])
            .await,
    )
    .unwrap();
    assert_eq!(s.status, SessionStatus::Idle, "{events:?}");
    assert!(serde_json::to_string(&events)
        .unwrap()
        .contains("still there"));

    let log = server.log();
    drop(server);
    assert!(log.contains("session created"), "the log is read: {log}");
    assert!(!log.contains(SECRET), "logged: {log}");
    assert!(
        !admin.answers.contains(SECRET),
        "answered: {}",
        admin.answers
    );
    assert!(
        !contains(&database_bytes(dir), SECRET),
        "stored in plain text"
    );
}

/// No other process of the server's user reads the server's environment
/// (its API key) or memory through /proc: a local sandbox's command
/// without bubblewrap is such a process.
#[test]
fn the_servers_environment_is_closed_to_its_users_other_processes() {
    use std::process::{Command, Stdio};
    // As an unprivileged user (root reads any process's), one of the
    // binary's commands that waits: the template renderer, on its input.
    let as_nobody = |program: &str| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", program])
            .stderr(Stdio::piped());
        command
    };
    let mut server = as_nobody(env!("CARGO_BIN_EXE_paddock"))
        .arg("render-trigger-templates")
        .env("ANTHROPIC_API_KEY", KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let environ = format!("/proc/{}/environ", server.id());
    let began = std::time::Instant::now();
    // Once the binary has started (before, the process is setpriv's, which
    // changing its user made undumpable).
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_paddock")).unwrap();
    while std::fs::read_link(format!("/proc/{}/exe", server.id())).ok() != Some(binary.clone()) {
        assert!(began.elapsed() < Duration::from_secs(10), "never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let read = loop {
        let read = as_nobody("cat").arg(&environ).output().unwrap();
        if !read.status.success() || began.elapsed() > Duration::from_secs(10) {
            break read;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(!read.status.success(), "read: {read:?}");
    assert!(!contains(&read.stdout, KEY));
    let said = String::from_utf8_lossy(&read.stderr);
    assert!(said.contains("Permission denied"), "{said}");
}
