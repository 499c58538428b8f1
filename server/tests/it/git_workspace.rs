//! Git in, changes out, against a real git server (`git http-backend`
//! behind basic auth): a session cloned with a saved token, the agent
//! editing through the scripted model, the Changes view's files and diff,
//! a commit by the person and a push that lands the branch in the bare
//! repository; the token nowhere the agent, the transcript or the log can
//! reach. Then the ways a source goes wrong, each a clear error at its
//! step that leaves the session usable.

use crate::common;
use crate::common::git_server::{git, noise, GitServer};
use app::accounts::{Caller, CredentialId, CredentialKind, CredentialScope};
use app::api::Backend;
use app::changes::ChangeKind;
use app::domain::{AppError, EventKind, NewSession, Session, SessionStatus};
use app::workspace_source::WorkspaceSource;
use serde_json::json;
use server::paddock::Paddock;
use server::workspace_files::Upload;
use std::time::Duration;

const TOKEN: &str = "gtok-canary-5d1e0c9b7a";
/// Made by a command a nested repository configures, if it ever ran.
const PWNED: &str = "/tmp/paddock-host-git-ran-the-agents-filter";

fn source(url: String, credential: Option<&str>) -> NewSession {
    NewSession {
        name: "on a repo".into(),
        permission_mode: Some("auto".parse().unwrap()),
        source: Some(WorkspaceSource::Git {
            url,
            rev: None,
            credential: credential.map(str::to_owned),
        }),
        ..Default::default()
    }
}

async fn save_token(paddock: &Paddock, value: &str) {
    let id = CredentialId::named(CredentialScope::Server, CredentialKind::GitToken, "FORGE");
    paddock
        .save_credential(&Caller::local_operator(), id, value.into())
        .await
        .unwrap();
}

