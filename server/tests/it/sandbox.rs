//! Sandboxes against a real Docker daemon (started by scripts/setup) and the
//! project's agent image, and the local backend on this host. No mocks.

use crate::common::DockerBox;
use futures_util::StreamExt;
use server::config::DEFAULT_IMAGE;
use server::sandbox::{DockerSandbox, ExecRequest, FileError, Limits, Sandbox};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs `command` in a session's container past its agent (`docker exec`,
/// as `user`, else the image's).
fn in_container(d: &DockerBox, user: Option<&str>, command: &[&str]) -> std::process::Output {
    let name = DockerSandbox::container_name(d.session);
    let mut exec = std::process::Command::new("docker");
    exec.arg("exec");
    if let Some(user) = user {
        exec.args(["-u", user]);
    }
    exec.arg(&name).args(command).output().unwrap()
}

/// A started container for a fresh session.
async fn docker(limits: Limits) -> DockerBox {
    DockerBox::start(limits).await
}

#[tokio::test]
async fn docker_sandbox_is_closed() {
    let d = docker(Limits::default()).await;
    let id = d.run("id -u", 10).await;
    assert_eq!(id.output.trim(), "10001");
    assert!(id.success());

    let net = d
        .run(
            "timeout 5 bash -c 'echo > /dev/tcp/1.1.1.1/53' && echo CONNECTED",
            10,
        )
        .await;
    assert!(!net.success(), "{net:?}");
    assert!(!net.output.contains("CONNECTED"));

    let etc = d.run("echo x > /etc/pwned", 10).await;
    assert!(!etc.success(), "{etc:?}");
    // gVisor answers the write with EACCES before it gets to EROFS: the
    // mount table says it for both runtimes.
    let root = d
        .run("awk '$2 == \"/\" { print $4 }' /proc/mounts", 10)
        .await;
    assert!(root.output.starts_with("ro,"), "{root:?}");

    // The server's environment (which may hold the API key) never gets in.
    let env = d.run("env", 10).await;
    assert!(!env.output.contains("ANTHROPIC"), "{}", env.output);
    assert!(env.output.contains("PATH="));

    let caps = d.run("grep CapEff /proc/self/status", 10).await;
    assert!(caps.output.contains("0000000000000000"), "{}", caps.output);

    // What the agent writes to the container's own output is kept nowhere
    // (Docker's default log grows without bound, past the disk limit).
    let logged = d.run("echo to-the-log > /proc/1/fd/1; echo ok", 10).await;
    assert!(logged.output.contains("ok"), "{logged:?}");
    let driver = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.LogConfig.Type}}",
            &DockerSandbox::container_name(d.session),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&driver.stdout).trim(), "none");
}

#[tokio::test]
async fn docker_sandboxes_run_under_the_configured_runtime() {
    let d = docker(Limits::default()).await;
    // gVisor's kernel introduces itself in its log; the host's never does.
    let kernel = d.run("dmesg 2>&1 | head -n 1", 10).await;
    let gvisor = kernel.output.contains("gVisor");
    let wanted = crate::common::docker_runtime();
    assert_eq!(gvisor, wanted.as_deref() == Some("runsc"), "{kernel:?}");
    let expected = wanted.unwrap_or_else(|| "runc".into());
    assert_eq!(d.sandbox.info().runtime, Some(expected));

    // A runtime the engine does not have is refused at start, by name.
    let refused = DockerSandbox::connect(
        DEFAULT_IMAGE.into(),
        uuid::Uuid::now_v7().to_string(),
        d.root.clone(),
        Some("no-such-runtime".into()),
        None,
        None,
    )
    .await
    .err()
    .expect("an unknown runtime is refused");
    let message = refused.to_string();
    assert!(
        message.contains("no-such-runtime") && message.contains("runc"),
        "{message}"
    );

    // Ready with its image, and not without it (every session would fail).
    d.sandbox.check().await.unwrap();
    let without_image = DockerSandbox::connect(
        "paddock-no-such-image:1".into(),
        uuid::Uuid::now_v7().to_string(),
        d.root.clone(),
        d.sandbox.info().runtime,
        None,
        None,
    )
    .await
    .unwrap();
    let unready = without_image.check().await.unwrap_err().to_string();
    assert!(unready.contains("paddock-no-such-image:1"), "{unready}");
}

