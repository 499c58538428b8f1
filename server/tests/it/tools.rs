//! The agent's built-in tools against a real Docker sandbox (started by
//! scripts/setup) and the project's agent image. No mocks.

use crate::common::DockerBox;
use app::domain::PermissionMode;
use serde_json::{json, Value};
use server::sandbox::{Limits, OutputStream};
use server::tools::{self, Access, ToolContext, ToolOutput};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

struct Env {
    docker: DockerBox,
    cancel: CancellationToken,
}

/// A started container for a fresh session.
async fn env() -> Env {
    Env {
        docker: DockerBox::start(Limits::default()).await,
        cancel: CancellationToken::new(),
    }
}

impl Env {
    fn ctx(&self) -> ToolContext<'_> {
        ToolContext {
            sandbox: &self.docker.sandbox,
            session: self.docker.session,
            cancel: &self.cancel,
            exec_timeout: Duration::from_secs(20),
            output_cap: 16 * 1024,
            env: &[],
        }
    }

    async fn call(&self, name: &str, input: Value) -> ToolOutput {
        tools::run(&self.ctx(), name, &input, &mut |_, _| {}).await
    }

    async fn ok(&self, name: &str, input: Value) -> String {
        let out = self.call(name, input.clone()).await;
        assert!(!out.is_error, "{name} {input}: {}", out.content);
        out.content
    }

    async fn err(&self, name: &str, input: Value) -> String {
        let out = self.call(name, input.clone()).await;
        assert!(out.is_error, "{name} {input} should fail: {}", out.content);
        out.content
    }

    /// The workspace folder on the host.
    fn root(&self) -> PathBuf {
        self.docker.workspace()
    }
}

fn names(defs: &[server::llm::ToolDef]) -> Vec<&str> {
    defs.iter().map(|d| d.name.as_str()).collect()
}

#[test]
fn definitions_follow_the_permission_mode() {
    let read_only = tools::definitions(PermissionMode::ReadOnly, false);
    assert_eq!(
        names(&read_only),
        ["read_file", "list_files", "glob", "grep"]
    );
    assert_eq!(
        names(&tools::definitions(PermissionMode::ReadOnly, true)),
        ["read_file", "list_files", "glob", "grep", "skill"],
        "a workspace with skills gets the skill tool, which only reads"
    );
    for mode in [
        PermissionMode::Ask,
        PermissionMode::AcceptEdits,
        PermissionMode::Auto,
    ] {
        let all = tools::definitions(mode, false);
        assert_eq!(
            names(&all),
            [
                "read_file",
                "write_file",
                "edit_file",
                "list_files",
                "glob",
                "grep",
                "bash"
            ]
        );
        for d in &all {
            let s = &d.input_schema;
            assert_eq!(s["type"], "object", "{}", d.name);
            assert!(s["properties"].is_object(), "{}", d.name);
            let required = s["required"].as_array().expect("required");
            for r in required {
                assert!(s["properties"].get(r.as_str().unwrap()).is_some());
            }
            assert!(d.description.len() > 40, "{}", d.name);
            for (_, p) in s["properties"].as_object().unwrap() {
                assert!(p["type"].is_string() && p["description"].is_string());
            }
        }
    }
    assert_eq!(tools::access("read_file"), Some(Access::Read));
    assert_eq!(tools::access("list_files"), Some(Access::Read));
    assert_eq!(tools::access("glob"), Some(Access::Read));
    assert_eq!(tools::access("grep"), Some(Access::Read));
    assert_eq!(tools::access("write_file"), Some(Access::Edit));
    assert_eq!(tools::access("edit_file"), Some(Access::Edit));
    assert_eq!(tools::access("bash"), Some(Access::Execute));
    assert_eq!(tools::access("rm_rf"), None);
}

