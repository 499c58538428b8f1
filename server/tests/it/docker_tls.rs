//! Sandboxes on a Docker host reached over TCP with mutual TLS, as a team
//! runs one for a Paddock deployed without a daemon of its own: a second
//! `dockerd` on this machine, listening on a loopback port with
//! certificates made here by `openssl` (a CA, the daemon's, a client's,
//! and a client's from another CA, which also stands for a daemon's CA
//! that is not the one in ca.pem). Paddock runs as its own process with
//! `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`, as the Docker
//! CLI takes them. Nothing of this machine's filesystem reaches those
//! sandboxes, as on a real remote host: their workspaces are volumes there,
//! and the agent is uploaded into each and reached over its exec's streams.

use crate::common::tls_docker::{cert_path, issue, make_ca, run, TlsDocker};
use crate::common::{self, paddock_command, rest::Rest, start_with};
use app::domain::EventKind;
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// Runs Paddock over `home` with `env`, until it exits or listens; whether
/// it failed, and all it said. `PADDOCK_SANDBOX` is not set: a Docker
/// setting in `env` asks for Docker alone, with no fall back to local
/// sandboxes.
fn refused_start(home: &Path, env: &[(&str, &str)]) -> (bool, String) {
    // Nothing of this process's Docker environment, only `env`'s.
    let out = paddock_command(home, &[])
        .env_remove("PADDOCK_SANDBOX")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env("PADDOCK_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (!out.status.success(), log)
}

/// A GET of Paddock's API.
async fn get(paddock: &Rest, path: &str) -> reqwest::Response {
    paddock
        .request(reqwest::Method::GET, path)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sandboxes_run_on_a_docker_host_reached_with_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let daemon = TlsDocker::start(dir).await;
    let client_certs = daemon.client_certs.clone();
    let rogue_ca = dir.join("rogue-ca");
    make_ca(&rogue_ca, "/CN=someone else's CA");
    issue(
        &daemon.issued,
        &rogue_ca,
        "rogue",
        "/CN=paddock",
        "extendedKeyUsage=clientAuth\n",
    );
    let rogue_certs = cert_path(
        dir.join("rogue-docker"),
        &daemon.ca,
        &daemon.issued,
        "rogue",
    );
    // The right client certificate, but another CA's ca.pem.
    let wrong_ca = cert_path(
        dir.join("wrong-ca-docker"),
        &rogue_ca,
        &daemon.issued,
        "client",
    );

    let docker_env = |certs: &Path| daemon.env(certs);
    let home = dir.join("home");
    // A client certificate from another CA: the daemon refuses it; and a
    // daemon whose certificate does not chain to ca.pem is not trusted,
    // though it would accept the client. Paddock, told to use Docker, does
    // not start.
    for certs in [&rogue_certs, &wrong_ca] {
        let env = docker_env(certs);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (failed, log) = refused_start(&home, &env);
        assert!(failed, "{log}");
        assert!(log.contains("sandbox backend is unavailable"), "{log}");
    }
    // Plain TCP to the daemon is refused before anything is sent.
    let (failed, log) = refused_start(&home, &[("DOCKER_HOST", "tcp://192.0.2.1:2375")]);
    assert!(failed && log.contains("without TLS"), "{log}");
    // A runtime the daemon does not have: refused too, never local.
    let (failed, log) = refused_start(&home, &[("PADDOCK_DOCKER_RUNTIME", "no-such-runtime")]);
    assert!(
        failed && log.contains("does not fall back") && log.contains("no-such-runtime"),
        "{log}"
    );

    let (_model, model_url) = common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo over-tls > proof.txt; cat proof.txt"}}}]},
            {"reply": [{"tool_use": {"name": "write_file", "input": {"path": "notes/plan.md", "content": "remote plan\n"}}}]},
            {"reply": [{"tool_use": {"name": "edit_file", "input": {"path": "notes/plan.md", "old_string": "plan", "new_string": "plan, edited"}}}]},
            {"reply": [{"tool_use": {"name": "grep", "input": {"pattern": "edited"}}}]},
            {"reply": [{"tool_use": {"name": "glob", "input": {"pattern": "**/*.{md,txt}"}}}]},
            {"reply": [{"tool_use": {"name": "grep", "input": {"pattern": "x", "path": "nowhere"}}}]},
            {"reply": "done"},
            {"reply": [{"tool_use": {"name": "read_file", "input": {"path": "proof.txt"}}}]},
            {"reply": "read"}
        ]),
        None,
    )
    .await;
    let env = docker_env(&client_certs);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("ANTHROPIC_BASE_URL", &model_url));
    env.push(("ANTHROPIC_API_KEY", "sk-test"));
    // The daemon is on this machine's loopback, standing for another
    // machine's: Paddock is told so, and uses nothing of its own folders.
    env.push(("PADDOCK_DOCKER_REMOTE", "true"));
    let server = start_with(&home, "127.0.0.1:0", &env);
    let paddock = Rest::new(&server.url, None);

    // What needs this server's own folders is refused, with why.
    for refused in [
        json!({"name": "r", "engine": "claude-code"}),
        json!({"name": "r", "egress": ["example.com:443"]}),
        json!({"name": "r", "source": {"kind": "git", "url": "https://example.com/a.git"}}),
    ] {
        let res = paddock
            .request(reqwest::Method::POST, "/api/sessions")
            .json(&refused)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let said = res.text().await.unwrap();
        assert!(status.is_client_error(), "{refused}: {status} {said}");
        assert!(said.contains("remote"), "{refused}: {said}");
    }

    let id = paddock
        .create(json!({"name": "over tls", "permission_mode": "auto"}))
        .await;
    // Files go through the agent: the workspace of a new session (whose
    // sandbox is being made as it is) is there, and empty.
    let files = |path: &str| format!("/api/sessions/{id}/files{path}");
    let listed: serde_json::Value = get(&paddock, &files("")).await.json().await.unwrap();
    assert_eq!(listed, json!([]));
    let upload = |name: &str, data: &str| {
        let body = format!(
            "--b\r\ncontent-disposition: form-data; name=\"dir\"\r\n\r\n\r\n--b\r\n\
             content-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n\
             {data}\r\n--b--\r\n"
        );
        paddock
            .request(reqwest::Method::POST, &files(""))
            .header("content-type", "multipart/form-data; boundary=b")
            .body(body)
    };

    paddock.prompt(&id, "prove it").await;
    let last_seq = paddock.wait_idle(&id, 7, || server.log()).await;
    let events = paddock.transcript(&id, last_seq).await;
    let results: Vec<(&str, bool)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult {
                output, is_error, ..
            } => Some((output.as_str(), *is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 6, "{events:?}");
    assert_eq!(results[0], ("over-tls\n", false), "{events:?}");
    assert!(
        results[..5].iter().all(|(_, is_error)| !is_error),
        "{results:?}"
    );
    // The searches are the agent's, inside the sandbox.
    assert!(
        results[3].0.contains("notes/plan.md:1:remote plan, edited"),
        "{results:?}"
    );
    assert_eq!(results[4].0, "notes/plan.md\nproof.txt\n", "{results:?}");
    assert!(
        results[5].1 && results[5].0.contains("\"nowhere\" does not exist"),
        "{results:?}"
    );

    // The sandbox is on the TLS daemon, not on this machine's own.
    let name = format!("paddock-{id}");
    let there = run(daemon
        .docker()
        .args(["ps", "-aq", "--filter", &format!("name={name}")]));
    assert!(!there.trim().is_empty(), "no {name} on the TLS daemon");
    let here = run(Command::new("docker").args(["ps", "-aq", "--filter", &format!("name={name}")]));
    assert!(here.trim().is_empty(), "{name} is on the local daemon");
    // Nothing of this machine is mounted into it: its workspace is a volume
    // on that host, the agent's binary another, and the agent talks over
    // its exec's streams.
    let mounts = run(daemon.docker().args([
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}};{{end}}",
        &name,
    ]));
    let mut mounts: Vec<&str> = mounts.trim().split(';').filter(|m| !m.is_empty()).collect();
    mounts.sort();
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert!(
        mounts.iter().all(|m| m.starts_with("volume ")),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&format!("volume paddock-ws-{id} /workspace").as_str()),
        "{mounts:?}"
    );
    assert!(
        mounts.iter().any(|m| m.ends_with(" /opt/paddock")),
        "{mounts:?}"
    );
    let top = run(daemon.docker().args(["top", &name, "-o", "pid,args"]));
    assert!(top.contains("/opt/paddock/sandbox-agent --stdio"), "{top}");
    assert!(!home.join("workspaces").join(&id).exists());

    // The file browser: a folder, a file, an upload, the whole workspace.
    let listed: serde_json::Value = get(&paddock, &files("")).await.json().await.unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["notes", "proof.txt"], "{listed}");
    let got = get(&paddock, &files("/notes/plan.md")).await;
    assert_eq!(got.status(), reqwest::StatusCode::OK);
    assert_eq!(got.text().await.unwrap(), "remote plan, edited\n");
    let missing = get(&paddock, &files("/nope.txt")).await;
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    let outside = get(&paddock, &files("?path=../../etc")).await;
    assert!(outside.status().is_client_error(), "{}", outside.status());
    // A link the agent plants that leaves the workspace is refused inside
    // the sandbox too, and only a link in the archive.
    run(daemon.docker().args([
        "exec",
        &name,
        "ln",
        "-s",
        "/etc/passwd",
        "/workspace/escape",
    ]));
    let escape = get(&paddock, &files("/escape")).await;
    let status = escape.status();
    let said = escape.text().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{said}");
    assert!(said.contains("outside the workspace"), "{said}");
    let uploaded = upload("up.txt", "sent up").send().await.unwrap();
    assert_eq!(uploaded.status(), reqwest::StatusCode::CREATED);
    let cat = run(daemon
        .docker()
        .args(["exec", &name, "cat", "/workspace/up.txt"]));
    assert_eq!(cat, "sent up");
    let archive = get(&paddock, &format!("/api/sessions/{id}/archive"))
        .await
        .bytes()
        .await
        .unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&archive[..]), &mut tar).unwrap();
    // The link that leaves the workspace is a link, nothing read through it.
    let mut paths: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            match e.link_name().unwrap() {
                Some(target) => format!("{path} -> {}", target.display()),
                None => path,
            }
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "over-tls/escape -> /etc/passwd",
            "over-tls/notes/",
            "over-tls/notes/plan.md",
            "over-tls/proof.txt",
            "over-tls/up.txt"
        ]
    );

    // A folder deleted through the agent goes from that host's volume.
    let deleted = paddock
        .request(reqwest::Method::DELETE, &files("/notes"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), reqwest::StatusCode::NO_CONTENT);
    let left = run(daemon
        .docker()
        .args(["exec", &name, "ls", "-A", "/workspace"]));
    assert_eq!(
        left.split_whitespace().collect::<Vec<_>>(),
        ["escape", "proof.txt", "up.txt"]
    );

    // Downloads held by slow readers take all of the session's streams
    // from its agent; the agent's own reads need none.
    run(daemon.docker().args([
        "exec",
        &name,
        "sh",
        "-c",
        "head -c 64000000 /dev/urandom > /workspace/big.bin",
    ]));
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(get(&paddock, &files("/big.bin")).await);
    }
    for _ in 0..2 {
        held.push(get(&paddock, &format!("/api/sessions/{id}/archive")).await);
    }
    assert!(held.iter().all(|r| r.status() == reqwest::StatusCode::OK));
    let seventh = get(&paddock, &files("/proof.txt")).await;
    assert_eq!(seventh.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(seventh.text().await.unwrap().contains("files already"));
    paddock.prompt(&id, "read it").await;
    let last_seq = paddock.wait_idle(&id, 9, || server.log()).await;
    let events = paddock.transcript(&id, last_seq).await;
    let read = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::ToolResult {
            output, is_error, ..
        } => Some((output.clone(), *is_error)),
        _ => None,
    });
    let (output, is_error) = read.expect("the read's result");
    assert!(!is_error && output.contains("over-tls"), "{output}");
    drop(held);
    run(daemon
        .docker()
        .args(["exec", &name, "rm", "/workspace/big.bin"]));

    // A sandbox a server left running works for the next one, which puts
    // its own agent in place when the one there does not answer.
    drop(server);
    let junk = dir.join("junk-agent");
    std::fs::write(&junk, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&junk, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let agent_there = format!("{name}:/opt/paddock/sandbox-agent");
    run(daemon
        .docker()
        .args(["cp", junk.to_str().unwrap(), &agent_there]));
    let server = start_with(&home, "127.0.0.1:0", &env);
    let paddock = Rest::new(&server.url, None);
    let got = get(&paddock, &files("/proof.txt")).await;
    assert_eq!(got.status(), reqwest::StatusCode::OK, "{}", server.log());
    assert_eq!(got.text().await.unwrap(), "over-tls\n");
    assert!(
        server.log().contains("putting this server's in place"),
        "{}",
        server.log()
    );
    // A stopped sandbox's files wait for it to start again (503, with why);
    // looking does not start it.
    run(daemon.docker().args(["stop", "-t", "1", &name]));
    let stopped = get(&paddock, &files("")).await;
    assert_eq!(stopped.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(stopped.text().await.unwrap().contains("stopped"));
    let state = run(daemon
        .docker()
        .args(["inspect", "-f", "{{.State.Running}}", &name]));
    assert_eq!(state.trim(), "false");

    // Deleting the session removes its volume from that host.
    let deleted = paddock
        .request(reqwest::Method::DELETE, &format!("/api/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let volumes = run(daemon.docker().args(["volume", "ls", "-q"]));
    assert!(!volumes.contains(&id), "{volumes}");
    drop(server);
    drop(daemon);
}