#[tokio::test]
async fn docker_fork_bomb_hits_the_pids_limit() {
    let d = docker(Limits {
        pids: 64,
        ..Limits::default()
    })
    .await;
    let bomb = d.run(":(){ :|:& };:; sleep 3", 5).await;
    assert!(
        bomb.output.contains("Resource temporarily unavailable") || bomb.output.contains("fork"),
        "{}",
        bomb.output
    );
    // The tree is gone and the sandbox still works.
    let ps = d.run("ps -e --no-headers | wc -l", 10).await;
    assert!(ps.success(), "{ps:?}");
    assert!(
        ps.output.trim().parse::<u32>().unwrap() < 10,
        "{}",
        ps.output
    );
}

#[tokio::test]
async fn docker_memory_bomb_is_oom_killed() {
    let d = docker(Limits {
        memory_mb: 128,
        ..Limits::default()
    })
    .await;
    let bomb = d
        .run(
            "python3 -c 'b=[]\nwhile True: b.append(bytearray(16*1024*1024))'",
            60,
        )
        .await;
    assert!(bomb.oom_killed, "{bomb:?}");
    assert_eq!(bomb.exit_code, None);
    assert!(!bomb.timed_out);
    assert!(d.run("true", 10).await.success());
}

#[tokio::test]
async fn docker_workspace_changes_are_watched_through_the_agent() {
    let d = docker(Limits::default()).await;
    // A watch waits for the agent, which the first command starts.
    assert!(d.run("true", 10).await.success());
    let mut changes = d.sandbox.watch(d.session).await.unwrap();
    let made = d
        .run(
            "mkdir -p out && echo x > out/a.txt && echo y > b.txt && rm b.txt",
            10,
        )
        .await;
    assert!(made.success(), "{made:?}");
    let mut seen = std::collections::BTreeSet::new();
    while !["b.txt", "out"].iter().all(|p| seen.contains(*p)) {
        let batch = tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .unwrap_or_else(|_| panic!("no change within 10 s; seen {seen:?}"))
            .expect("the watch goes on")
            .unwrap();
        assert!(!batch.more && !batch.partial, "{batch:?}");
        seen.extend(batch.paths);
    }
    // A file written by a process the agent did not start (a `docker
    // exec`) is seen too: the kernel reports it.
    let wrote = in_container(
        &d,
        Some("10001"),
        &["sh", "-c", "echo z > /workspace/c.txt"],
    );
    assert!(wrote.status.success());
    let batch = tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("a change within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(batch.paths, ["c.txt"]);
}

/// The transcript's stream carries the workspace's changes (`files`
/// frames) while its command still runs.
#[tokio::test]
async fn docker_workspace_changes_reach_the_transcripts_viewers_live() {
    let (_model, model_url) = crate::common::scripted(
        &serde_json::json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "sleep 1; echo live > live.txt; sleep 4"}}}]},
            {"reply": "done"}
        ]),
        None,
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let server = crate::common::start_with(
        home.path(),
        "127.0.0.1:0",
        &[
            ("ANTHROPIC_BASE_URL", &model_url),
            ("ANTHROPIC_API_KEY", "sk-test"),
            ("PADDOCK_SANDBOX", "docker"),
        ],
    );
    let paddock = crate::common::rest::Rest::new(&server.url, None);
    let id = paddock
        .create(serde_json::json!({"name": "live", "permission_mode": "auto"}))
        .await;
    let mut frames = paddock.stream(&id).await.bytes_stream();
    paddock.prompt(&id, "go").await;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(chunk) = frames.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("event: files\ndata: {\"paths\":[\"live.txt\"]") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "{seen}\n{}", server.log());
    // While the command still ran (it sleeps 4 s after): no result yet.
    assert!(!seen.contains("tool_result"), "{seen}");
}

