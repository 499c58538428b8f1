//! The real `paddock` binary against a real Docker daemon and SQLite file:
//! killed with SIGKILL mid-work and started again, it reaps the sandboxes of
//! sessions that are gone and marks interrupted the sessions that were
//! running, keeping their sandboxes and workspaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use app::model::{Event, EventKind, Session, SessionStatus};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    url: String,
}

fn start(dir: &Path, addr: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .env("PADDOCK_ADDR", addr)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/paddock.db", dir.display()),
        )
        .env("WORKSPACE_ROOT", dir.join("workspaces"))
        .env("PADDOCK_SANDBOX", "docker")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("paddock exited before listening")
            .unwrap();
        if let Some((_, url)) = line.split_once("listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

async fn call<T: serde::de::DeserializeOwned>(
    server: &Server,
    function: &str,
    form: &[(&str, &str)],
) -> T {
    let res = reqwest::Client::new()
        .post(format!("{}/api/{function}", server.url))
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{function}: {}", res.status());
    res.json().await.unwrap()
}

fn container_exists(session: &Session) -> bool {
    let name = format!("paddock-{}", session.id);
    Command::new("docker")
        .args(["inspect", &name])
        .output()
        .unwrap()
        .status
        .success()
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not met within 10 s");
}

#[tokio::test]
async fn sigkill_then_restart_reaps_orphans_and_interrupts_running_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.keep()).unwrap();
    let mut server = start(&dir, "127.0.0.1:0");
    let running: Session = call(&server, "create_session", &[("name", "was running")]).await;
    let deleted: Session = call(&server, "create_session", &[("name", "deleted meanwhile")]).await;
    wait_for(|| container_exists(&running) && container_exists(&deleted)).await;
    let workspaces = dir.join("workspaces");
    std::fs::write(
        workspaces.join(running.id.to_string()).join("work.txt"),
        "half done",
    )
    .unwrap();

    // What a crash leaves: one session mid-turn, one whose row is gone.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/paddock.db", dir.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE sessions SET status = 'running' WHERE id = ?")
        .bind(running.id.to_string())
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM sessions WHERE id = ?")
        .bind(deleted.id.to_string())
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();

    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut server = start(&dir, &addr);
    assert!(
        !container_exists(&deleted),
        "the orphan's container is reaped"
    );
    assert!(
        !workspaces.join(deleted.id.to_string()).exists(),
        "and its workspace"
    );
    assert!(
        container_exists(&running),
        "the running session's sandbox is kept"
    );
    assert_eq!(
        std::fs::read_to_string(workspaces.join(running.id.to_string()).join("work.txt")).unwrap(),
        "half done"
    );
    let id = running.id.to_string();
    let after: Session = call(&server, "get_session", &[("id", &id)]).await;
    assert_eq!(after.status, SessionStatus::Interrupted);
    let events: Vec<Event> = call(&server, "session_events", &[("id", &id), ("after", "0")]).await;
    assert!(
        matches!(&events.last().unwrap().kind, EventKind::Status { status: SessionStatus::Interrupted, message: Some(m) } if m.contains("send a prompt")),
        "{events:?}"
    );

    // Deleting the session removes its container and workspace.
    let () = call(&server, "delete_session", &[("id", &id)]).await;
    assert!(!container_exists(&running));
    assert!(!workspaces.join(&id).exists());
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