#[tokio::test]
async fn file_tools_write_read_edit_and_list() {
    let e = env().await;
    let created = e
        .ok(
            "write_file",
            json!({"path": "src/deep/a.txt", "content": "one\ntwo\nthree\n"}),
        )
        .await;
    assert_eq!(created, "Created \"src/deep/a.txt\" (14 bytes).");
    let overwrote = e
        .ok(
            "write_file",
            json!({"path": "/workspace/src/deep/a.txt", "content": "alpha\nbeta\ngamma\n"}),
        )
        .await;
    assert!(overwrote.starts_with("Overwrote"), "{overwrote}");
    // The sandbox sees what the host-side tool wrote, and vice versa.
    let cat = e
        .ok("bash", json!({"command": "cat src/deep/a.txt; id -u"}))
        .await;
    assert_eq!(cat, "alpha\nbeta\ngamma\n10001\n");
    e.ok(
        "bash",
        json!({"command": "printf 'from\\nthe sandbox\\n' > made.txt"}),
    )
    .await;

    assert_eq!(
        e.ok("read_file", json!({"path": "./src/deep/a.txt"})).await,
        "     1\talpha\n     2\tbeta\n     3\tgamma\n"
    );
    assert_eq!(
        e.ok("read_file", json!({"path": "made.txt"})).await,
        "     1\tfrom\n     2\tthe sandbox\n"
    );
    let part = e
        .ok(
            "read_file",
            json!({"path": "src/deep/a.txt", "offset": 2, "limit": 1}),
        )
        .await;
    assert!(
        part.starts_with("     2\tbeta\n[showing lines 2-2 of 3"),
        "{part}"
    );
    assert!(part.contains("offset=3"), "{part}");
    let past = e
        .err("read_file", json!({"path": "src/deep/a.txt", "offset": 9}))
        .await;
    assert!(past.contains("past the end"), "{past}");

    // Long files: the default line limit and the output cap say how to go on.
    let long: String = (1..=3000).map(|n| format!("line {n}\n")).collect();
    e.ok("write_file", json!({"path": "long.txt", "content": long}))
        .await;
    let out = e.call("read_file", json!({"path": "long.txt"})).await;
    assert!(out.truncated && !out.is_error);
    assert!(
        out.content.len() <= 16 * 1024 + 200,
        "{}",
        out.content.len()
    );
    assert!(out.content.contains("the output limit was reached"));
    assert!(out.content.contains("pass offset="), "{}", out.content);
    let tail = e
        .call("read_file", json!({"path": "long.txt", "offset": 2990}))
        .await;
    assert!(!tail.truncated);
    assert!(tail.content.starts_with("  2990\tline 2990\n"));
    assert!(tail.content.ends_with("  3000\tline 3000\n"));

    // Binary files are refused.
    std::fs::write(e.root().join("blob.bin"), b"\x7fELF\0\0\x01binary").unwrap();
    let binary = e.err("read_file", json!({"path": "blob.bin"})).await;
    assert!(binary.contains("binary file"), "{binary}");
    assert!(e
        .err(
            "edit_file",
            json!({"path": "blob.bin", "old_string": "ELF", "new_string": "x"}),
        )
        .await
        .contains("binary"));

    // edit_file: exact, unique replacement.
    let code = "fn a() {\n    x();\n}\nfn b() {\n    x();\n}\n";
    e.ok("write_file", json!({"path": "lib.rs", "content": code}))
        .await;
    let not_unique = e
        .err(
            "edit_file",
            json!({"path": "lib.rs", "old_string": "    x();", "new_string": "    y();"}),
        )
        .await;
    assert!(not_unique.contains("occurs 2 times"), "{not_unique}");
    let edited = e
        .ok(
            "edit_file",
            json!({"path": "lib.rs", "old_string": "fn b() {\n    x();", "new_string": "fn b() {\n    z();"}),
        )
        .await;
    assert!(edited.contains("replaced 1 occurrence."), "{edited}");
    assert!(edited.contains("     5\t    z();"), "{edited}");
    let all = e
        .ok(
            "edit_file",
            json!({"path": "lib.rs", "old_string": "fn ", "new_string": "pub fn ", "replace_all": true}),
        )
        .await;
    assert!(all.contains("replaced 2 occurrences"), "{all}");
    assert_eq!(
        std::fs::read_to_string(e.root().join("lib.rs")).unwrap(),
        "pub fn a() {\n    x();\n}\npub fn b() {\n    z();\n}\n"
    );
    let missing = e
        .err(
            "edit_file",
            json!({"path": "lib.rs", "old_string": "nowhere", "new_string": "x"}),
        )
        .await;
    assert!(missing.contains("was not found"), "{missing}");
    let same = e
        .err(
            "edit_file",
            json!({"path": "lib.rs", "old_string": "x", "new_string": "x"}),
        )
        .await;
    assert!(same.contains("the same"), "{same}");
    let nofile = e
        .err(
            "edit_file",
            json!({"path": "nope.rs", "old_string": "a", "new_string": "b"}),
        )
        .await;
    assert!(
        nofile.contains("\"nope.rs\" does not exist") && nofile.contains("write_file"),
        "{nofile}"
    );
    // An edit that would make the file larger than a file may be read is
    // refused before it is made (in the server's memory), the file kept.
    let letters = "a".repeat(1 << 20);
    e.ok(
        "write_file",
        json!({"path": "letters.txt", "content": letters}),
    )
    .await;
    let huge = e
        .err(
            "edit_file",
            json!({"path": "letters.txt", "old_string": "a", "new_string": "b".repeat(1024), "replace_all": true}),
        )
        .await;
    assert!(
        huge.contains("would make \"letters.txt\" 1073741824 bytes"),
        "{huge}"
    );
    assert_eq!(
        std::fs::read_to_string(e.root().join("letters.txt")).unwrap(),
        letters
    );
    // Windows line ends are matched with the model's plain newlines.
    e.ok(
        "write_file",
        json!({"path": "win.txt", "content": "a\r\nb\r\nc\r\n"}),
    )
    .await;
    e.ok(
        "edit_file",
        json!({"path": "win.txt", "old_string": "a\nb", "new_string": "a\nB"}),
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(e.root().join("win.txt")).unwrap(),
        "a\r\nB\r\nc\r\n"
    );

    // list_files: folders with a slash, files with sizes.
    let listing = e.ok("list_files", json!({})).await;
    assert!(listing.contains("src/\n"), "{listing}");
    assert!(listing.contains("made.txt (17 bytes)\n"), "{listing}");
    assert_eq!(
        e.ok("list_files", json!({"path": "src/deep"})).await,
        "a.txt (17 bytes)\n"
    );
    assert!(e
        .err("list_files", json!({"path": "lib.rs"}))
        .await
        .contains("is not a directory"));
    assert!(e
        .err("read_file", json!({"path": "src"}))
        .await
        .contains("is a directory"));
    let gone = e.err("read_file", json!({"path": "gone.txt"})).await;
    assert_eq!(
        gone,
        "\"gone.txt\" does not exist. Check the path with list_files or glob."
    );
    assert!(e
        .err("list_files", json!({"path": "gone"}))
        .await
        .contains("does not exist"));
}