fn workspace_events(events: &[app::domain::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Workspace { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Runs a command in the session's container as root (to read all of it).
fn in_container(s: &Session, script: &str) -> String {
    as_user(s, "0", script)
}

/// Runs a command in the session's container as its agent would.
/// Runs `script` as the agent, then lists the session's changes: refused,
/// naming `named`.
async fn refused_after(paddock: &Paddock, s: &Session, script: &str, named: &str) {
    as_agent(s, script);
    let refused = paddock.changes(&Caller::local_operator(), s.id).await;
    assert!(
        matches!(&refused, Err(AppError::Invalid(m)) if m.contains(named)),
        "{named}: {refused:?}"
    );
}

fn as_agent(s: &Session, script: &str) -> String {
    as_user(s, "10001", script)
}

fn as_user(s: &Session, user: &str, script: &str) -> String {
    let container = format!("paddock-{}", s.id);
    let out = std::process::Command::new("docker")
        .args(["exec", "-u", user, &container, "sh", "-c", script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_repository_is_cloned_edited_committed_and_pushed_without_its_token_in_the_sandbox() {
    let _ = std::fs::remove_file(PWNED);
    let server = GitServer::start(Some(TOKEN)).await;
    let bare = server.repo(
        "app.git",
        &[
            ("README.md", b"# App\nold line\n"),
            ("src/lib.rs", b"pub fn f() {}\n"),
            ("gone.txt", b"to be deleted\n"),
        ],
    );
    let (_model, url) = common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "edit_file", "input": {"path": "README.md", "old_string": "old line", "new_string": "new line"}}}]},
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo notes > NOTES.md && rm gone.txt && git status --short && git remote get-url origin && (git push origin HEAD 2>&1 || true)"}}}]},
            // A nested repository whose configuration would run a command
            // wherever git looked inside it (the host's git must not).
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": format!(
                "mkdir sub && cd sub && git init -q && git config filter.x.clean 'touch {PWNED}' && echo 'f filter=x' > .gitattributes && echo hi > f && git -c user.name=a -c user.email=a@b add . && git -c user.name=a -c user.email=a@b commit -qm x && echo nested"
            )}}}]},
            {"expect": {"tool_result_contains": "nested"}, "reply": "Edited."}
        ]),
        Some("sk-test"),
    )
    .await;
    let (home, paddock) = common::with_model(&url, &[]).await;
    save_token(&paddock, TOKEN).await;
    let operator = Caller::local_operator();
    let s = paddock
        .create_session(
            &operator,
            source(format!("{}/app.git", server.url), Some("FORGE")),
        )
        .await
        .unwrap();
    paddock
        .send_prompt(&operator, s.id, "Edit the README".into())
        .await
        .unwrap();
    let events = common::wait_idle(&paddock, s.id).await;
    assert_eq!(common::errors(&events), Vec::<String>::new());
    let said = workspace_events(&events);
    assert!(
        said.iter()
            .any(|m| m.contains("cloned") && m.contains(&format!("paddock/{}", s.id))),
        "{said:?}"
    );
    // The agent worked on its branch, and could not push (no network).
    let bash = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ToolResult { output, .. } if output.contains("NOTES.md") => {
                Some(output.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(bash.contains(&format!("{}/app.git", server.url)), "{bash}");
    assert!(!bash.contains(TOKEN));

    // The Changes view.
    let s = paddock.get_session(&operator, s.id).await.unwrap();
    let changes = paddock.changes(&operator, s.id).await.unwrap();
    let kinds: Vec<(&str, ChangeKind)> = changes
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("NOTES.md", ChangeKind::Untracked),
            ("README.md", ChangeKind::Modified),
            ("gone.txt", ChangeKind::Deleted),
        ]
    );
    assert!(changes.uncommitted);
    let diff = paddock
        .change_diff(&operator, s.id, "README.md".into())
        .await
        .unwrap();
    let unified = diff.unified.clone().unwrap();
    assert!(
        unified.contains("-old line") && unified.contains("+new line"),
        "{unified}"
    );
    // The same file, however its path is written.
    for written in ["./README.md", "src/../README.md", "/workspace/README.md"] {
        let same = paddock
            .change_diff(&operator, s.id, written.into())
            .await
            .unwrap();
        assert_eq!(same, diff, "{written}");
    }
    assert!(matches!(
        paddock
            .change_diff(&operator, s.id, "../../etc/passwd".into())
            .await,
        Err(AppError::Invalid(_))
    ));
    // A folder is no changed file, whether it was there at the start or not.
    for folder in ["src", "sub"] {
        let diff = paddock.change_diff(&operator, s.id, folder.into()).await;
        assert!(
            matches!(diff, Err(AppError::NotFound(_))),
            "{folder}: {diff:?}"
        );
    }
    assert!(matches!(
        paddock.push_changes(&operator, s.id).await,
        Err(AppError::Conflict(_))
    ));

    // Commit, then push: the bare repository has the branch and the commit.
    let committed = paddock
        .commit_changes(
            &operator,
            s.id,
            "#12 Say new things\n\nBy the agent.".into(),
        )
        .await
        .unwrap();
    assert!(matches!(
        paddock
            .commit_changes(&operator, s.id, "Again".into())
            .await,
        Err(AppError::Conflict(_))
    ));
    let after = paddock.changes(&operator, s.id).await.unwrap();
    assert!(!after.uncommitted);
    assert!(after
        .files
        .iter()
        .any(|f| f.path == "NOTES.md" && f.kind == ChangeKind::Added));
    assert!(
        !after.files.iter().any(|f| f.path.starts_with("sub")),
        "a nested repository is left alone: {:?}",
        after.files
    );
    assert!(
        !std::path::Path::new(PWNED).exists(),
        "the host's git ran the agent's filter"
    );
    let pushed = paddock.push_changes(&operator, s.id).await.unwrap();
    assert_eq!(pushed.commit, committed.commit);
    let branch = format!("paddock/{}", s.id);
    let log = git(&bare, &["log", "--format=%H %an %s", &branch]);
    assert!(
        log.starts_with(&format!(
            "{} Local operator #12 Say new things",
            committed.commit
        )),
        "{log}"
    );
    assert_eq!(
        git(&bare, &["show", &format!("{branch}:README.md")]),
        "# App\nnew line\n"
    );
    assert!(server
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|a| a.starts_with("Basic ")));

    // The token is nowhere the agent or a viewer reaches.
    let env = in_container(&s, "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'");
    assert!(!env.is_empty() && !env.contains(TOKEN));
    let args = in_container(&s, "cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' '");
    assert!(!args.contains(TOKEN));
    let found = in_container(
        &s,
        &format!("grep -rIl --exclude-dir=proc --exclude-dir=sys -e {TOKEN} / 2>/dev/null; echo searched"),
    );
    assert_eq!(
        found.trim(),
        "searched",
        "the token is in the container's files"
    );
    let workspace = home.workspace(s.id);
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", TOKEN])
        .arg(&workspace)
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );
    let transcript = serde_json::to_string(&common::events(&paddock, s.id).await).unwrap();
    assert!(!transcript.contains(TOKEN));
    let db = std::fs::read(home.path().join("paddock.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(TOKEN));
    let said = workspace_events(&common::events(&paddock, s.id).await);
    assert!(
        said.iter().any(|m| m.contains("committed")) && said.iter().any(|m| m.contains("pushed")),
        "{said:?}"
    );

    // An odd tree: a tracked folder turned into a link leaving the
    // workspace is committed as a link (nothing is read through it), and a
    // pipe named .gitignore is refused at once, the sandbox running again.
    as_agent(&s, "cd /workspace && rm -rf src && ln -s /etc src");
    // Its diff is the link's own (what git keeps), and what was in the
    // folder is gone: nothing is read through the link.
    let link = paddock
        .change_diff(&operator, s.id, "src".into())
        .await
        .unwrap();
    assert_eq!(link.kind, ChangeKind::Added);
    let unified = link.unified.unwrap_or_default();
    assert!(unified.contains("+/etc"), "{unified}");
    let gone = paddock
        .change_diff(&operator, s.id, "src/lib.rs".into())
        .await
        .unwrap();
    assert_eq!(gone.kind, ChangeKind::Deleted);
    let linked = paddock
        .commit_changes(&operator, s.id, "Link".into())
        .await
        .unwrap();
    let tree = git(
        &home.path().join("git").join(s.id.to_string()),
        &["ls-tree", "-r", &linked.commit],
    );
    assert!(
        tree.contains("120000") && tree.contains("\tsrc\n"),
        "{tree}"
    );
    assert!(
        !tree.contains("lib.rs") && !tree.contains("passwd"),
        "{tree}"
    );
    // A name that is not UTF-8 is committed as it is (its change was
    // left out, or the commit refused as empty)…
    as_agent(
        &s,
        "cd /workspace && printf 'x\\n' > \"$(printf 'na\\377me')\"",
    );
    // …past the locks a commit cut off (its request gone) left behind.
    let git_dir = home.path().join("git").join(s.id.to_string());
    for lock in [
        "index.lock".to_owned(),
        "HEAD.lock".to_owned(),
        format!("refs/heads/paddock/{}.lock", s.id),
    ] {
        std::fs::write(git_dir.join(lock), "").unwrap();
    }
    let odd = paddock
        .commit_changes(&operator, s.id, "Odd name".into())
        .await
        .unwrap();
    let tree = git(
        &home.path().join("git").join(s.id.to_string()),
        &["ls-tree", "-r", "--name-only", &odd.commit],
    );
    assert!(tree.contains("\"na\\377me\""), "{tree}");
    assert!(!paddock.changes(&operator, s.id).await.unwrap().uncommitted);
    // A commit cut off after its staging (its request gone) left a file
    // staged, which the agent then removed: no change shows it, and the
    // next commit does not take it along.
    as_agent(&s, "cd /workspace && echo KEY=1 > staged.env");
    let workspace = server::sandbox::workspace_dir(&paddock.config.workspace_root, s.id);
    let staged = std::process::Command::new("git")
        .args(["-c", "safe.directory=*"])
        .arg(format!("--git-dir={}", git_dir.display()))
        .arg(format!("--work-tree={}", workspace.display()))
        .args(["update-index", "--add", "staged.env"])
        .status()
        .unwrap();
    assert!(staged.success());
    as_agent(
        &s,
        "cd /workspace && rm staged.env && echo later > later.txt",
    );
    let later = paddock
        .commit_changes(&operator, s.id, "Later".into())
        .await
        .unwrap();
    let tree = git(&git_dir, &["ls-tree", "-r", "--name-only", &later.commit]);
    assert!(
        tree.contains("later.txt") && !tree.contains("staged.env"),
        "{tree}"
    );
    refused_after(
        &paddock,
        &s,
        "cd /workspace && mkdir -p d && mkfifo d/.gitignore",
        "d/.gitignore",
    )
    .await;
    assert_eq!(in_container(&s, "echo running").trim(), "running");
    // A sparse ignore file of gigabytes (no room taken on the workspace's
    // disk), which git would read whole.
    refused_after(
        &paddock,
        &s,
        "cd /workspace && rm -r d && mkdir -p d && truncate -s 12G d/.gitignore",
        "d/.gitignore is over 1 MiB",
    )
    .await;
    // A pipe in a nested repository's .git, where git opens HEAD to tell
    // that it is one.
    refused_after(
        &paddock,
        &s,
        "cd /workspace && rm d/.gitignore && mkdir -p n/.git && mkfifo n/.git/HEAD",
        "n/.git/HEAD",
    )
    .await;
    assert_eq!(in_container(&s, "echo running").trim(), "running");
    // …and where a `.git` file says its repository is.
    refused_after(&paddock, &s, "cd /workspace && rm -r n && mkdir -p g x/objects x/refs && printf 'gitdir: ../x\\n' > g/.git && mkfifo x/HEAD", "x/HEAD").await;
    // A `commondir` that is a link to a pipe of another name, which git
    // would open, following it.
    refused_after(&paddock, &s, "cd /workspace && rm -r g x && mkdir -p c/.git && echo 'ref: refs/heads/main' > c/.git/HEAD \
         && mkfifo p && ln -s ../../p c/.git/commondir", "c/.git/commondir").await;
    assert_eq!(in_container(&s, "echo running").trim(), "running");
    // A link of that name to a folder (as pnpm links a package), or to
    // nothing (an install cut short), is fine.
    as_agent(
        &s,
        "cd /workspace && rm -r c p && mkdir -p pkg/commondir@1 deps gone \
         && ln -s ../pkg/commondir@1 deps/commondir && ln -s ../nowhere gone/commondir",
    );
    assert!(paddock.changes(&operator, s.id).await.is_ok());
    // A `.git` file naming a repository in the agent's own `.git`, which
    // the walk passes over (as a submodule's does): what git reads there
    // is looked at too, a pipe, and a link to a file without end.
    refused_after(
        &paddock,
        &s,
        "cd /workspace && rm -r pkg deps gone && mkdir -p nest .git/x/objects .git/x/refs \
         && mkfifo .git/x/HEAD && printf 'gitdir: ../.git/x\\n' > nest/.git",
        ".git/x/HEAD",
    )
    .await;
    refused_after(
        &paddock,
        &s,
        "cd /workspace && rm .git/x/HEAD && echo 'ref: refs/heads/m' > .git/x/HEAD \
         && ln -s /dev/zero .git/x/commondir",
        ".git/x/commondir",
    )
    .await;
    // …or one out of the workspace (the server's own files, as git on the
    // server would find them).
    refused_after(
        &paddock,
        &s,
        "cd /workspace && rm .git/x/commondir && printf 'gitdir: /proc/1/root/tmp\\n' > nest/.git",
        "nest/.git leads out",
    )
    .await;
    // A submodule's repository as git lays it out is fine.
    as_agent(
        &s,
        "cd /workspace && printf 'gitdir: ../.git/x\\n' > nest/.git \
         && printf '[core]\\n\\tbare = false\\n' > .git/x/config",
    );
    assert!(paddock.changes(&operator, s.id).await.is_ok());
    // A nested repository whose branch is a link to a file without end,
    // or whose `packed-refs` is a pipe: git reads them to resolve its HEAD.
    // The same as git reads it: `ref:` without its space, a HEAD that is a
    // link to the branch, a branch naming another, one too large to read,
    // a ref outside `refs/`. Each step leaves the next its repository.
    for (script, named) in [
        (
            "mkdir -p r/.git/refs/heads && echo 'ref: refs/heads/x' > r/.git/HEAD \
             && ln -s /dev/zero r/.git/refs/heads/x",
            "r/.git/refs/heads/x",
        ),
        (
            "rm r/.git/refs/heads/x && mkfifo r/.git/packed-refs",
            "r/.git/packed-refs",
        ),
        (
            "rm r/.git/packed-refs && echo 'ref:refs/heads/y' > r/.git/HEAD \
             && ln -s /dev/zero r/.git/refs/heads/y",
            "r/.git/refs/heads/y",
        ),
        (
            "rm r/.git/HEAD && ln -s refs/heads/x r/.git/HEAD \
             && echo 'ref: refs/heads/y' > r/.git/refs/heads/x",
            "r/.git/refs/heads/y",
        ),
        (
            "rm r/.git/HEAD r/.git/refs/heads/y \
             && echo 'ref: refs/heads/x' > r/.git/HEAD && truncate -s 1M r/.git/HEAD",
            "r/.git/HEAD",
        ),
        (
            "rm r/.git/HEAD && echo 'ref: refs/heads/x' > r/.git/HEAD \
             && echo 'ref: FETCH_HEAD' > r/.git/refs/heads/x && ln -s /dev/zero r/.git/FETCH_HEAD",
            "r/.git/FETCH_HEAD",
        ),
    ] {
        refused_after(&paddock, &s, &format!("cd /workspace && {script}"), named).await;
    }
    as_agent(&s, "cd /workspace && rm -r r");

    // Deleting the session removes the server's repository too.
    paddock.delete_session(&operator, s.id).await.unwrap();
    assert!(!home.path().join("git").join(s.id.to_string()).exists());
}

#[tokio::test]
async fn a_source_that_fails_says_why_at_its_step_and_the_session_stays_usable() {
    let server = GitServer::start(Some(TOKEN)).await;
    server.repo("private.git", &[("a.txt", b"a\n")]);
    server.repo(
        "big.git",
        &[("blob.bin", &noise(3_000_000, 0x9e37_79b9_7f4a_7c15))],
    );
    let (_model, url) = common::scripted(&json!([]), Some("sk-test")).await;
    let (home, paddock) = common::with_model(&url, &["--source-max-mb=1"]).await;
    save_token(&paddock, TOKEN).await;
    let operator = Caller::local_operator();

    // Refused before anything is made.
    for (url, credential) in [
        ("file:///etc".to_owned(), None),
        (format!("http://user:{TOKEN}@127.0.0.1/x.git"), None),
        (format!("{}/private.git", server.url), Some("NOT_SAVED")),
    ] {
        let refused = paddock
            .create_session(&operator, source(url.clone(), credential))
            .await;
        assert!(
            matches!(refused, Err(AppError::Invalid(_))),
            "{url}: {refused:?}"
        );
    }
    assert!(paddock.list_sessions(&operator).await.unwrap().is_empty());

    // Whether it would fail the same way again: an upload, which waits
    // for the workspace, is then refused (409) rather than put off (503).
    for (url, credential, why, lasts) in [
        (
            "http://127.0.0.1:1/none.git".to_owned(),
            None,
            "clone failed",
            false,
        ),
        (
            format!("{}/private.git", server.url),
            None,
            "clone failed",
            true,
        ),
        (
            format!("{}/nothing-here.git", server.url),
            Some("FORGE"),
            "clone failed",
            true,
        ),
        (
            format!("{}/big.git", server.url),
            Some("FORGE"),
            "larger than the limit of 1 MiB",
            true,
        ),
    ] {
        let s = paddock
            .create_session(&operator, source(url.clone(), credential))
            .await
            .unwrap();
        let note = Upload {
            path: "note.txt".into(),
            data: "hi\n".into(),
        };
        let refused = paddock.upload_files(&operator, s.id, vec![note]).await;
        match lasts {
            true => assert!(
                matches!(&refused, Err(AppError::Conflict(m)) if m.contains(why)),
                "{url}: {refused:?}"
            ),
            false => assert!(
                matches!(&refused, Err(AppError::Unavailable(m)) if m.contains(why)),
                "{url}: {refused:?}"
            ),
        }
        paddock
            .send_prompt(&operator, s.id, "go".into())
            .await
            .unwrap();
        let events = common::wait_idle(&paddock, s.id).await;
        let errors = common::errors(&events);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("The workspace could not be prepared") && e.contains(why)),
            "{url}: {errors:?}"
        );
        // Nothing half-cloned is left, and the session can still be used.
        let workspace = home.workspace(s.id);
        let left: Vec<_> = std::fs::read_dir(&workspace)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{url}: {left:?}");
        assert!(!home.path().join("git").join(s.id.to_string()).exists());
        assert!(matches!(
            paddock.changes(&operator, s.id).await,
            Err(AppError::Conflict(_))
        ));
        paddock.delete_session(&operator, s.id).await.unwrap();
    }
}

