//! A real PostgreSQL for the tests: one throw-away cluster per test binary
//! (`initdb` and `postgres` in a temporary folder, reached through a Unix
//! socket there, so no TCP port can be taken from under it), started on
//! first use, and a fresh database for each test.
//!
//! The server runs as the `postgres` user when the tests run as root
//! (`initdb` refuses root), and dies with the test process: `setpriv
//! --pdeathsig` ties it to the thread that started it, which waits on it
//! until the process ends. A folder left by an earlier run that was killed
//! is removed on the next start.

use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A cluster: its folder holds its data, its socket and its log.
pub struct Cluster {
    pub dir: PathBuf,
}

impl Cluster {
    /// The URL of database `name`, through the socket.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost/{name}?host={}&port={PORT}",
            self.dir.display()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// A cluster of the calling test's own (not running yet), to stop and
    /// start as it likes; the shared one is [`database`]'s.
    pub fn own() -> Cluster {
        static OWN: AtomicUsize = AtomicUsize::new(0);
        let n = OWN.fetch_add(1, Ordering::Relaxed);
        init(&format!("{}-{n}", std::process::id()))
    }

    /// Starts the server; it runs until [`Server::stop`] or the end of
    /// the test process.
    pub fn serve(&self) -> Server {
        serve(&self.dir)
    }

    /// A new, empty database once the server accepts connections.
    pub async fn database(&self) -> String {
        let name = format!("t{}", uuid::Uuid::now_v7().simple());
        // The server takes a moment to accept connections after it starts.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut conn = loop {
            match sqlx::postgres::PgConnection::connect(&self.url("postgres")).await {
                Ok(conn) => break conn,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("postgres does not answer: {e}\n{}", self.log()),
            }
        };
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        self.url(&name)
    }
}

/// A running `postgres`.
pub struct Server {
    pid: i32,
    exited: std::sync::mpsc::Receiver<()>,
}

impl Server {
    /// Shuts it down (fast: sessions are disconnected, open transactions
    /// rolled back) and waits until it has.
    pub fn stop(self) {
        let pid = rustix::process::Pid::from_raw(self.pid).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        self.exited
            .recv_timeout(Duration::from_secs(60))
            .expect("postgres did not stop");
    }
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
const FOLDER_PREFIX: &str = "paddock-test-pg-";
/// Names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;

/// The URL of a new, empty database on this binary's shared cluster.
pub async fn database() -> String {
    let cluster = tokio::task::spawn_blocking(|| {
        CLUSTER.get_or_init(|| {
            let cluster = init(&std::process::id().to_string());
            // Runs until the process ends.
            std::mem::forget(cluster.serve());
            cluster
        })
    })
    .await
    .unwrap();
    cluster.database().await
}

/// The folder holding the PostgreSQL programs: on `PATH`, or Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest first).
fn bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
    let debian = || {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|bin| bin.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    };
    on_path
        .or_else(debian)
        .expect("PostgreSQL is not installed: scripts/setup installs it")
}

/// `program` from `bin` as the user the cluster runs as, with `pdeathsig`.
fn command(bin: &Path, program: &str, pdeathsig: bool) -> Command {
    let mut cmd = Command::new("setpriv");
    if rustix::process::geteuid().is_root() {
        cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
    }
    if pdeathsig {
        // SIGQUIT: PostgreSQL's immediate shutdown, which takes its
        // backends with it.
        cmd.arg("--pdeathsig=QUIT");
    }
    cmd.arg("--").arg(bin.join(program));
    cmd
}

/// A new cluster in a temporary folder named after `name`.
fn init(name: &str) -> Cluster {
    remove_stale_folders();
    let dir = std::env::temp_dir().join(format!("{FOLDER_PREFIX}{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if rustix::process::geteuid().is_root() {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "chown of {} failed", dir.display());
    }
    let bin = bin_dir();
    let data = dir.join("data");
    let out = command(&bin, "initdb", false)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            // The same (byte) order on every machine.
            "--no-locale",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Cluster { dir }
}

/// Starts `postgres` on the cluster in `dir`.
fn serve(dir: &Path) -> Server {
    let data = dir.join("data");
    let mut server = command(&bin_dir(), "postgres", true);
    server
        .arg("-D")
        .arg(&data)
        .args(["-p", &PORT.to_string(), "-k"])
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=",
            "-c",
            "max_connections=300",
            // Throw-away data: durability only costs time here.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("postgres.log"))
                .unwrap(),
        );
    let (spawned, started) = std::sync::mpsc::channel();
    let (exit, exited) = std::sync::mpsc::channel();
    // The thread that starts the server keeps waiting on it: its parent
    // death signal fires when this thread ends, with the process.
    std::thread::spawn(move || match server.spawn() {
        Ok(mut child) => {
            spawned.send(Ok(child.id())).unwrap();
            let _ = child.wait();
            let _ = exit.send(());
        }
        Err(e) => spawned.send(Err(e)).unwrap(),
    });
    let pid = started.recv().unwrap().expect("postgres did not start");
    Server {
        pid: i32::try_from(pid).unwrap(),
        exited,
    }
}

/// Folders of clusters whose test process is gone.
fn remove_stale_folders() {
    for entry in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(FOLDER_PREFIX))
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
