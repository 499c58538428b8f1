//! A real git server for tests and benchmarks: git's own smart-HTTP CGI,
//! `git http-backend`, behind a small HTTP server on a loopback port that
//! asks for HTTP basic auth, as a forge does. Clones, fetches and pushes go
//! through real git on both ends; every `Authorization` header it gets is
//! kept, so a test can tell which requests carried the token.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

const BACKEND: &str = "/usr/lib/git-core/git-http-backend";

pub struct GitServer {
    /// `http://127.0.0.1:<port>`; a repository `r.git` is at `{url}/r.git`.
    pub url: String,
    pub root: tempfile::TempDir,
    /// The `Authorization` headers seen, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// How long it waits before answering each request (a slow forge).
    pub delay: Arc<Mutex<std::time::Duration>>,
    /// Bytes of each answer sent every 100 ms, if set (a forge that
    /// trickles).
    pub trickle: Arc<Mutex<Option<usize>>>,
    /// Speaks only git's first protocol (v0), as some forges do: the
    /// client's wish for v2 is not passed on.
    pub only_v0: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs git with no configuration of the machine's, as `who`.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Incompressible bytes (xorshift from `seed`), so a pack is as large as
/// its files.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl GitServer {
    /// Serves the repositories under a new folder; only requests with basic
    /// auth whose password is `token` are answered (401 otherwise), unless
    /// `token` is `None`.
    pub async fn start(token: Option<&str>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let delay = Arc::new(Mutex::new(std::time::Duration::ZERO));
        let trickle = Arc::new(Mutex::new(None));
        let only_v0 = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = (
            root.path().to_path_buf(),
            token.map(str::to_owned),
            seen.clone(),
            delay.clone(),
            trickle.clone(),
            only_v0.clone(),
        );
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (root, token, seen, delay, trickle, only_v0) = state.clone();
                async move {
                    let wait = *delay.lock().unwrap();
                    tokio::time::sleep(wait).await;
                    let mut headers = headers;
                    if only_v0.load(Ordering::Relaxed) {
                        headers.remove("git-protocol");
                    }
                    let answer =
                        handle(&root, token.as_deref(), &seen, method, uri, headers, body).await;
                    let every = *trickle.lock().unwrap();
                    match every {
                        Some(bytes) => trickled(answer, bytes).await,
                        None => answer,
                    }
                }
            },
        );
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            root,
            seen,
            delay,
            trickle,
            only_v0,
            stop: Some(stop),
        }
    }

    /// A new bare repository `name` whose `main` holds `files`.
    pub fn repo(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let work = tempfile::tempdir().unwrap();
        git(work.path(), &["init", "-q", "-b", "main"]);
        for (path, data) in files {
            let p = work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        git(work.path(), &["add", "-A"]);
        git(work.path(), &["commit", "-q", "-m", "The start"]);
        let bare = self.root.path().join(name);
        git(
            self.root.path(),
            &["clone", "-q", "--bare", work.path().to_str().unwrap(), name],
        );
        bare
    }
}

/// `answer` with its body sent `bytes` at a time, every 100 ms.
async fn trickled(answer: Response, bytes: usize) -> Response {
    let (parts, body) = answer.into_parts();
    let whole = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let chunks: Vec<Bytes> = whole.chunks(bytes).map(Bytes::copy_from_slice).collect();
    let stream = futures_util::stream::iter(chunks).then(|chunk| async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(chunk)
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

async fn handle(
    root: &Path,
    token: Option<&str>,
    seen: &Mutex<Vec<String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.lock().unwrap().push(auth.clone());
    let user = auth
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
        });
    let user = match (token, user) {
        (None, _) => "anonymous".to_owned(),
        (Some(t), Some((u, p))) if p == t => u,
        _ => {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("www-authenticate", "Basic realm=\"git\"")
                .body(Body::from("authentication required"))
                .unwrap()
        }
    };
    let mut cgi = tokio::process::Command::new(BACKEND);
    cgi.env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("PATH", "/usr/bin:/bin")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("REMOTE_USER", &user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("git-protocol", "GIT_PROTOCOL"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
    ] {
        if let Some(v) = headers.get(header).and_then(|v| v.to_str().ok()) {
            cgi.env(var, v);
        }
    }
    let mut child = cgi.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    // A CGI answer: headers, a blank line, the body.
    let text = out.stdout;
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| text.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::empty())
            .unwrap();
    };
    let mut response = Response::builder();
    let mut status = StatusCode::OK;
    for line in String::from_utf8_lossy(&text[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("200");
            status = StatusCode::from_bytes(code.as_bytes()).unwrap_or(StatusCode::OK);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response
        .status(status)
        .body(Body::from(text[end + sep..].to_vec()))
        .unwrap()
}