/// A clone cut short by its time limit ends with every git process it
/// ran: the helpers that fetch the pack went on, writing it into the
/// server's disk, once git alone was killed.
#[tokio::test]
async fn a_clone_cut_short_leaves_no_git_behind() {
    let server = GitServer::start(None).await;
    server.repo("slow.git", &[("blob.bin", &noise(1_000_000, 1))]);
    // 20 KB a second: the pack would take almost a minute; under git's
    // first protocol, a helper of git's fetches it.
    *server.trickle.lock().unwrap() = Some(2048);
    server
        .only_v0
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (_model, url) = common::scripted(&json!([]), Some("sk-test")).await;
    let (_home, paddock) = common::with_model(&url, &["--git-timeout-secs=3"]).await;
    let operator = Caller::local_operator();
    let repo = format!("{}/slow.git", server.url);
    let s = paddock
        .create_session(&operator, source(repo.clone(), None))
        .await
        .unwrap();
    paddock
        .send_prompt(&operator, s.id, "go".into())
        .await
        .unwrap();
    let events = common::wait_idle(&paddock, s.id).await;
    let errors = common::errors(&events);
    assert!(
        errors.iter().any(|e| e.contains("took longer than 3 s")),
        "{errors:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let left = std::process::Command::new("pgrep")
        .args(["-af", &repo])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout), "", "still fetching");
}