#[tokio::test]
async fn paths_outside_the_workspace_are_refused() {
    let e = env().await;
    let secret = e.docker.root.join("secret");
    std::fs::write(&secret, "s").unwrap();
    let root = e.root();
    std::os::unix::fs::symlink(&secret, root.join("host_link")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc_link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd_link")).unwrap();

    for path in ["../secret", "/etc/passwd", "/workspace/../etc/passwd"] {
        for (tool, input) in [
            ("read_file", json!({"path": path})),
            ("write_file", json!({"path": path, "content": "x"})),
            (
                "edit_file",
                json!({"path": path, "old_string": "a", "new_string": "b"}),
            ),
            ("list_files", json!({"path": path})),
            ("glob", json!({"pattern": "*", "path": path})),
            ("grep", json!({"pattern": "root", "path": path})),
        ] {
            let msg = e.err(tool, input).await;
            assert!(
                msg.contains("is outside the workspace"),
                "{tool} {path}: {msg}"
            );
        }
    }
    // Symlinks that point out: refused by the host-side tools...
    for link in ["host_link", "passwd_link"] {
        let msg = e.err("read_file", json!({"path": link})).await;
        assert!(msg.contains("outside the workspace"), "{msg}");
        let msg = e
            .err("write_file", json!({"path": link, "content": "pwned"}))
            .await;
        assert!(msg.contains("outside the workspace"), "{msg}");
    }
    assert!(e
        .err(
            "write_file",
            json!({"path": "etc_link/evil", "content": "x"})
        )
        .await
        .contains("outside the workspace"));
    assert!(e
        .err("list_files", json!({"path": "etc_link"}))
        .await
        .contains("outside the workspace"));
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s");
    // ...and by the searches in the sandbox, after resolving them there.
    for (tool, input) in [
        ("glob", json!({"pattern": "*", "path": "etc_link"})),
        ("grep", json!({"pattern": "root", "path": "etc_link"})),
        ("grep", json!({"pattern": "root", "path": "passwd_link"})),
    ] {
        let msg = e.err(tool, input.clone()).await;
        assert!(
            msg.contains("outside the workspace"),
            "{tool} {input}: {msg}"
        );
    }
    // A glob cannot climb out either.
    for pattern in ["../*", "src/../../*", "/etc/*"] {
        e.err("glob", json!({"pattern": pattern})).await;
    }
}

#[tokio::test]
async fn glob_and_grep_search_the_workspace() {
    let e = env().await;
    for (path, content) in [
        ("src/main.rs", "fn main() {\n    println!(\"Hello\");\n}\n"),
        ("src/util/mod.rs", "pub fn hello() {}\n"),
        ("web/app.ts", "const HELLO = 1;\n"),
        ("web/view.tsx", "export const x = 2;\n"),
        ("README.md", "# hello world\n"),
        (".github/ci.yml", "hello: ci\n"),
        ("dir with space/it's.rs", "// hello quoted\n"),
    ] {
        e.ok("write_file", json!({"path": path, "content": content}))
            .await;
    }

    assert_eq!(
        e.ok("glob", json!({"pattern": "**/*.rs"})).await,
        "dir with space/it's.rs\nsrc/main.rs\nsrc/util/mod.rs\n"
    );
    assert_eq!(
        e.ok("glob", json!({"pattern": "**/*.{ts,tsx}"})).await,
        "web/app.ts\nweb/view.tsx\n"
    );
    assert_eq!(
        e.ok("glob", json!({"pattern": "*", "path": "/workspace/src"}))
            .await,
        "src/main.rs\nsrc/util/\n"
    );
    assert_eq!(
        e.ok("glob", json!({"pattern": "/workspace/src/*.rs"}))
            .await,
        "src/main.rs\n"
    );
    assert_eq!(
        e.ok("glob", json!({"pattern": ".github/*"})).await,
        ".github/ci.yml\n"
    );
    // A pattern without wildcards finds the file if it is there.
    assert_eq!(
        e.ok("glob", json!({"pattern": "src/main.rs"})).await,
        "src/main.rs\n"
    );
    assert!(e
        .ok("glob", json!({"pattern": "src/nope.rs"}))
        .await
        .starts_with("No files match"));
    let none = e.ok("glob", json!({"pattern": "**/*.py"})).await;
    assert_eq!(none, "No files match \"**/*.py\" under /workspace.");
    assert!(e
        .err("glob", json!({"pattern": "*", "path": "nowhere"}))
        .await
        .contains("does not exist"));
    assert!(e
        .err("glob", json!({"pattern": "*", "path": "README.md"}))
        .await
        .contains("is not a directory"));

    // Many matches are capped, and say so.
    e.ok(
        "bash",
        json!({"command": "mkdir many && cd many && touch f{0001..1200}"}),
    )
    .await;
    let many = e.call("glob", json!({"pattern": "many/*"})).await;
    assert!(many.truncated && !many.is_error);
    assert!(many.content.starts_with("many/f0001\n"));
    assert!(
        many.content
            .contains("[1200 matches; showing the first 1000"),
        "{}",
        &many.content[many.content.len() - 200..]
    );

    assert_eq!(
        e.ok("grep", json!({"pattern": "hello", "path": "src"}))
            .await,
        "src/util/mod.rs:1:pub fn hello() {}\n"
    );
    assert_eq!(
        e.ok(
            "grep",
            json!({"pattern": "hello", "case_insensitive": true, "glob": "*.{rs,ts}"})
        )
        .await,
        "dir with space/it's.rs:1:// hello quoted\nsrc/main.rs:2:    println!(\"Hello\");\nsrc/util/mod.rs:1:pub fn hello() {}\nweb/app.ts:1:const HELLO = 1;\n"
    );
    assert_eq!(
        e.ok(
            "grep",
            json!({"pattern": "fn main\\(", "path": "/workspace/src/main.rs"})
        )
        .await,
        "src/main.rs:1:fn main() {\n"
    );
    // A pattern starting with a dash is a pattern, not an option.
    assert_eq!(
        e.ok("grep", json!({"pattern": "-n", "path": "."})).await,
        "No matches for \"-n\" in /workspace."
    );
    let no_match = e.call("grep", json!({"pattern": "zebra"})).await;
    assert!(!no_match.is_error);
    assert_eq!(no_match.content, "No matches for \"zebra\" in /workspace.");
    let bad = e.err("grep", json!({"pattern": "fn (("})).await;
    assert!(bad.contains("regex parse error"), "{bad}");
    assert!(e
        .err("grep", json!({"pattern": "x", "path": "missing.rs"}))
        .await
        .contains("does not exist"));
}

/// Values the model chose reach bash quoted: a search can only search.
#[tokio::test]
async fn hostile_search_input_runs_nothing() {
    let e = env().await;
    e.ok("write_file", json!({"path": "a.txt", "content": "x\n"}))
        .await;
    let hostile = [
        "$(touch /workspace/pwned)",
        "`touch /workspace/pwned`",
        "'; touch /workspace/pwned; '",
        "\"; touch /workspace/pwned; \"",
        "*'$(touch /workspace/pwned)'*",
        "x\ntouch /workspace/pwned\n",
        "a' `touch /workspace/pwned` 'b",
        "{a,$(touch /workspace/pwned)}",
        "\\'; touch /workspace/pwned #",
        "--pre=touch",
    ];
    for h in hostile {
        for (tool, input) in [
            ("glob", json!({"pattern": h})),
            ("glob", json!({"pattern": "*", "path": h})),
            ("grep", json!({"pattern": h})),
            ("grep", json!({"pattern": "x", "path": h})),
            ("grep", json!({"pattern": "x", "glob": h})),
        ] {
            let out = e.call(tool, input.clone()).await;
            assert!(
                !e.root().join("pwned").exists(),
                "{tool} {input} ran a command: {}",
                out.content
            );
        }
    }
    // They were searched for, as plain text.
    for h in hostile {
        let out = e.call("glob", json!({"pattern": h})).await;
        assert!(
            out.content.starts_with("No files match"),
            "{h}: {}",
            out.content
        );
        let out = e.call("glob", json!({"pattern": "*", "path": h})).await;
        assert!(
            out.content.contains("does not exist"),
            "{h}: {}",
            out.content
        );
        let out = e.call("grep", json!({"pattern": "x", "path": h})).await;
        assert!(
            out.content.contains("does not exist"),
            "{h}: {}",
            out.content
        );
    }
    let ls = e.ok("bash", json!({"command": "ls -A"})).await;
    assert_eq!(ls, "a.txt\n");
    // The check would have seen a command run.
    e.ok("bash", json!({"command": "touch /workspace/pwned"}))
        .await;
    assert!(e.root().join("pwned").exists());
}

#[tokio::test]
async fn bash_reports_exit_codes_timeouts_and_streams() {
    let e = env().await;
    let out = e
        .call("bash", json!({"command": "echo out; echo err >&2; exit 3"}))
        .await;
    assert!(out.is_error);
    assert!(out.content.ends_with("\n[exit code 3]"), "{}", out.content);
    assert!(out.content.contains("out\n") && out.content.contains("err\n"));
    assert_eq!(
        e.ok("bash", json!({"command": "true"})).await,
        "(no output)"
    );

    // Output streams to the sink as it comes.
    let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let sink_seen = seen.clone();
    let started = Instant::now();
    let out = tools::run(
        &e.ctx(),
        "bash",
        &json!({"command": "echo first; sleep 1; echo second"}),
        &mut move |stream, bytes| {
            assert_eq!(stream, OutputStream::Stdout);
            sink_seen
                .lock()
                .unwrap()
                .push((Instant::now(), String::from_utf8_lossy(bytes).into_owned()));
        },
    )
    .await;
    assert_eq!(out.content, "first\nsecond\n");
    let (first_at, first) = seen.lock().unwrap().first().cloned().unwrap();
    assert_eq!(first, "first\n");
    assert!(first_at - started < Duration::from_millis(900));

    // The model's timeout, capped by the session's.
    let out = e
        .call("bash", json!({"command": "sleep 30", "timeout": 1}))
        .await;
    assert!(out.is_error);
    assert_eq!(
        out.content,
        "[timed out after 1 s; the process tree was killed]"
    );
    let short = ToolContext {
        exec_timeout: Duration::from_secs(1),
        ..e.ctx()
    };
    let started = Instant::now();
    let out = tools::run(
        &short,
        "bash",
        &json!({"command": "echo begun; sleep 30", "timeout": 600}),
        &mut |_, _| {},
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        out.content,
        "begun\n[timed out after 1 s; the process tree was killed]"
    );

    // Stop cancels at once.
    let cancel = CancellationToken::new();
    let ctx = ToolContext {
        cancel: &cancel,
        ..e.ctx()
    };
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stopper.cancel();
    });
    let out = tools::run(
        &ctx,
        "bash",
        &json!({"command": "sleep 30"}),
        &mut |_, _| {},
    )
    .await;
    assert!(out.is_error);
    assert_eq!(out.content, "[cancelled]");

    // Long output is capped, head and tail kept.
    let out = e.call("bash", json!({"command": "seq 1 100000"})).await;
    assert!(out.truncated && !out.is_error);
    assert!(out.content.starts_with("1\n2\n"));
    assert!(out.content.ends_with("100000\n"));
    assert!(out.content.len() < 17 * 1024);
}