#[tokio::test]
async fn docker_commands_run_through_the_agent_which_only_the_server_drives() {
    let d = docker(Limits::default()).await;
    assert!(
        d.sandbox.info().agent,
        "scripts/setup installs the sandbox agent"
    );
    let ps = d
        .run(
            "pid=$(pgrep -f '^/opt/paddock/sandbox-agent'); ps -o user=,args= -p $pid",
            10,
        )
        .await;
    let words: Vec<&str> = ps.output.split_whitespace().collect();
    assert_eq!(
        words[..3],
        ["agent", "/opt/paddock/sandbox-agent", "--connect"],
        "runs as the sandbox user: {words:?}"
    );
    // A socket of its own (replicas sharing the workspace root may start
    // the session's agent at once, each for its own).
    let socket = words[3];
    assert!(
        socket.starts_with("/run/paddock-agent/agent-") && socket.ends_with(".sock"),
        "{socket}"
    );
    // Its secret is in no place the sandbox's processes can read: not its
    // arguments (above) nor its environment (it came on stdin), and its
    // memory is closed to them (not dumpable); so is its environment under
    // runc (gVisor's /proc shows a process's environment to its user all
    // the same, which holds nothing of the server's).
    let hidden = d
        .run(
            "pid=$(pgrep -f '^/opt/paddock/sandbox-agent'); \
             cat /proc/$pid/environ >/dev/null 2>&1 && echo ENVIRON; \
             head -c1 /proc/$pid/mem >/dev/null 2>&1 && echo MEMORY; echo hidden",
            10,
        )
        .await;
    let expected = match crate::common::docker_runtime().as_deref() {
        Some("runsc") => "ENVIRON\nhidden\n",
        _ => "hidden\n",
    };
    assert_eq!(hidden.output, expected);
    // Once the agent is in, the server's socket is gone; a process of the
    // sandbox that dials it without the secret finds no way in.
    let intruder = d
        .run(
            &format!(
                r#"python3 - <<'PY'
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("{socket}")
    s.sendall(b"not the secret\n" + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    s.settimeout(5)
    print("answered" if s.recv(100) else "dropped")
except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError):
    print("dropped")
PY"#
            ),
            15,
        )
        .await;
    assert_eq!(intruder.output, "dropped\n", "{intruder:?}");
    assert_eq!(
        d.run("echo still served", 10).await.output,
        "still served\n"
    );
    // The sandbox's own processes can kill it (they are the same user):
    // the next command starts it again.
    d.run(
        "setsid -f sh -c 'sleep 0.3; pkill -KILL -f ^/opt/paddock/sandbox-agent' >/dev/null 2>&1",
        10,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(d.run("echo again", 10).await.output, "again\n");
    let agents = d.run("pgrep -c -f '^/opt/paddock/sandbox-agent'", 10).await;
    assert_eq!(agents.output, "1\n");

    // Killed mid-command: the command fails, its group is ended all the
    // same, and the next command has an agent again.
    let mut request = server::sandbox::ExecRequest::new(
        "setsid -f sh -c 'sleep 0.5; pkill -KILL -f ^/opt/paddock/sandbox-agent' >/dev/null 2>&1; \
         sleep 60; echo never",
    );
    request.timeout = Duration::from_secs(30);
    let cut = d
        .sandbox
        .exec(
            d.session,
            &request,
            &CancellationToken::new(),
            &mut |_, _| {},
        )
        .await;
    assert!(cut.is_err(), "{cut:?}");
    let left = d.run("pgrep -c -f '^sleep 60$' || true", 10).await;
    assert_eq!(left.output, "0\n", "the command's group is gone");
    // Stopped (it cannot be killed by the server, which waits on it): its
    // silence ends the connection, the command fails instead of hanging,
    // and the next one has a new agent. Stopped from outside, past the
    // agent: a stop sent through the agent by a detached child raced the
    // end of its command, whose process group the agent kills (the child
    // could go with it before `setsid`).
    let stopped = in_container(
        &d,
        None,
        &["pkill", "-STOP", "-f", "^/opt/paddock/sandbox-agent"],
    );
    assert!(stopped.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let states = in_container(
            &d,
            None,
            &["ps", "-o", "stat=,args=", "-C", "sandbox-agent"],
        );
        let states = String::from_utf8_lossy(&states.stdout).into_owned();
        if states.lines().any(|l| l.trim_start().starts_with('T')) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never stopped: {states}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let began = std::time::Instant::now();
    let hung = d
        .sandbox
        .exec(
            d.session,
            &ExecRequest::new("echo lost"),
            &CancellationToken::new(),
            &mut |_, _| {},
        )
        .await;
    assert!(
        hung.is_err() && began.elapsed() < Duration::from_secs(45),
        "{hung:?}"
    );
    assert_eq!(d.run("echo back", 10).await.output, "back\n");
}

/// Whether a filesystem is mounted at `dir`, as the kernel lists them.
fn mounted_at(dir: &std::path::Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap()))
}