#[tokio::test]
async fn stop_ends_a_run_waiting_for_its_clone_and_the_clone_goes_on() {
    let server = GitServer::start(None).await;
    server.repo("app.git", &[("README.md", b"# App\n")]);
    // Each request a second: the clone takes seconds.
    *server.delay.lock().unwrap() = Duration::from_secs(1);
    let (_model, url) = common::scripted(&json!([{"reply": "Read it."}]), Some("sk-test")).await;
    let (home, paddock) = common::with_model(&url, &[]).await;
    let operator = Caller::local_operator();
    let s = paddock
        .create_session(&operator, source(format!("{}/app.git", server.url), None))
        .await
        .unwrap();
    paddock
        .send_prompt(&operator, s.id, "Read the README.".into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    paddock.stop(&operator, s.id).await.unwrap();
    // Stopped while the clone still runs (the run used to wait for it)...
    let events = common::wait_idle(&paddock, s.id).await;
    assert!(
        matches!(&events.last().unwrap().kind, EventKind::Status { message: Some(m), .. } if m == "Stopped."),
        "{events:#?}"
    );
    assert!(workspace_events(&events).is_empty(), "{events:#?}");
    // ...which goes on, whole, for the next prompt.
    let readme = home.workspace(s.id).join("README.md");
    for _ in 0..200 {
        if readme.exists() && !workspace_events(&common::events(&paddock, s.id).await).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read_to_string(readme).unwrap(), "# App\n");
    paddock
        .send_prompt(&operator, s.id, "Read the README.".into())
        .await
        .unwrap();
    let events = common::wait_idle(&paddock, s.id).await;
    assert_eq!(common::errors(&events), Vec::<String>::new());
    assert_eq!(workspace_events(&events).len(), 1, "cloned once");
}

#[tokio::test]
async fn a_prompt_sent_while_the_workspace_is_cloned_is_the_next_runs() {
    let server = GitServer::start(None).await;
    server.repo("app.git", &[("README.md", b"# App\n")]);
    *server.delay.lock().unwrap() = Duration::from_secs(1);
    let (model, url) = common::scripted(
        &json!([
            {"expect": {"contains": ["Read the README."]}, "reply": "Read it."},
            {"expect": {"contains": ["And now?"]}, "reply": "Now this."}
        ]),
        Some("sk-test"),
    )
    .await;
    let (_home, paddock) = common::with_model(&url, &[]).await;
    let operator = Caller::local_operator();
    let s = paddock
        .create_session(&operator, source(format!("{}/app.git", server.url), None))
        .await
        .unwrap();
    paddock
        .send_prompt(&operator, s.id, "Read the README.".into())
        .await
        .unwrap();
    // Sent once the first run started, while it waits for its clone.
    let started = |events: &[app::domain::Event]| {
        events.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::Status {
                    status: SessionStatus::Running,
                    ..
                }
            )
        })
    };
    while !started(&common::events(&paddock, s.id).await) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    paddock
        .send_prompt(&operator, s.id, "And now?".into())
        .await
        .unwrap();
    let events = common::wait_idle(&paddock, s.id).await;
    assert_eq!(common::errors(&events), Vec::<String>::new());
    // The first run did not give it (it was answered twice: with the
    // first prompt, then again in the run its place in the queue made).
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert!(!requests[0].to_string().contains("And now?"));
    let last = requests[1]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"][0]["text"], "And now?", "{last}");
    // And the transcript shows it where its run starts.
    let shown = app::transcript::Transcript::build(&events);
    assert!(shown.items.iter().all(|i| !i.queued));
}

