//! The deploy image, run as a PaaS runs it: the image
//! `scripts/build-deploy-image` built (`PADDOCK_DEPLOY_IMAGE`, default
//! `paddock:local`; scripts/test builds it first), a port in `PORT`, one
//! volume at `/data` owned by root as platforms mount them, no Docker
//! daemon inside. The first admin comes from
//! the setup link in its log; a session runs a prompt against the scripted
//! model; the container is removed and a new one started on the same
//! volume finds the session, its transcript and its workspace.

use crate::common::{self, rest::Rest};
use app::domain::{EventKind, SessionStatus};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

fn image() -> String {
    std::env::var("PADDOCK_DEPLOY_IMAGE").unwrap_or_else(|_| "paddock:local".to_owned())
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The containers and the volume of one test, removed when it ends.
struct Deployment {
    volume: String,
    containers: Vec<String>,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
    }
}

impl Deployment {
    /// Starts a container of the image on the volume, serving on `port`
    /// (the host's network: the scripted model listens on its loopback),
    /// with `extra` options of `docker run`.
    fn start(&mut self, port: u16, model_url: &str, extra: &[&str]) -> String {
        let name = format!("{}-{}", self.volume, self.containers.len());
        // Removed with the deployment even if `docker run` fails halfway.
        self.containers.push(name.clone());
        let volume = format!("{}:/data", self.volume);
        let options = [
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "-e",
            &format!("PORT={port}"),
            "-e",
            &format!("ANTHROPIC_BASE_URL={model_url}"),
            "-e",
            "ANTHROPIC_API_KEY=sk-test",
            "-v",
            &volume,
        ];
        docker(&[&options[..], extra, &[&image()]].concat());
        name
    }
}