#[tokio::test]
async fn docker_disk_limit_fills_only_the_session_and_is_an_ordinary_error() {
    let d = docker(Limits {
        disk_mb: Some(32),
        ..Limits::default()
    })
    .await;
    assert_eq!(
        d.sandbox.info().no_disk_limits,
        None,
        "this host holds disk limits"
    );
    let image = d.root.join(format!("{}.disk", d.session));
    assert!(
        mounted_at(&d.workspace()),
        "the workspace is a filesystem of its own"
    );
    // Its blocks are the workspace's files, whatever their own modes say.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&image).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the image is its owner's only");
    let empty = d.sandbox.disk_use(d.session).await.unwrap();
    let limit = empty.limit_bytes.expect("a limit");
    assert!((24 << 20..=32 << 20).contains(&limit), "{empty:?}");
    assert!(!empty.is_full());
    let listed = d.run("ls -A", 10).await;
    assert_eq!(listed.output, "", "no lost+found in the workspace");

    let files = d.sandbox.workspace(d.session);
    files.write("keep.txt", b"kept").await.unwrap();

    // The agent fills it: an ordinary "No space left on device", as on any
    // full disk, and the host's disk took no more than the limit.
    let filled = d
        .run("dd if=/dev/zero of=big bs=1M count=200 status=none", 60)
        .await;
    assert!(!filled.success(), "{filled:?}");
    assert!(
        filled.output.contains("No space left on device"),
        "{filled:?}"
    );
    let full = d.sandbox.disk_use(d.session).await.unwrap();
    assert!(full.is_full(), "{full:?}");
    let allocated = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&image).unwrap().blocks() * 512
    };
    assert!(allocated <= 40 << 20, "the image holds {allocated} bytes");

    // The server's own writes into it are refused plainly, and a file it
    // would have replaced is kept whole.
    let refused = files.write("more.txt", &[b'x'; 1 << 20]).await;
    assert!(matches!(refused, Err(FileError::Full(_))), "{refused:?}");
    let refused = files.write("keep.txt", &[b'x'; 1 << 20]).await;
    assert!(matches!(refused, Err(FileError::Full(_))), "{refused:?}");
    assert_eq!(files.read("keep.txt").await.unwrap(), b"kept");

    // Another session and the sandbox itself go on.
    let other = docker(Limits::default()).await;
    let wrote = other
        .run(
            "dd if=/dev/zero of=f bs=1M count=64 status=none && echo done",
            60,
        )
        .await;
    assert_eq!(wrote.output, "done\n", "{wrote:?}");
    let freed = d
        .run("rm big && echo back > note && cat note && ls -A", 10)
        .await;
    assert_eq!(freed.output, "back\nkeep.txt\nnote\n", "{freed:?}");
    assert!(!d.sandbox.disk_use(d.session).await.unwrap().is_full());

    // After a host restart the image is mounted again, with its files.
    d.sandbox.stop(d.session).await.unwrap();
    let out = std::process::Command::new("umount")
        .arg(d.workspace())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!d.workspace().join("note").exists());
    // Read before the sandbox starts again (the Files view, Changes): the
    // filesystem's files, not the empty folder beneath it.
    assert_eq!(files.read("note").await.unwrap(), b"back\n");
    assert!(mounted_at(&d.workspace()));
    let out = std::process::Command::new("umount")
        .arg(d.workspace())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let folder = d.sandbox.host_folder(d.session).await.unwrap().unwrap();
    assert!(
        folder.root().join("note").exists(),
        "host-side git's folder"
    );
    let out = std::process::Command::new("umount")
        .arg(d.workspace())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    d.sandbox.start(d.session, Limits::default()).await.unwrap();
    assert!(mounted_at(&d.workspace()));
    assert_eq!(d.run("cat note", 10).await.output, "back\n");

    // Deleting the session removes the filesystem, its image and its folder.
    d.sandbox.destroy(d.session).await.unwrap();
    assert!(!mounted_at(&d.workspace()));
    assert!(!image.exists() && !d.workspace().exists());
}