/// With sign-in on, a source is cloned only from public addresses and the
/// networks the operator names (`PADDOCK_EGRESS_NETWORKS`): a URL cannot
/// make the server fetch from its own network, by address or by name.
#[tokio::test]
async fn a_source_on_a_private_network_is_cloned_only_where_the_operator_allows() {
    use server::egress::Network;
    use server::git::{CloneLimits, GitError, HostRepo, Reach};
    let server = GitServer::start(None).await;
    server.repo("app.git", &[("README.md", b"# App\n")]);
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    let urls = [
        format!("{}/app.git", server.url),
        format!("http://localhost:{port}/app.git"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let clone = |name: String, url: &str, reach: Reach| {
        let repo = HostRepo {
            git_dir: dir.path().join(&name).join("git"),
            work_tree: dir.path().join(&name).join("work"),
        };
        std::fs::create_dir_all(&repo.work_tree).unwrap();
        let url = url.to_owned();
        async move {
            let limits = CloneLimits {
                max_bytes: 16 << 20,
                timeout: Duration::from_secs(60),
                reach,
            };
            repo.clone(&url, None, "paddock/test", None, limits).await
        }
    };
    let loopback: Vec<Network> = ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    for (i, url) in urls.iter().enumerate() {
        let refused = clone(format!("refused-{i}"), url, Reach::new(true, &[]))
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, GitError::Unreachable(m) if m.contains("a non-public address")),
            "{url}: {refused}"
        );
        assert!(refused.lasts());
        assert!(!dir.path().join(format!("refused-{i}/git")).exists());
        clone(format!("allowed-{i}"), url, Reach::new(true, &loopback))
            .await
            .unwrap();
        // Sign-in off (one person's own machine): anywhere.
        clone(format!("anywhere-{i}"), url, Reach::new(false, &[]))
            .await
            .unwrap();
    }
    // The git protocol looks its host up itself: by address only.
    let named = clone(
        "git-named".into(),
        "git://localhost/app.git",
        Reach::new(true, &[]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&named, GitError::Unreachable(m) if m.contains("give the host's address")),
        "{named}"
    );
}

