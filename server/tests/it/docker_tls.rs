//! Sandboxes on a Docker host reached over TCP with mutual TLS, as a team
//! runs one for a Paddock deployed without a daemon of its own: a second
//! `dockerd` on this machine, listening on a loopback port with
//! certificates made here by `openssl` (a CA, the daemon's, a client's,
//! and a client's from another CA, which also stands for a daemon's CA
//! that is not the one in ca.pem). Paddock runs as its own process with
//! `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`, as the Docker
//! CLI takes them.

use crate::common::{self, paddock_command, rest::Rest, start_with};
use app::domain::EventKind;
use serde_json::json;
use server::config::DEFAULT_IMAGE;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A P-256 key and a certificate for `subject`, signed by the CA in
/// `ca_dir` with `extensions`.
fn issue(dir: &Path, ca_dir: &Path, name: &str, subject: &str, extensions: &str) {
    let key = format!("{name}-key.pem");
    let csr = format!("{name}.csr");
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    );
    let ca_cert = ca_dir.join("ca.pem");
    let ca_key = ca_dir.join("ca-key.pem");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            ca_cert.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}-cert.pem"),
            "-extfile",
            &ext,
        ],
    );
}

fn make_ca(dir: &Path, subject: &str) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            subject,
        ],
    );
}

/// A folder `folder` as `DOCKER_CERT_PATH` wants it: `ca`'s ca.pem, and
/// the certificate and key issued as `name` in `client`.
fn cert_path(folder: PathBuf, ca: &Path, client: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(ca.join("ca.pem"), folder.join("ca.pem")).unwrap();
    std::fs::copy(
        client.join(format!("{name}-cert.pem")),
        folder.join("cert.pem"),
    )
    .unwrap();
    std::fs::copy(
        client.join(format!("{name}-key.pem")),
        folder.join("key.pem"),
    )
    .unwrap();
    folder
}

/// Runs Paddock (Docker sandboxes) over `home` with `env`, until it exits
/// or listens; whether it failed, and all it said.
fn refused_start(home: &Path, env: &[(&str, &str)]) -> (bool, String) {
    // Nothing of this process's Docker environment, only `env`'s.
    let out = paddock_command(home, &[])
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

/// The second daemon: stopped (its containers first) when dropped.
struct Daemon {
    child: std::process::Child,
    host: String,
    certs: PathBuf,
}

impl Daemon {
    /// The Docker CLI, talking to this daemon over TLS.
    fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", &self.host)
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &self.certs);
        cmd
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(out) = self.docker().args(["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.docker().args(["rm", "-f", id]).output();
            }
        }
        // A graceful stop, so that it unmounts what it mounted.
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sandboxes_run_on_a_docker_host_reached_with_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (ca, rogue_ca, certs) = (dir.join("ca"), dir.join("rogue-ca"), dir.join("certs"));
    make_ca(&ca, "/CN=paddock test CA");
    make_ca(&rogue_ca, "/CN=someone else's CA");
    std::fs::create_dir_all(&certs).unwrap();
    issue(
        &certs,
        &ca,
        "daemon",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    issue(
        &certs,
        &ca,
        "client",
        "/CN=paddock",
        "extendedKeyUsage=clientAuth\n",
    );
    issue(
        &certs,
        &rogue_ca,
        "rogue",
        "/CN=paddock",
        "extendedKeyUsage=clientAuth\n",
    );
    let client_certs = cert_path(dir.join("client-docker"), &ca, &certs, "client");
    let rogue_certs = cert_path(dir.join("rogue-docker"), &ca, &certs, "rogue");
    // The right client certificate, but another CA's ca.pem.
    let wrong_ca = cert_path(dir.join("wrong-ca-docker"), &rogue_ca, &certs, "client");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("tcp://127.0.0.1:{port}");
    let state = dir.join("dockerd");
    std::fs::create_dir_all(&state).unwrap();
    // None of this machine's daemon configuration, and containerd
    // namespaces of its own should it share a system containerd.
    std::fs::write(state.join("daemon.json"), "{}").unwrap();
    let tls = |name: &str| certs.join(name).to_str().unwrap().to_owned();
    let child = Command::new("setpriv")
        // Gone with this test's thread even if the test process dies.
        .args(["--pdeathsig=TERM", "--", "dockerd", "--tlsverify"])
        .args(["--tlscacert", &ca.join("ca.pem").to_string_lossy()])
        .args([
            "--tlscert",
            &tls("daemon-cert.pem"),
            "--tlskey",
            &tls("daemon-key.pem"),
        ])
        .args(["-H", &host])
        .arg("--data-root")
        .arg(state.join("root"))
        .arg("--exec-root")
        .arg(state.join("exec"))
        .arg("--pidfile")
        .arg(state.join("dockerd.pid"))
        .arg("--config-file")
        .arg(state.join("daemon.json"))
        .args(["--containerd-namespace", "paddock-tls-test"])
        .args(["--containerd-plugins-namespace", "paddock-tls-test-plugins"])
        .args([
            "--iptables=false",
            "--bridge=none",
            "--storage-driver=overlay2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(state.join("dockerd.log")).unwrap())
        .spawn()
        .unwrap();
    let daemon = Daemon {
        child,
        host: host.clone(),
        certs: client_certs.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !daemon
        .docker()
        .arg("info")
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the second dockerd did not answer: {}",
            std::fs::read_to_string(state.join("dockerd.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its own image store: the agent image, from this machine's daemon.
    let mut save = Command::new("docker")
        .args(["save", DEFAULT_IMAGE])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    run(daemon
        .docker()
        .arg("load")
        .stdin(save.stdout.take().unwrap()));
    assert!(
        save.wait().unwrap().success(),
        "docker save {DEFAULT_IMAGE}"
    );

    let docker_env = |certs: &Path| {
        vec![
            ("DOCKER_HOST", host.clone()),
            ("DOCKER_TLS_VERIFY", "1".to_owned()),
            ("DOCKER_CERT_PATH", certs.to_str().unwrap().to_owned()),
        ]
    };
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

    let (_model, model_url) = common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo over-tls > proof.txt; cat proof.txt"}}}]},
            {"reply": "done"}
        ]),
        None,
    )
    .await;
    let env = docker_env(&client_certs);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("ANTHROPIC_BASE_URL", &model_url));
    env.push(("ANTHROPIC_API_KEY", "sk-test"));
    let server = start_with(&home, "127.0.0.1:0", &env);
    let paddock = Rest::new(&server.url, None);
    let id = paddock
        .create(json!({"name": "over tls", "permission_mode": "auto"}))
        .await;
    paddock.prompt(&id, "prove it").await;
    let last_seq = paddock.wait_idle(&id, 2, || server.log()).await;
    let events = paddock.transcript(&id, last_seq).await;
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::ToolResult { output, is_error: false, .. } if output == "over-tls\n")),
        "{events:?}"
    );
    // The sandbox is on the TLS daemon, not on this machine's own.
    let name = format!("paddock-{id}");
    let there = run(daemon
        .docker()
        .args(["ps", "-aq", "--filter", &format!("name={name}")]));
    assert!(!there.trim().is_empty(), "no {name} on the TLS daemon");
    let here = run(Command::new("docker").args(["ps", "-aq", "--filter", &format!("name={name}")]));
    assert!(here.trim().is_empty(), "{name} is on the local daemon");
    // The workspace is this machine's folder, which that daemon mounted.
    assert_eq!(
        std::fs::read_to_string(home.join("workspaces").join(&id).join("proof.txt")).unwrap(),
        "over-tls\n"
    );
    drop(server);
    drop(daemon);
}