#[tokio::test]
async fn bad_input_and_unknown_tools_are_errors_for_the_model() {
    let e = env().await;
    let unknown = e.err("rm_rf", json!({})).await;
    assert!(
        unknown.starts_with("Unknown tool \"rm_rf\". The available tools are: read_file,"),
        "{unknown}"
    );
    let missing = e.err("read_file", json!({})).await;
    assert_eq!(
        missing,
        "Invalid input for read_file: \"path\" is a required property."
    );
    let typed = e
        .err(
            "write_file",
            json!({"path": 7, "content": ["a"], "mode": "x"}),
        )
        .await;
    assert!(
        typed.contains("\"path\" must be a string, not an integer"),
        "{typed}"
    );
    assert!(
        typed.contains("\"content\" must be a string, not an array"),
        "{typed}"
    );
    assert!(
        typed.contains("\"mode\" is not a property of write_file"),
        "{typed}"
    );
    assert!(e
        .err("bash", json!({"command": "true", "timeout": "10"}))
        .await
        .contains("\"timeout\" must be an integer, not a string"));
    assert!(e
        .err("bash", json!({"command": "true", "timeout": 0}))
        .await
        .contains("\"timeout\" must be at least 1"));
    assert!(e
        .err(
            "edit_file",
            json!({"path": "a", "old_string": "a", "new_string": "b", "replace_all": "yes"})
        )
        .await
        .contains("\"replace_all\" must be a boolean"));
    assert!(e
        .err("glob", json!("**/*"))
        .await
        .contains("the input must be a JSON object, not a string"));
    assert!(e.err("grep", Value::Null).await.contains("not null"));
    assert!(e
        .err("bash", json!({"command": "  "}))
        .await
        .contains("command is empty"));
    // Nothing was written by any of it.
    assert!(std::fs::read_dir(e.root()).unwrap().next().is_none());
}