/// A session from `spec`, its workspace prepared by a first prompt run
/// without an error.
async fn prepared(paddock: &Paddock, spec: NewSession) -> Session {
    let operator = Caller::local_operator();
    let s = paddock.create_session(&operator, spec).await.unwrap();
    paddock
        .send_prompt(&operator, s.id, "go".into())
        .await
        .unwrap();
    let events = common::wait_idle(paddock, s.id).await;
    assert!(
        common::errors(&events).is_empty(),
        "{:?}",
        common::errors(&events)
    );
    s
}

/// A repository with a branch named `paddock`, the first part of
/// Paddock's own (`paddock/<session>`), which git cannot keep beside it,
/// and one with branches under it (Paddock's pushes): each a source.
#[tokio::test]
async fn a_repository_with_a_branch_named_paddock_is_a_source() {
    let server = GitServer::start(None).await;
    let (_model, url) = common::scripted(
        &json!([{"reply": "Hi."}, {"reply": "Hi again."}]),
        Some("sk-test"),
    )
    .await;
    let (_home, paddock) = common::with_model(&url, &[]).await;
    let operator = Caller::local_operator();
    for (name, branch) in [
        ("branchy.git", "paddock"),
        ("pushed.git", "paddock/earlier"),
    ] {
        let bare = server.repo(name, &[("a.txt", b"a\n")]);
        git(&bare, &["branch", branch, "main"]);
        let s = prepared(&paddock, source(format!("{}/{name}", server.url), None)).await;
        let changes = paddock.changes(&operator, s.id).await.unwrap();
        assert_eq!(changes.branch, format!("paddock/{}", s.id));
    }
}