#[tokio::test]
async fn docker_infinite_loop_is_killed_at_the_timeout_with_its_children() {
    let d = docker(Limits::default()).await;
    let looped = d.run("sleep 1000 & while :; do :; done", 2).await;
    assert!(looped.timed_out, "{looped:?}");
    assert_eq!(looped.exit_code, None);
    let ps = d.run("pgrep -c sleep || true", 10).await;
    assert_eq!(
        ps.output.trim(),
        "1",
        "only the container's own sleep remains: {}",
        ps.output
    );
}

#[tokio::test]
async fn docker_cancel_kills_the_command_promptly() {
    let d = docker(Limits::default()).await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let request = ExecRequest::new("echo started; sleep 600");
    let mut seen = Vec::new();
    let outcome = d
        .sandbox
        .exec(d.session, &request, &cancel, &mut |_, bytes| {
            seen.extend_from_slice(bytes)
        })
        .await
        .unwrap();
    assert!(outcome.cancelled, "{outcome:?}");
    assert_eq!(String::from_utf8_lossy(&seen), "started\n");
    // The agent ends the command as it sees the request dropped, which may
    // be a moment after the next command starts.
    let mut sleeps = d.run("pgrep -a -x sleep", 10).await;
    for _ in 0..20 {
        if sleeps.output.lines().count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        sleeps = d.run("pgrep -a -x sleep", 10).await;
    }
    assert_eq!(
        sleeps.output.lines().count(),
        1,
        "only the container's own sleep: {}",
        sleeps.output
    );
}

#[tokio::test]
async fn docker_stop_lets_a_command_clean_up_then_kills_it() {
    let d = docker(Limits::default()).await;
    crate::common::stop_lets_commands_clean_up(&d.sandbox, d.session, &d.workspace()).await;
    // That was the agent's doing: it runs in the sandbox.
    let agents = d.run("pgrep -c -f /opt/paddock/sandbox-agen[t]", 10).await;
    assert_ne!(agents.output.trim(), "0", "{agents:?}");
}

#[tokio::test]
async fn docker_stop_without_the_agent_kills_at_once() {
    let d = DockerBox::start_without_agent(Limits::default()).await;
    assert!(!d.sandbox.info().agent);
    let (stopped, _) = crate::common::stopped_once_ready(
        &d.sandbox,
        d.session,
        "touch held.lock; trap 'rm -f held.lock' TERM; sleep 600 & echo ready; wait",
    )
    .await;
    assert!(stopped.cancelled, "{stopped:?}");
    assert!(
        d.workspace().join("held.lock").exists(),
        "killed, not asked"
    );
    crate::common::assert_none_left(&d.sandbox, d.session, "sleep 60[0]").await;
}