#[test]
fn run_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let token = CancellationToken::new();
    let sandbox = server::sandbox::LocalSandbox::new(std::env::temp_dir());
    let ctx = ToolContext {
        sandbox: &sandbox,
        session: uuid::Uuid::now_v7(),
        cancel: &token,
        exec_timeout: Duration::from_secs(1),
        output_cap: 1024,
        env: &[],
    };
    let input = json!({});
    let mut sink = |_: OutputStream, _: &[u8]| {};
    let fut = tools::run(&ctx, "bash", &input, &mut sink);
    assert_send(&fut);
}

#[tokio::test]
async fn bash_runs_with_the_session_environment() {
    let e = env().await;
    let vars = [
        ("GREETING".to_owned(), "hello, world".to_owned()),
        ("QUOTED".to_owned(), "it's $(not run)".to_owned()),
    ];
    let ctx = ToolContext {
        env: &vars,
        ..e.ctx()
    };
    let out = tools::run(
        &ctx,
        "bash",
        &json!({"command": "echo \"$GREETING|$QUOTED|$LANG\""}),
        &mut |_, _| {},
    )
    .await;
    assert!(!out.is_error, "{}", out.content);
    assert_eq!(out.content, "hello, world|it's $(not run)|C.UTF-8\n");
    // Another command without them has none of them.
    let out = e
        .ok("bash", json!({"command": "echo \"${GREETING:-unset}\""}))
        .await;
    assert_eq!(out, "unset\n");
}