/// A source with a file named `.claude`, where Paddock's folder would go:
/// the instructions go to `CLAUDE.local.md` beside it; a skill, which needs
/// the folder, is refused for good, saying what is in the way (a write
/// failed each time, and every prompt cloned again).
#[tokio::test]
async fn a_file_named_dot_claude_in_the_source_is_left_in_place() {
    let server = GitServer::start(None).await;
    server.repo("dotfile.git", &[(".claude", b"not a folder\n")]);
    server.repo("negated.git", &[(".gitignore", b"!.claude/**\n")]);
    let (_model, url) = common::scripted(
        &json!([{"reply": "Hi."}, {"reply": "Hi again."}]),
        Some("sk-test"),
    )
    .await;
    let (home, paddock) = common::with_model(&url, &[]).await;
    let operator = Caller::local_operator();
    let repo = format!("{}/dotfile.git", server.url);

    let mut spec = source(repo.clone(), None);
    spec.instructions = Some("Be brief.".into());
    let s = prepared(&paddock, spec.clone()).await;
    let workspace = home.workspace(s.id);
    assert_eq!(
        std::fs::read_to_string(workspace.join("CLAUDE.local.md")).unwrap(),
        "Be brief."
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join(".claude")).unwrap(),
        "not a folder\n"
    );

    spec.skills = vec![app::skills::Skill {
        markdown: "---\nname: notes\ndescription: Takes notes.\n---\n\nWrite them down.\n".into(),
        files: vec![],
    }];
    // A repository whose .gitignore takes .claude back from the exclude
    // file: what Paddock wrote there is still not the agent's change.
    let mut negated = spec.clone();
    negated.source = source(format!("{}/negated.git", server.url), None).source;
    let n = paddock.create_session(&operator, negated).await.unwrap();
    paddock
        .send_prompt(&operator, n.id, "go".into())
        .await
        .unwrap();
    common::wait_idle(&paddock, n.id).await;
    assert!(home
        .workspace(n.id)
        .join(".claude/skills/notes/SKILL.md")
        .exists());
    let changes = paddock.changes(&operator, n.id).await.unwrap();
    assert!(changes.files.is_empty(), "{:?}", changes.files);

    let s = paddock.create_session(&operator, spec).await.unwrap();
    let note = Upload {
        path: "note.txt".into(),
        data: "hi\n".into(),
    };
    let refused = paddock.upload_files(&operator, s.id, vec![note]).await;
    assert!(
        matches!(&refused, Err(AppError::Conflict(m)) if m.contains("the source has a file at .claude")),
        "{refused:?}"
    );
}