#[tokio::test]
async fn docker_cancel_before_the_command_is_known_still_kills_it() {
    // A Stop right after a tool starts: cancelled before the wrapper has
    // said which process group to kill (it was left running, seen in CI).
    let d = docker(Limits::default()).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let started = std::time::Instant::now();
    let outcome = d
        .sandbox
        .exec(
            d.session,
            &ExecRequest::new("sleep 600"),
            &cancel,
            &mut |_, _| {},
        )
        .await
        .unwrap();
    assert!(outcome.cancelled, "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let sleeps = d.run("pgrep -a -x sleep", 10).await;
    assert_eq!(sleeps.output.lines().count(), 1, "{}", sleeps.output);
}

#[tokio::test]
async fn docker_exec_streams_output_and_exit_codes() {
    let d = docker(Limits::default()).await;
    let mut chunks = Vec::new();
    let outcome = d
        .sandbox
        .exec(
            d.session,
            &ExecRequest::new("echo out; echo err >&2; exit 3"),
            &CancellationToken::new(),
            &mut |stream, bytes| chunks.push((stream, bytes.to_vec())),
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, Some(3));
    assert!(outcome.output.contains("out\n") && outcome.output.contains("err\n"));
    assert!(chunks
        .iter()
        .any(|(s, b)| *s == server::sandbox::OutputStream::Stderr && b == b"err\n"));
}

#[tokio::test]
async fn docker_workspace_is_shared_with_the_host_and_confined() {
    let d = docker(Limits::default()).await;
    let ws = d.sandbox.workspace(d.session);
    assert!(d
        .run("mkdir -p src && echo 'from the container' > src/a.txt", 10)
        .await
        .success());
    assert_eq!(
        std::fs::read_to_string(d.workspace().join("src/a.txt")).unwrap(),
        "from the container\n"
    );
    ws.write("src/b.txt", b"from the host").await.unwrap();
    let cat = d
        .run("cat /workspace/src/b.txt && echo more >> src/b.txt", 10)
        .await;
    assert_eq!(cat.output, "from the host");
    assert!(
        cat.success(),
        "the agent can change files Paddock wrote: {cat:?}"
    );

    // A symlink planted by the agent cannot lead the host out.
    assert!(d
        .run("ln -s /etc/passwd leak && ln -s / root", 10)
        .await
        .success());
    assert_eq!(
        ws.read("leak").await,
        Err(FileError::Outside("leak".into()))
    );
    assert!(matches!(
        ws.read("root/etc/passwd").await,
        Err(FileError::Outside(_))
    ));
    assert_eq!(
        ws.read("../../etc/passwd").await,
        Err(FileError::Outside("../../etc/passwd".into()))
    );
    assert_eq!(
        ws.read("/etc/passwd").await,
        Err(FileError::Outside("/etc/passwd".into()))
    );
}

#[tokio::test]
async fn docker_stop_start_keeps_files_and_destroy_removes_everything() {
    let d = docker(Limits::default()).await;
    assert!(d.run("echo kept > notes.txt", 10).await.success());
    d.sandbox.stop(d.session).await.unwrap();
    assert!(d.sandbox.list().await.unwrap().iter().all(|f| !f.running));
    d.sandbox.start(d.session, Limits::default()).await.unwrap();
    assert_eq!(d.run("cat notes.txt", 10).await.output, "kept\n");

    let root = d.workspace();
    d.sandbox.destroy(d.session).await.unwrap();
    assert!(d.sandbox.list().await.unwrap().is_empty());
    assert!(!root.exists());
    // Destroying twice is fine; running in a destroyed sandbox is a clear error.
    d.sandbox.destroy(d.session).await.unwrap();
    let err = d
        .sandbox
        .exec(
            d.session,
            &ExecRequest::new("true"),
            &CancellationToken::new(),
            &mut |_, _| {},
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// Whether the container `name` is paused, as Docker says (`true`/`false`).
fn paused(name: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Paused}}", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn a_start_waits_for_a_read_that_paused_the_sandbox_and_resumes_one_left_paused() {
    let d = docker(Limits::default()).await;
    let name = DockerSandbox::container_name(d.session);
    let paused = || paused(&name);
    // The server pauses it to read its workspace (host-side git); a start
    // meanwhile (a prompt, a terminal) waits for the read to end.
    assert!(d.sandbox.pause(d.session).await.unwrap());
    let start = d.sandbox.start(d.session, Limits::default());
    let read = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let during = paused();
        d.sandbox.resume(d.session).await;
        during
    };
    let (started, during) = tokio::join!(start, read);
    started.unwrap();
    assert_eq!(during, "true", "the agent ran in the middle of the read");
    assert_eq!(paused(), "false");
    // Left paused with no read under way (a server stopped mid-read): the
    // start resumes it.
    let out = std::process::Command::new("docker")
        .args(["pause", &name])
        .output()
        .unwrap();
    assert!(out.status.success());
    d.sandbox.start(d.session, Limits::default()).await.unwrap();
    assert_eq!(paused(), "false");
}

