//! The local sandbox backend on this host (bubblewrap where it works), in a
//! test binary of its own: it puts a canary API key into the test process's
//! environment, which no other test may share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::exec as run;
use server::sandbox::{
    workspace_dir, FileError, Limits, LocalSandbox, OwnData, Sandbox, SandboxSpec,
};

#[tokio::test]
async fn local_sandbox_scrubs_env_kills_trees_and_confines_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("workspaces");
    let sandbox = LocalSandbox::new(root.clone());
    assert!(
        sandbox.info().warning.is_some(),
        "the weaker isolation is stated"
    );
    let session = uuid::Uuid::now_v7();
    sandbox.start(session, Limits::default()).await.unwrap();

    std::env::set_var("ANTHROPIC_API_KEY", "sk-canary-local");
    let env = run(&sandbox, session, "env", 10).await;
    assert!(
        !env.output.contains("ANTHROPIC") && !env.output.contains("sk-canary"),
        "{}",
        env.output
    );

    // The session's variables are there, and the sandbox's own stay.
    let request = server::sandbox::ExecRequest {
        env: vec![("GREETING".into(), "hello local".into())],
        ..server::sandbox::ExecRequest::new("echo \"$GREETING|$LANG\"")
    };
    let greeted = sandbox
        .exec(
            session,
            &request,
            &tokio_util::sync::CancellationToken::new(),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(greeted.output, "hello local|C.UTF-8\n");

    // A variable's value (a secret) is on no command line, which every user
    // of the host may read, while the command runs; the command finds its
    // input ended.
    let secret = format!("sk-argv-canary-{}", uuid::Uuid::now_v7().simple());
    let request = server::sandbox::ExecRequest {
        env: vec![
            ("TOKEN".into(), secret.clone()),
            ("OTHER".into(), "two words".into()),
        ],
        ..server::sandbox::ExecRequest::new("sleep 2; read -r line; echo \"read $?|$OTHER|$TOKEN\"")
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut ignore = |_, _: &[u8]| {};
    let running = sandbox.exec(session, &request, &cancel, &mut ignore);
    let look = async {
        let mut seen = Vec::new();
        let mut looked = 0;
        for _ in 0..15 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(line) = std::fs::read(entry.path().join("cmdline")) else {
                    continue;
                };
                let line = String::from_utf8_lossy(&line).replace('\0', " ");
                if line.contains("sleep 2; read") {
                    looked += 1;
                }
                if line.contains(&secret) {
                    seen.push(line);
                }
            }
        }
        (looked, seen)
    };
    let (ran, (looked, seen)) = tokio::join!(running, look);
    assert!(looked > 0, "the command was seen running");
    assert!(
        seen.is_empty(),
        "a secret on a command line: {:?}",
        seen.first()
    );
    assert_eq!(ran.unwrap().output, format!("read 1|two words|{secret}\n"));
    // The sandbox's init holds nothing of the host's (bubblewrap opens the
    // host's /proc after it read the variables: init would have kept it at
    // 0, and the command could then reach the host's files through it).
    for env in [vec![], vec![("TOKEN".to_owned(), secret.clone())]] {
        let request = server::sandbox::ExecRequest {
            env,
            ..server::sandbox::ExecRequest::new("ls -l /proc/1/fd; ls /proc/1/fd/0/ | head -3")
        };
        let held = sandbox
            .exec(session, &request, &cancel, &mut ignore)
            .await
            .unwrap();
        assert!(!held.output.contains("-> /proc"), "{}", held.output);
        assert!(held.output.contains("0 -> /dev/null"), "{}", held.output);
    }
    // A NUL would begin an argument of bubblewrap's own: refused.
    let smuggled = server::sandbox::ExecRequest {
        env: vec![("X".into(), "a\0--bind\0/\0/host".into())],
        ..server::sandbox::ExecRequest::new("ls /host")
    };
    assert!(sandbox
        .exec(session, &smuggled, &cancel, &mut |_, _| {})
        .await
        .is_err());

    // A read-only mount: read in every command, never written.
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("data.txt"), "from the host").unwrap();
    let mounted = server::sandbox::Mount {
        host: shared.clone(),
        target: "/mnt/shared".into(),
        read_only: true,
    };
    sandbox
        .start_with(
            session,
            &SandboxSpec {
                mounts: vec![mounted.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let read = run(
        &sandbox,
        session,
        "cat /mnt/shared/data.txt; echo; touch /mnt/shared/x 2>&1; echo rc=$?",
        10,
    )
    .await;
    assert!(
        read.output.starts_with("from the host\n"),
        "{}",
        read.output
    );
    assert!(
        read.output.contains("Read-only file system"),
        "{}",
        read.output
    );
    assert!(!shared.join("x").exists());
    // A link swapped in for the folder since the sandbox started: refused.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::rename(&shared, dir.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &shared).unwrap();
    let swapped = sandbox
        .exec(
            session,
            &server::sandbox::ExecRequest::new("ls /mnt/shared"),
            &tokio_util::sync::CancellationToken::new(),
            &mut |_, _| {},
        )
        .await;
    assert!(swapped.is_err(), "{swapped:?}");
    std::fs::remove_file(&shared).unwrap();
    std::fs::rename(dir.path().join("moved"), &shared).unwrap();
    let writable = server::sandbox::Mount {
        read_only: false,
        ..mounted
    };
    assert!(sandbox
        .start_with(
            session,
            &SandboxSpec {
                mounts: vec![writable],
                ..Default::default()
            },
        )
        .await
        .is_err());

    let looped = run(&sandbox, session, "sleep 1000 & while :; do :; done", 1).await;
    assert!(looped.timed_out, "{looped:?}");
    let left = std::process::Command::new("pgrep")
        .args(["-f", "sleep 1000"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the whole tree is killed");

    assert!(run(&sandbox, session, "echo hi > made.txt", 10)
        .await
        .success());
    let ws = sandbox.workspace(session);
    assert_eq!(ws.read("/workspace/made.txt").await.unwrap(), b"hi\n");
    assert!(matches!(
        ws.read("../../etc/passwd").await,
        Err(FileError::Outside(_))
    ));

    let big = run(
        &sandbox,
        session,
        "head -c 10000000 /dev/zero | tr '\\0' a",
        30,
    )
    .await;
    assert!(
        big.truncated && big.total_bytes == 10_000_000,
        "{}",
        big.total_bytes
    );

    sandbox.destroy(session).await.unwrap();
    assert!(!workspace_dir(&root, session).exists());
}

/// A server run from a system folder bound into every sandbox (such as
/// `/opt/paddock`) keeps its data there: hidden from the commands, which
/// run as the server's own user: its folders, and its master key's file.
#[tokio::test]
async fn the_servers_data_in_a_system_folder_is_hidden_from_commands() {
    let data = std::path::PathBuf::from(format!(
        "/opt/paddock-test-{}",
        uuid::Uuid::now_v7().simple()
    ));
    if std::fs::create_dir_all(data.join("db")).is_err() {
        eprintln!("skipped: {} cannot be made here (not root)", data.display());
        return;
    }
    std::fs::write(data.join("db/paddock.db"), "every credential").unwrap();
    std::fs::write(data.join("master.key"), "the master key").unwrap();
    std::fs::write(data.join("README"), "the server's own notes").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("workspaces");
    let sandbox = LocalSandbox::new(root).hiding(OwnData {
        folders: vec![data.join("db")],
        files: vec![data.join("master.key")],
    });
    let session = uuid::Uuid::now_v7();
    sandbox.start(session, Limits::default()).await.unwrap();
    let read = run(
        &sandbox,
        session,
        &format!("cd {}; cat db/paddock.db master.key README", data.display()),
        10,
    )
    .await;
    std::fs::remove_dir_all(&data).unwrap();
    assert!(
        !read.output.contains("every credential") && !read.output.contains("the master key"),
        "{}",
        read.output
    );
    // What is not the server's data is there as it was.
    assert!(
        read.output.contains("the server's own notes"),
        "{}",
        read.output
    );
}