/// A source whose `.claude/skills` is a link to a folder of the server's
/// host: the session's skills are refused for the link alike, whether a
/// folder of their name is there or not (the answer told which before).
#[tokio::test]
async fn a_link_where_skills_go_tells_nothing_of_the_host() {
    let server = GitServer::start(None).await;
    let bare = server.repo("linked.git", &[("README.md", b"# App\n")]);
    let work = tempfile::tempdir().unwrap();
    git(
        work.path(),
        &["clone", "-q", bare.to_str().unwrap(), "linked"],
    );
    let linked = work.path().join("linked");
    std::fs::create_dir(linked.join(".claude")).unwrap();
    std::os::unix::fs::symlink("/etc", linked.join(".claude/skills")).unwrap();
    git(&linked, &["add", "-A"]);
    git(&linked, &["commit", "-q", "-m", "A link"]);
    git(&linked, &["push", "-q", "origin", "main"]);
    let (_model, url) = common::scripted(&json!([]), Some("sk-test")).await;
    let (_home, paddock) = common::with_model(&url, &[]).await;
    let operator = Caller::local_operator();
    let mut said = Vec::new();
    // `/etc/ssl` is there on this host, the other not.
    for name in ["ssl", "no-such-folder-here"] {
        let spec = NewSession {
            skills: vec![app::skills::Skill {
                markdown: format!("---\nname: {name}\ndescription: d\n---\n"),
                files: Vec::new(),
            }],
            ..source(format!("{}/linked.git", server.url), None)
        };
        let s = paddock.create_session(&operator, spec).await.unwrap();
        paddock
            .send_prompt(&operator, s.id, "go".into())
            .await
            .unwrap();
        let errors = common::errors(&common::wait_idle(&paddock, s.id).await);
        assert!(
            !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| e.contains("a link at .claude/skills")),
            "{errors:?}"
        );
        said.push(errors[0].replace(name, "NAME"));
    }
    assert_eq!(said[0], said[1]);
}

/// A tree of many generated files (a dependency folder not ignored): the
/// first ones by path are listed, the rest counted.
#[tokio::test]
async fn many_changed_files_are_listed_up_to_a_bound_and_counted() {
    let server = GitServer::start(None).await;
    server.repo("small.git", &[("a.txt", b"a\n")]);
    let (_model, url) = common::scripted(&json!([{"reply": "Hi."}]), Some("sk-test")).await;
    let (_home, paddock) = common::with_model(&url, &[]).await;
    let s = prepared(&paddock, source(format!("{}/small.git", server.url), None)).await;
    as_agent(
        &s,
        "cd /workspace && mkdir deps && cd deps && seq -f 'f%05g' 5010 | xargs touch",
    );
    let changes = paddock
        .changes(&Caller::local_operator(), s.id)
        .await
        .unwrap();
    assert_eq!(changes.files.len(), app::changes::CHANGED_FILES_LISTED_MAX);
    assert_eq!(changes.more, 10);
    assert_eq!(changes.files[0].path, "deps/f00001");
    assert_eq!(changes.files.last().unwrap().path, "deps/f05000");
}

/// What commits write lands in the session's repository on the server's
/// disk, outside the workspace's limit: a commit that would make it hold
/// more than twice the source limit is refused, saying why, and commits
/// nothing; a small one goes in.
#[tokio::test]
async fn a_commit_that_would_make_the_repository_too_large_is_refused() {
    let server = GitServer::start(None).await;
    server.repo("small.git", &[("a.txt", b"a\n")]);
    let (_model, url) = common::scripted(&json!([{"reply": "Hi."}]), Some("sk-test")).await;
    let (_home, paddock) = common::with_model(&url, &["--source-max-mb=1"]).await;
    let operator = Caller::local_operator();
    let s = prepared(&paddock, source(format!("{}/small.git", server.url), None)).await;
    as_agent(
        &s,
        "cd /workspace && head -c 3000000 /dev/urandom > build.bin",
    );
    let refused = paddock
        .commit_changes(&operator, s.id, "The build".into())
        .await;
    assert!(
        matches!(&refused, Err(AppError::Invalid(m)) if m.contains(".gitignore")),
        "{refused:?}"
    );
    let changes = paddock.changes(&operator, s.id).await.unwrap();
    assert_eq!(
        changes.head_commit, changes.base_commit,
        "nothing committed"
    );
    as_agent(&s, "cd /workspace && rm build.bin && echo small > note.txt");
    paddock
        .commit_changes(&operator, s.id, "A note".into())
        .await
        .unwrap();
    // Near the most: what would pass it is refused, and a commit that only
    // removes never is.
    as_agent(
        &s,
        "cd /workspace && head -c 1500000 /dev/urandom > half.bin",
    );
    paddock
        .commit_changes(&operator, s.id, "Half".into())
        .await
        .unwrap();
    as_agent(
        &s,
        "cd /workspace && head -c 700000 /dev/urandom > more.bin",
    );
    let refused = paddock.commit_changes(&operator, s.id, "More".into()).await;
    assert!(matches!(&refused, Err(AppError::Invalid(_))), "{refused:?}");
    as_agent(&s, "cd /workspace && rm half.bin more.bin");
    paddock
        .commit_changes(&operator, s.id, "Less".into())
        .await
        .unwrap();
}