/// A read of a stopped sandbox's workspace (stopped when idle) has nothing
/// to pause, and still keeps it from starting until the read ends: a start
/// meanwhile would run the agent's code amid host-side git.
#[tokio::test]
async fn a_start_waits_for_a_read_of_a_stopped_sandbox() {
    let d = docker(Limits::default()).await;
    let name = DockerSandbox::container_name(d.session);
    let running = || {
        let out = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.State.Running}}", &name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    d.sandbox.stop(d.session).await.unwrap();
    assert!(!d.sandbox.pause(d.session).await.unwrap(), "nothing ran");
    let start = d.sandbox.start(d.session, Limits::default());
    let read = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let during = running();
        d.sandbox.resume(d.session).await;
        during
    };
    let (started, during) = tokio::join!(start, read);
    started.unwrap();
    assert_eq!(during, "false", "it started in the middle of the read");
    assert_eq!(running(), "true");
    assert_eq!(paused(&name), "false");
}

/// A read whose request goes away while the pause is being asked for (a
/// reader leaving the Changes view) still lets the sandbox run again,
/// wherever in the asking it was dropped.
#[tokio::test]
async fn a_pause_dropped_while_it_is_asked_for_is_resumed() {
    let d = docker(Limits::default()).await;
    let name = DockerSandbox::container_name(d.session);
    let paused = || paused(&name);
    for after_ms in 0..40u64 {
        // As the Changes view's guard does: the pause is asked for, and
        // resumed however the asking ended.
        let asked =
            tokio::time::timeout(Duration::from_millis(after_ms), d.sandbox.pause(d.session)).await;
        if let Ok(done) = asked {
            done.unwrap();
        }
        d.sandbox.resume(d.session).await;
        assert_eq!(paused(), "false", "dropped after {after_ms} ms");
    }
}

/// A stop waits for no read: the sandbox is in use while the server reads
/// its workspace paused. One left paused with no read under way is a
/// leftover of a server that stopped mid-read: it stops.
#[tokio::test]
async fn a_stop_is_refused_during_a_read_and_stops_a_sandbox_left_paused() {
    let d = docker(Limits::default()).await;
    let name = DockerSandbox::container_name(d.session);
    assert!(d.sandbox.pause(d.session).await.unwrap());
    assert!(d.sandbox.stop(d.session).await.is_err());
    assert_eq!(paused(&name), "true", "still the reader's");
    d.sandbox.resume(d.session).await;
    let by_hand = std::process::Command::new("docker")
        .args(["pause", &name])
        .status()
        .unwrap();
    assert!(by_hand.success());
    d.sandbox.stop(d.session).await.unwrap();
    let running = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", &name])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "false");
}

#[tokio::test]
async fn docker_the_largest_variables_a_session_may_set_reach_commands_programs_and_terminals() {
    let d = docker(Limits::default()).await;
    // 32 values of 32 KiB, the most a session sets, each escaped at its
    // longest in JSON (a control character takes six bytes).
    let value = "\u{1}\"".repeat(16 * 1024);
    let env: Vec<(String, String)> = (0..32).map(|i| (format!("V{i}"), value.clone())).collect();
    let mut request = ExecRequest::new("echo ${#V0} ${#V31}");
    request.env = env.clone();
    let cancel = CancellationToken::new();
    let ran = d
        .sandbox
        .exec(d.session, &request, &cancel, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(ran.output, "32768 32768\n", "{ran:?}");

    let read_all = |mut process: server::sandbox::Process| async move {
        let mut seen = Vec::new();
        while let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_secs(10), process.output.next()).await
        {
            seen.extend_from_slice(&chunk.unwrap().1);
            if String::from_utf8_lossy(&seen).contains("32768 32768") {
                break;
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    let spawned = d
        .sandbox
        .spawn(
            d.session,
            &server::sandbox::SpawnRequest {
                argv: vec!["sh".into(), "-c".into(), "echo ${#V0} ${#V31}".into()],
                env: env.clone(),
                timeout: Duration::from_secs(30),
            },
        )
        .await
        .unwrap();
    assert!(read_all(spawned).await.contains("32768 32768"));

    let mut terminal = d
        .sandbox
        .terminal(
            d.session,
            &env,
            server::sandbox::TerminalSize { rows: 24, cols: 80 },
        )
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt;
    terminal
        .process
        .stdin
        .write_all(b"echo ${#V0} ${#V31}\n")
        .await
        .unwrap();
    assert!(read_all(terminal.process).await.contains("32768 32768"));
}
