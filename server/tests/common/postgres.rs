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
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running cluster: its folder holds its socket and its log.
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
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
const FOLDER_PREFIX: &str = "paddock-test-pg-";
/// Names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;

/// The URL of a new, empty database on this binary's cluster.
pub async fn database() -> String {
    let cluster = tokio::task::spawn_blocking(|| CLUSTER.get_or_init(start))
        .await
        .unwrap();
    let name = format!("t{}", uuid::Uuid::now_v7().simple());
    // The server takes a moment to accept connections after it starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = loop {
        match sqlx::postgres::PgConnection::connect(&cluster.url("postgres")).await {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("postgres does not answer: {e}\n{}", cluster.log()),
        }
    };
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    conn.close().await.unwrap();
    cluster.url(&name)
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

fn start() -> Cluster {
    remove_stale_folders();
    let dir = std::env::temp_dir().join(format!("{FOLDER_PREFIX}{}", std::process::id()));
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
    let mut server = command(&bin, "postgres", true);
    server
        .arg("-D")
        .arg(&data)
        .args(["-p", &PORT.to_string(), "-k"])
        .arg(&dir)
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
        .stderr(std::fs::File::create(dir.join("postgres.log")).unwrap());
    let (spawned, started) = std::sync::mpsc::channel();
    // The thread that starts the server keeps waiting on it: its parent
    // death signal fires when this thread ends, with the process.
    std::thread::spawn(move || match server.spawn() {
        Ok(mut child) => {
            spawned.send(Ok(())).unwrap();
            let _ = child.wait();
        }
        Err(e) => spawned.send(Err(e)).unwrap(),
    });
    started.recv().unwrap().expect("postgres did not start");
    Cluster { dir }
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
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
