//! A second `dockerd` on this machine, reached over TCP with mutual TLS as
//! a team's remote Docker host is: certificates made here by `openssl` (a
//! CA, the daemon's, a client's), its own state and image store (the agent
//! image, loaded from this machine's daemon), a loopback port. The TLS
//! test and the sandbox bench use it.

use server::config::DEFAULT_IMAGE;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `openssl req`'s arguments for a new P-256 key, unencrypted.
const NEW_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Runs `cmd`, which must succeed: what it printed.
pub fn run(cmd: &mut Command) -> String {
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
pub fn issue(dir: &Path, ca_dir: &Path, name: &str, subject: &str, extensions: &str) {
    let key = format!("{name}-key.pem");
    let csr = format!("{name}.csr");
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl(
        dir,
        &[
            &["req"],
            NEW_KEY,
            &["-keyout", &key, "-out", &csr, "-subj", subject],
        ]
        .concat(),
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

pub fn make_ca(dir: &Path, subject: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let ca = [
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        subject,
    ];
    openssl(dir, &[&["req", "-x509"], NEW_KEY, &ca].concat());
}

/// A folder `folder` as `DOCKER_CERT_PATH` wants it: `ca`'s ca.pem, and
/// the certificate and key issued as `name` in `client`.
pub fn cert_path(folder: PathBuf, ca: &Path, client: &Path, name: &str) -> PathBuf {
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

/// The second daemon: stopped (its containers first) when dropped.
pub struct TlsDocker {
    child: std::process::Child,
    /// `tcp://127.0.0.1:<port>`.
    pub host: String,
    /// Its CA's folder (`ca.pem`, `ca-key.pem`).
    pub ca: PathBuf,
    /// Where the daemon's and the client's certificates were issued.
    pub issued: PathBuf,
    /// A `DOCKER_CERT_PATH` with the client's certificate.
    pub client_certs: PathBuf,
}

impl TlsDocker {
    /// Makes the certificates in `dir`, starts the daemon there and loads
    /// the agent image into it.
    pub async fn start(dir: &Path) -> Self {
        let (ca, issued) = (dir.join("ca"), dir.join("certs"));
        make_ca(&ca, "/CN=paddock test CA");
        std::fs::create_dir_all(&issued).unwrap();
        issue(
            &issued,
            &ca,
            "daemon",
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        issue(
            &issued,
            &ca,
            "client",
            "/CN=paddock",
            "extendedKeyUsage=clientAuth\n",
        );
        let client_certs = cert_path(dir.join("client-docker"), &ca, &issued, "client");
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
        let tls = |name: &str| issued.join(name).to_str().unwrap().to_owned();
        let child = Command::new("setpriv")
            // Gone with this thread even if the process dies.
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
        let daemon = Self {
            child,
            host,
            ca,
            issued,
            client_certs,
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
        daemon
    }

    /// The Docker CLI, talking to this daemon over TLS.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        for (name, value) in self.env(&self.client_certs) {
            cmd.env(name, value);
        }
        cmd
    }

    /// How a Docker client (the CLI, Paddock) is told to use this daemon
    /// with the certificates in `certs`.
    pub fn env(&self, certs: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("DOCKER_HOST", self.host.clone()),
            ("DOCKER_TLS_VERIFY", "1".to_owned()),
            ("DOCKER_CERT_PATH", certs.to_str().unwrap().to_owned()),
        ]
    }
}

impl Drop for TlsDocker {
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