fn logs(container: &str) -> String {
    let out = Command::new("docker")
        .args(["logs", container])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `/readyz`'s body once it answers 200.
async fn ready(url: &str, container: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(res) = reqwest::get(format!("{url}/readyz")).await {
            if res.status() == StatusCode::OK {
                return res.json().await.unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "not ready in time: {}",
            logs(container)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A signed-in admin's view of the Paddock at `url`.
async fn sign_in(url: &str) -> Rest {
    let res = Rest::new(url, None)
        .request(Method::POST, "/auth/signin")
        .form(&[("login", "admin"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "signed in");
    let cookie = res.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    Rest::new(url, Some(cookie.split(';').next().unwrap().to_owned()))
}

#[tokio::test]
async fn the_deploy_image_runs_a_session_and_keeps_it_on_its_volume() {
    let (_model, model_url) = common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo deployed > proof.txt; id -u"}}}]},
            {"reply": "done"}
        ]),
        Some("sk-test"),
    )
    .await;
    let mut deployment = Deployment {
        volume: format!("paddock-it-{}", uuid::Uuid::now_v7().simple()),
        containers: Vec::new(),
    };
    docker(&["image", "inspect", &image()]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");

    // A volume owned by root, as platforms mount them.
    docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "chown",
        "-v",
        &format!("{}:/data", deployment.volume),
        &image(),
        "root:root",
        "/data",
    ]);
    // A key mounted as one file in a folder of the system's: the
    // entrypoint gives `paddock` neither that folder nor the root.
    let owners = docker(&[
        "run",
        "--rm",
        "-e",
        "PADDOCK_MASTER_KEY_FILE=/etc/paddock.key",
        "-e",
        "WORKSPACE_ROOT=/",
        "-v",
        &format!("{}:/data", deployment.volume),
        &image(),
        "stat",
        "-c",
        "%U",
        "/",
        "/etc",
    ]);
    assert_eq!(owners, "root\nroot\n");
    let first = deployment.start(port, &model_url, &[]);
    let readyz = ready(&url, &first).await;
    // No Docker daemon in the container: the local backend, and it says
    // how weak its isolation is.
    assert_eq!(readyz["sandbox"]["backend"], "local", "{readyz}");
    assert!(readyz["sandbox"]["warning"].is_string(), "{readyz}");
    // Paddock runs as its own user, who was given the volume.
    let owner = docker(&[
        "exec",
        &first,
        "stat",
        "-c",
        "%U %u",
        "/data",
        "/data/paddock.db",
    ]);
    assert_eq!(owner, "paddock 10001\npaddock 10001\n");
    docker(&["exec", &first, "paddock", "health"]);
    // The sandbox agent, for a Docker host on another machine, runs in it.
    let agent = Command::new("docker")
        .args(["exec", &first, server::sandbox::BUNDLED_SANDBOX_AGENT_BIN])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&agent.stderr).contains("usage: paddock-sandbox-agent"),
        "{agent:?}"
    );
    // The image's own health check, as Docker runs it: as root, and in a
    // container started as the user (`docker run --user`).
    let check: Vec<String> = serde_json::from_str(&docker(&[
        "inspect",
        "--format",
        "{{json .Config.Healthcheck.Test}}",
        &image(),
    ]))
    .unwrap();
    assert_eq!(check[0], "CMD", "{check:?}");
    let check: Vec<&str> = check[1..].iter().map(String::as_str).collect();
    for user in ["0", "10001"] {
        docker(&[&["exec", "-u", user, &first][..], &check].concat());
    }

    // The bundle as browsers fetch it: its brotli or gzip copy, made at
    // build time, when they accept one; each the same bytes once decoded.
    let bundle = |encoding: &'static str| {
        let url = format!("{url}/pkg/paddock.wasm");
        async move {
            let res = reqwest::Client::new()
                .get(url)
                .header("accept-encoding", encoding)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{encoding}");
            // Whichever copy: the type of the file, and a cache between
            // told that the answer depends on what the client accepts.
            let header = |name| res.headers().get(name).map(|v| v.to_str().unwrap());
            assert_eq!(
                header("content-type"),
                Some("application/wasm"),
                "{encoding}"
            );
            assert_eq!(header("vary"), Some("accept-encoding"), "{encoding}");
            let coding = res
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            (coding, res.bytes().await.unwrap().to_vec())
        }
    };
    let (coding, wasm) = bundle("identity").await;
    assert_eq!(coding, None);
    assert!(wasm.starts_with(b"\0asm"));
    let (coding, gzipped) = bundle("gzip").await;
    assert_eq!(coding.as_deref(), Some("gzip"));
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert!(decoded == wasm && gzipped.len() < wasm.len() / 2);
    let (coding, brotli) = bundle("gzip, br").await;
    assert_eq!(coding.as_deref(), Some("br"));
    let mut decoded = Vec::new();
    brotli_decompressor::Decompressor::new(&brotli[..], 4096)
        .read_to_end(&mut decoded)
        .unwrap();
    assert!(decoded == wasm && brotli.len() < gzipped.len());

    let log = logs(&first);
    let token = log
        .split_once("/setup?token=")
        .map(|(_, rest)| rest.split_whitespace().next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no setup link in the log: {log}"));
    let res = Rest::new(&url, None)
        .request(Method::POST, "/auth/setup")
        .form(&[
            ("token", token.as_str()),
            ("login", "admin"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the first admin");
    let admin = sign_in(&url).await;

    let id = admin
        .create(json!({"name": "deployed", "permission_mode": "auto"}))
        .await;
    admin.prompt(&id, "leave proof").await;
    let last_seq = admin.wait_idle(&id, 2, || logs(&first)).await;
    let before = admin.transcript(&id, last_seq).await;
    assert!(
        before.iter().any(|e| matches!(&e.kind,
            EventKind::ToolResult { output, is_error: false, .. }
                if output.trim().parse::<u32>().is_ok_and(|uid| uid != 0))),
        "the command ran, not as root: {before:?}"
    );
    assert!(matches!(
        &before.last().unwrap().kind,
        EventKind::Status {
            status: SessionStatus::Idle,
            ..
        }
    ));

    // A new container on the same volume: a restart, a redeploy; its
    // master key mounted read-only, as a platform's secret is.
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        key.path(),
        docker(&["exec", &first, "cat", "/data/master.key"]),
    )
    .unwrap();
    std::os::unix::fs::chown(key.path(), Some(10001), Some(10001)).unwrap();
    docker(&["rm", "-f", &first]);
    let mount = format!("{}:/data/master.key:ro", key.path().display());
    let second = deployment.start(port, &model_url, &["-v", &mount]);
    ready(&url, &second).await;
    assert!(
        !logs(&second).contains("/setup?token="),
        "an account exists: no setup link"
    );
    let admin = sign_in(&url).await;
    let after = admin.transcript(&id, last_seq).await;
    assert_eq!(after, before);
    let proof = admin
        .request(Method::GET, &format!("/api/sessions/{id}/files/proof.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(proof.status(), StatusCode::OK);
    assert_eq!(proof.text().await.unwrap(), "deployed\n");
}
