//! The HTTP surface against a real SQLite file: router tests without a
//! socket, and a real server on port 0.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use clap::Parser;
use http_body_util::BodyExt;
use leptos::config::LeptosOptions;
use server::http::{router, AppState};
use server::Config;
use tower::ServiceExt;

struct Harness {
    _dir: tempfile::TempDir,
    state: AppState,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    // Local sandboxes: these tests are about HTTP, and must not leave
    // containers behind for the sessions they create.
    let config = Config::try_parse_from([
        "paddock".into(),
        "--sandbox=local".into(),
        format!(
            "--database-url=sqlite://{}/paddock.db",
            dir.path().display()
        ),
        format!(
            "--workspace-root={}",
            dir.path().join("workspaces").display()
        ),
    ])
    .unwrap();
    let options = LeptosOptions::builder().output_name("paddock").build();
    let state = AppState::with_options(&config, options).await.unwrap();
    Harness { _dir: dir, state }
}

async fn send(h: &Harness, req: Request<Body>) -> (StatusCode, String) {
    let res = router(h.state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn form_post(uri: &str, body: impl Into<String>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(Body::from(body.into()))
        .unwrap()
}

async fn session_count(h: &Harness) -> usize {
    h.state.paddock.store.list_sessions().await.unwrap().len()
}

#[tokio::test]
async fn probes_answer() {
    let h = harness().await;
    assert_eq!(
        send(&h, get("/healthz")).await,
        (StatusCode::OK, "ok".into())
    );
    let (status, body) = send(&h, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["database"], "ok");
}

#[tokio::test]
async fn home_page_renders_empty_state_then_created_session() {
    let h = harness().await;
    let (status, html) = send(&h, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No sessions yet"), "{html}");
    assert!(html.contains("/pkg/paddock.js"), "hydration script missing");

    let (status, body) = send(
        &h,
        form_post(
            "/api/create_session",
            "name=Fix+%3Cb%3Eit%3C%2Fb%3E&model=claude-haiku-4-5",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session: app::model::Session = serde_json::from_str(&body).unwrap();
    assert_eq!(session.name, "Fix <b>it</b>");
    assert_eq!(session.model, "claude-haiku-4-5");

    let (_, html) = send(&h, get("/")).await;
    assert!(
        html.contains("Fix &lt;b&gt;it&lt;/b&gt;"),
        "name must be escaped: {html}"
    );
    assert!(!html.contains("<b>it</b>"));

    let (status, html) = send(&h, get(&format!("/sessions/{}", session.id))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("claude-haiku-4-5"));
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let h = harness().await;
    let long = "x".repeat(10_000);
    for body in [
        // An empty name is fine (it becomes "Untitled session"); these are not.
        "name=ok&permission_mode=sometimes".to_string(),
        "name=ok&engine=emacs".to_string(),
        "name=ok&budget_usd=-1".to_string(),
        "name=ok&budget_usd=lots".to_string(),
        format!("name={long}"),
        "name=ok&model=%3Cscript%3E".to_string(),
        "%%%garbage".to_string(),
        "model=no-name".to_string(),
    ] {
        let (status, msg) = send(&h, form_post("/api/create_session", body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {msg}");
        assert!(!msg.is_empty());
    }
    let (status, _) = send(
        &h,
        form_post(
            "/api/create_session",
            format!("name={}", "y".repeat(3 * 1024 * 1024)),
        ),
    )
    .await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(session_count(&h).await, 0);
}

#[tokio::test]
async fn unknown_ids_and_paths_are_404() {
    let h = harness().await;
    for uri in [
        "/sessions/not-a-uuid",
        "/sessions/0190f5a0-0000-7000-8000-000000000000",
        "/no/such/page",
    ] {
        let (status, html) = send(&h, get(uri)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(html.contains("not found"), "{uri}: {html}");
    }
    let (status, body) = send(
        &h,
        form_post("/api/get_session", "id=..%2F..%2Fetc%2Fpasswd"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("NotFound"), "{body}");
}

#[tokio::test]
async fn serves_on_port_zero_and_shuts_down_gracefully() {
    let h = harness().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, h.state.clone(), async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .post(format!("http://{addr}/api/create_session"))
        .form(&[("name", "over the wire")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client.get(format!("http://{addr}/")).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("over the wire"));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn prompt_stop_and_decide_server_functions_refuse_bad_input() {
    let h = harness().await;
    let (_, body) = send(&h, form_post("/api/create_session", "name=talk")).await;
    let session: app::model::Session = serde_json::from_str(&body).unwrap();
    let id = session.id;
    let (status, _) = send(
        &h,
        form_post("/api/send_prompt", format!("id={id}&text=+++")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(&h, form_post("/api/send_prompt", "id=nope&text=hi")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(&h, form_post("/api/stop_session", format!("id={id}"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(
        &h,
        form_post(
            "/api/decide_permission",
            format!("id={id}&request_id=perm_x&decision=allow"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        &h,
        form_post(
            "/api/decide_permission",
            format!("id={id}&request_id=perm_x&decision=maybe"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let events = h
        .state
        .paddock
        .store
        .events_after(id, 0, 100)
        .await
        .unwrap();
    assert!(events.is_empty(), "nothing stored: {events:?}");
}
