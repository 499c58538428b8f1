//! Read-only mounts of host folders, with real Docker sandboxes: only from
//! the admin's allowlist, readable and never writable in the sandbox, and
//! every other request refused at creation with nothing created.

use crate::common::{self, Home};
use app::accounts::Caller;
use app::api::Backend;
use app::domain::{AppError, NewSession, ReadOnlyMount, SessionStatus};
use serde_json::json;

fn new(mounts: Vec<ReadOnlyMount>) -> NewSession {
    NewSession {
        name: "mounts".into(),
        permission_mode: Some("auto".parse().unwrap()),
        mounts,
        ..Default::default()
    }
}

fn mount(host: &std::path::Path, name: &str) -> ReadOnlyMount {
    ReadOnlyMount {
        host: host.display().to_string(),
        name: name.into(),
    }
}

#[tokio::test]
async fn an_allowed_folder_is_read_in_the_sandbox_and_never_written() {
    let shared = tempfile::tempdir().unwrap();
    let allowed = shared.path().join("datasets");
    std::fs::create_dir_all(allowed.join("cities")).unwrap();
    std::fs::write(allowed.join("cities/list.txt"), "Lyon\nOsaka\n").unwrap();
    let outside = shared.path().join("private");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "s").unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("sneaky")).unwrap();

    let look = "cat /mnt/cities/list.txt; touch /mnt/cities/new.txt; echo touch=$?; \
                rm /mnt/cities/list.txt; echo rm=$?; ls /mnt";
    let (_model, url) = common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": look}}}]},
            {"expect": {"tool_result_contains": "Osaka"}, "reply": "Read it."}
        ]),
        Some("sk-test"),
    )
    .await;
    let home = Home::new();
    let paddock = common::open(
        &home,
        "docker",
        &[
            format!("--anthropic-base-url={url}"),
            "--anthropic-api-key=sk-test".into(),
            format!("--mount-allow={}", allowed.display()),
        ],
    )
    .await;
    let me = Caller::local_operator();

    // Refused, each with a clear message, and no session made: outside the
    // allowlist, a link inside it that leads out, `..` out of it, a file, a
    // missing folder, a bad name, two of one name.
    for (what, mounts) in [
        ("outside", vec![mount(&outside, "")]),
        ("a link out", vec![mount(&allowed.join("sneaky"), "")]),
        ("dot-dot", vec![mount(&allowed.join("../private"), "p")]),
        ("a file", vec![mount(&allowed.join("cities/list.txt"), "f")]),
        ("missing", vec![mount(&allowed.join("nope"), "")]),
        ("/etc", vec![mount(std::path::Path::new("/etc"), "")]),
        (
            "relative",
            vec![ReadOnlyMount {
                host: "datasets".into(),
                name: String::new(),
            }],
        ),
        ("bad name", vec![mount(&allowed, "../x")]),
        (
            "twice",
            vec![mount(&allowed, "a"), mount(&allowed.join("cities"), "a")],
        ),
    ] {
        let refused = paddock.create_session(&me, new(mounts)).await.unwrap_err();
        assert!(
            matches!(refused, AppError::Invalid(_)),
            "{what}: {refused:?}"
        );
    }
    let refused = paddock
        .create_session(&me, new(vec![mount(&outside, "")]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        !refused.contains("exist"),
        "says nothing of what exists: {refused}"
    );
    assert!(paddock.store.list_sessions(None).await.unwrap().is_empty());

    // Allowed: a folder inside the allowlist, named by the session.
    let spec = new(vec![mount(&allowed.join("cities/"), "")]);
    let s = paddock.create_session(&me, spec).await.unwrap();
    assert_eq!(s.mounts[0].name, "cities");
    assert_eq!(
        s.mounts[0].host,
        allowed
            .join("cities")
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    );
    paddock
        .send_prompt(&me, s.id, "read the list".into())
        .await
        .unwrap();
    let events = common::wait_idle(&paddock, s.id).await;
    assert_eq!(common::last_status(&events).0, SessionStatus::Idle);
    let output = common::first_tool_output(&events);
    assert!(output.contains("Lyon\nOsaka"), "{output}");
    assert!(output.contains("Read-only file system"), "{output}");
    assert!(
        !output.contains("touch=0") && !output.contains("rm=0"),
        "{output}"
    );
    assert_eq!(
        std::fs::read_to_string(allowed.join("cities/list.txt")).unwrap(),
        "Lyon\nOsaka\n"
    );
    assert!(!allowed.join("cities/new.txt").exists());
    // Stored, and there after a reload.
    let again = paddock.store.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(again.mounts, s.mounts);
}

#[tokio::test]
async fn without_an_allowlist_nothing_is_mounted_and_local_sandboxes_mount_too() {
    let shared = tempfile::tempdir().unwrap();
    let home = Home::new();
    let docker = common::open(&home, "docker", &[]).await;
    let spec = new(vec![mount(shared.path(), "x")]);
    let refused = docker
        .create_session(&Caller::local_operator(), spec.clone())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("PADDOCK_MOUNT_ALLOW"),
        "{refused}"
    );
    assert!(docker
        .server_info(&Caller::local_operator())
        .await
        .mountable
        .is_empty());

    // Local sandboxes mount under bubblewrap (the local backend's own
    // test reads and fails to write one).
    let home = Home::new();
    let allow = format!("--mount-allow={}", shared.path().display());
    let local = common::open(&home, "local", &[allow]).await;
    let s = local
        .create_session(&Caller::local_operator(), spec)
        .await
        .unwrap();
    assert_eq!(s.mounts[0].target(), "/mnt/x");
    assert_eq!(
        local.server_info(&Caller::local_operator()).await.mountable,
        [shared.path().display().to_string()]
    );
}
