//! The real `paddock` binary with sign-in on: the first admin made through
//! the setup link in its log, a canary API key saved through the dashboard's
//! server function that the model needs and that appears nowhere else (log,
//! database bytes, API answers, the sandbox) and still works after a
//! restart, a wrong master key refused at start, sign-in off refused on a
//! public address, and the `paddock user` command.

use crate::common::{self, paddock_command, start_with, Binary};
use app::accounts::{CredentialId, CredentialScope};
use app::domain::{EventKind, Session, SessionStatus};
use reqwest::{header, Client, StatusCode};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CANARY: &str = "sk-ant-canary-7f3e9d2b41c8a6e5d0f9b7c3a1e4d6f8";
const PASSWORD: &str = "a long enough password";

pub(crate) fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The setup link's token, once the log has it.
async fn setup_token(server: &Binary) -> String {
    for _ in 0..100 {
        // The link names the port Paddock got, not the 0 it asked for.
        let link = format!("{}/setup?token=", server.url);
        if let Some((_, rest)) = server.log().split_once(&link) {
            return rest.split_whitespace().next().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no setup link in the log: {}", server.log());
}

/// A signed-in admin's browser: its cookie, and every answer it was given.
pub(crate) struct Browser {
    pub(crate) url: String,
    pub(crate) cookie: String,
    pub(crate) answers: String,
}

impl Browser {
    pub(crate) async fn call(&mut self, function: &str, form: &[(&str, &str)]) -> String {
        let (status, body) = self.try_call(function, form).await;
        assert!(status.is_success(), "{function}: {status} {body}");
        body
    }

    /// A server function's status and answer, whatever they are.
    pub(crate) async fn try_call(
        &mut self,
        function: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let res = client()
            .post(format!("{}/api/{function}", self.url))
            .header(header::COOKIE, &self.cookie)
            .header(header::ORIGIN, &self.url)
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        self.answers.push_str(&body);
        (status, body)
    }

    pub(crate) async fn rest(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> String {
        let mut req = client()
            .request(method, format!("{}{path}", self.url))
            .header(header::COOKIE, &self.cookie)
            .header(header::ORIGIN, &self.url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        self.answers.push_str(&text);
        text
    }

    /// The transcript once the run of the prompt just sent has ended (its
    /// last event is the status a run ends with; before the run starts,
    /// the last is the prompt).
    pub(crate) async fn finished(&mut self, session: &Session) -> Vec<EventKind> {
        let id = session.id.to_string();
        for _ in 0..600 {
            let page: app::api::EventPage = serde_json::from_str(
                &self
                    .call("session_events", &[("id", &id), ("after", "0")])
                    .await,
            )
            .unwrap();
            let events: Vec<EventKind> = page.events.into_iter().map(|e| e.kind).collect();
            if matches!(
                events.last(),
                Some(EventKind::Status {
                    status: SessionStatus::Idle | SessionStatus::Error,
                    ..
                })
            ) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the session did not finish");
    }
}

async fn sign_in(url: &str, login: &str, password: &str) -> Option<String> {
    let res = client()
        .post(format!("{url}/auth/signin"))
        .header(header::ORIGIN, url)
        .form(&[("login", login), ("password", password)])
        .send()
        .await
        .unwrap();
    (res.status() == StatusCode::SEE_OTHER).then(|| {
        let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
        cookie.split(';').next().unwrap().to_owned()
    })
}

/// Every byte of the database's files.
pub(crate) fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("paddock.db")
        {
            bytes.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    bytes
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The environment of a session's container, as Docker keeps it.
pub(crate) fn container_env(session: &Session) -> String {
    let out = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{json .Config.Env}}",
            &format!("paddock-{}", session.id),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn bash(command: &str) -> serde_json::Value {
    json!({"reply": [{"tool_use": {"name": "bash", "input": {"command": command}}}]})
}

#[tokio::test]
async fn a_saved_key_is_used_and_never_shown_logged_stored_plain_or_put_in_a_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The model answers only to the canary key; the server has no key of
    // its own in its environment.
    let look = "env; tr '\\0' '\\n' < /proc/1/environ 2>/dev/null";
    let (_model, model_url) = common::scripted(
        &json!([
            bash(look), {"reply": "first run done"},
            {"reply": "after the restart"}
        ]),
        Some(CANARY),
    )
    .await;
    let env = [
        ("PADDOCK_AUTH", "on"),
        ("ANTHROPIC_BASE_URL", model_url.as_str()),
        ("RUST_LOG", "debug"),
    ];
    let server = start_with(dir, "127.0.0.1:0", &env);
    let url = server.url.clone();

    // The first admin, through the setup link; of two people racing to it,
    // one gets it.
    let token = setup_token(&server).await;
    let set_up = |login: &'static str| {
        client()
            .post(format!("{url}/auth/setup"))
            .header(header::ORIGIN, &url)
            .header(header::ACCEPT, "application/json")
            .form(&[
                ("token", token.as_str()),
                ("login", login),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ])
            .send()
    };
    let (first, second) = tokio::join!(set_up("admin"), set_up("other"));
    let mut statuses = [first.unwrap().status(), second.unwrap().status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::FORBIDDEN]);
    let admin_login = if sign_in(&url, "admin", PASSWORD).await.is_some() {
        "admin"
    } else {
        "other"
    };
    let cookie = sign_in(&url, admin_login, PASSWORD)
        .await
        .expect("signed in");
    let mut admin = Browser {
        url: url.clone(),
        cookie,
        answers: String::new(),
    };
    // The setup link works once.
    let again = client()
        .post(format!("{url}/auth/setup"))
        .header(header::ORIGIN, &url)
        .header(header::ACCEPT, "application/json")
        .form(&[
            ("token", token.as_str()),
            ("login", "eve"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert!(again.status().is_client_error(), "{}", again.status());

    let saved = admin
        .call(
            "save_credential",
            &[
                ("scope", "server"),
                ("kind", "anthropic_api_key"),
                ("value", CANARY),
            ],
        )
        .await;
    assert!(
        saved.contains(&CANARY[CANARY.len() - 4..]),
        "a hint: {saved}"
    );
    admin.call("list_credentials", &[]).await;

    let session: Session = serde_json::from_str(
        &admin
            .rest(
                reqwest::Method::POST,
                "/api/sessions",
                Some(json!({"name": "canary", "permission_mode": "auto"})),
            )
            .await,
    )
    .unwrap();
    admin
        .rest(
            reqwest::Method::POST,
            &format!("/api/sessions/{}/prompt", session.id),
            Some(json!({"text": "look around"})),
        )
        .await;
    let events = admin.finished(&session).await;
    let said: Vec<String> = events
        .iter()
        .filter_map(|k| match k {
            EventKind::AssistantText { text } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert!(
        said.iter().any(|t| t.contains("first run done")),
        "{events:?}"
    );
    let tool_output = serde_json::to_string(&events).unwrap();
    assert!(
        !tool_output.contains(CANARY),
        "the sandbox saw it: {tool_output}"
    );
    assert!(
        tool_output.contains("PATH="),
        "the command ran: {tool_output}"
    );
    assert!(!container_env(&session).contains(CANARY));

    // After a restart, the key is unsealed again from the store.
    let log = server.log();
    drop(server);
    let server = start_with(dir, "127.0.0.1:0", &env);
    admin.url = server.url.clone();
    admin.cookie = sign_in(&server.url, admin_login, PASSWORD).await.unwrap();
    admin
        .rest(
            reqwest::Method::POST,
            &format!("/api/sessions/{}/prompt", session.id),
            Some(json!({"text": "again"})),
        )
        .await;
    let events = admin.finished(&session).await;
    assert!(
        serde_json::to_string(&events)
            .unwrap()
            .contains("after the restart"),
        "{events:?}"
    );
    let log = log + &server.log();
    drop(server);

    assert!(log.contains("listening on"), "the log is read: {log}");
    assert!(!log.contains(CANARY), "logged: {log}");
    assert!(
        !admin.answers.contains(CANARY),
        "answered: {}",
        admin.answers
    );
    assert!(
        !contains(&database_bytes(dir), CANARY),
        "stored in plain text"
    );

    // Another master key opens nothing.
    std::fs::write(dir.join("master.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    let out = paddock_command(
        dir,
        &[("PADDOCK_AUTH", "on"), ("PADDOCK_ADDR", "127.0.0.1:0")],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(said.to_lowercase().contains("master key"), "{said}");
}

#[test]
fn sign_in_off_is_refused_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = paddock_command(
        dir.path(),
        &[("PADDOCK_AUTH", "off"), ("PADDOCK_ADDR", "0.0.0.0:0")],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("PADDOCK_AUTH"), "{said}");
}

/// Runs `paddock ARGS` on `dir`'s database with `stdin` as its input.
fn paddock_cli(dir: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = paddock_command(dir, &[])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[tokio::test]
async fn the_user_command_adds_lists_and_disables_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (ok, said) = paddock_cli(
        dir,
        &["user", "add", "root", "--role", "admin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{said}");
    assert!(said.contains("Made a new database"), "{said}");
    let (ok, said) = paddock_cli(
        dir,
        &["user", "add", "alice", "--name", "Alice A."],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok && !said.contains("Made a new database"), "{said}");
    let (ok, said) = paddock_cli(dir, &["user", "add", "alice"], &format!("{PASSWORD}\n"));
    assert!(!ok && said.contains("taken"), "{said}");
    // Taken, whatever came on stdin: nothing read or made for it.
    let (ok, said) = paddock_cli(dir, &["user", "add", "alice"], "");
    assert!(!ok && said.contains("taken"), "{said}");
    let (ok, said) = paddock_cli(dir, &["user", "add", "bob"], "short\n");
    assert!(!ok, "a short password is refused: {said}");
    let (ok, said) = paddock_cli(dir, &["user", "add", "bob"], "");
    assert!(!ok && said.contains("no password came on stdin"), "{said}");
    let (ok, said) = paddock_cli(dir, &["user", "list"], "");
    assert!(
        ok && said.contains("root") && said.contains("admin"),
        "{said}"
    );
    assert!(
        said.contains("Alice A.") && said.contains("member"),
        "{said}"
    );
    assert!(!said.contains("bob"), "{said}");

    let server = start_with(dir, "127.0.0.1:0", &[("PADDOCK_AUTH", "on")]);
    assert!(
        !server.log().contains("/setup?token="),
        "an account exists: no setup link"
    );
    let cookie = sign_in(&server.url, "alice", PASSWORD)
        .await
        .expect("alice signs in");
    let (ok, said) = paddock_cli(dir, &["user", "disable", "alice"], "");
    assert!(ok, "{said}");
    // The last admin cannot be disabled.
    let (ok, said) = paddock_cli(dir, &["user", "disable", "root"], "");
    assert!(!ok && said.contains("last active admin"), "{said}");
    // Disabled: her browser session ends, and she cannot sign in again.
    let res = client()
        .get(format!("{}/api/sessions", server.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(sign_in(&server.url, "alice", PASSWORD).await.is_none());
    let (ok, said) = paddock_cli(
        dir,
        &["user", "reset-password", "alice"],
        "another long password\n",
    );
    assert!(ok, "{said}");
    let (ok, said) = paddock_cli(dir, &["user", "enable", "alice"], "");
    assert!(ok, "{said}");
    assert!(sign_in(&server.url, "alice", "another long password")
        .await
        .is_some());
    assert!(sign_in(&server.url, "alice", PASSWORD).await.is_none());
}

#[tokio::test]
async fn the_credentials_command_saves_lists_and_rotates_and_the_key_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The command prints the secret reversed: the value opened after the
    // rotation reached it (and the transcript masks only the value itself).
    let (_model, model_url) = common::scripted(
        &json!([
            bash("printf %s \"$ROTATED_SECRET\" | rev"),
            {"expect": {"tool_result_contains": "eulav-terces-detator"}, "reply": "rotated and fine"}
        ]),
        Some(CANARY),
    )
    .await;
    let (ok, said) = paddock_cli(
        dir,
        &["credentials", "set", "anthropic_api_key"],
        &format!("{CANARY}\n"),
    );
    assert!(ok, "{said}");
    assert!(!said.contains(CANARY), "{said}");
    let (ok, said) = paddock_cli(
        dir,
        &["credentials", "set", "secret", "--name", "ROTATED_SECRET"],
        "rotated-secret-value\n",
    );
    assert!(ok, "{said}");
    let (ok, said) = paddock_cli(dir, &["credentials", "set", "secret"], "no-name-value\n");
    assert!(!ok && said.contains("--name"), "{said}");
    let (ok, said) = paddock_cli(dir, &["credentials", "set", "no_such_kind"], "x\n");
    assert!(!ok, "{said}");
    let (ok, said) = paddock_cli(
        dir,
        &[
            "credentials",
            "set",
            "anthropic_api_key",
            "--user",
            "nobody",
        ],
        "x\n",
    );
    assert!(!ok, "{said}");
    let (ok, listed) = paddock_cli(dir, &["credentials", "list"], "");
    assert!(
        ok && listed.contains("server")
            && listed.contains(&CANARY[CANARY.len() - 4..])
            && listed.contains("secret/ROTATED_SECRET"),
        "{listed}"
    );
    assert!(!listed.contains(CANARY), "{listed}");
    assert!(!listed.contains("rotated-secret-value"), "{listed}");

    let old_key = std::fs::read_to_string(dir.join("master.key")).unwrap();
    let (ok, said) = paddock_cli(dir, &["credentials", "rotate-master-key"], "");
    assert!(ok, "{said}");
    assert_ne!(
        std::fs::read_to_string(dir.join("master.key")).unwrap(),
        old_key
    );
    assert!(!contains(&database_bytes(dir), CANARY));
    assert!(!contains(&database_bytes(dir), "rotated-secret-value"));
    // A rotation whose rename never happened (the key file a platform's
    // read-only mount, or the command killed after its commit): run again,
    // it finishes that rename rather than lose the only copy of the key.
    let (key, staged) = (dir.join("master.key"), dir.join("master.key.new"));
    let sealed_under = std::fs::read_to_string(&key).unwrap();
    std::fs::rename(&key, &staged).unwrap();
    std::fs::write(&key, &old_key).unwrap();
    let (ok, said) = paddock_cli(dir, &["credentials", "rotate-master-key"], "");
    assert!(ok, "{said}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), sealed_under);
    assert!(!staged.exists());
    // One left by a rotation that never committed is not the database's:
    // kept, and nothing changes.
    std::fs::write(&staged, &old_key).unwrap();
    let (ok, said) = paddock_cli(dir, &["credentials", "rotate-master-key"], "");
    assert!(!ok && said.contains("did not finish"), "{said}");
    assert_eq!(std::fs::read_to_string(&staged).unwrap(), old_key);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), sealed_under);
    std::fs::remove_file(&staged).unwrap();

    // The server opens the key and the secret re-sealed under the new master key.
    let server = start_with(
        dir,
        "127.0.0.1:0",
        &[
            ("PADDOCK_SANDBOX", "local"),
            ("ANTHROPIC_BASE_URL", model_url.as_str()),
        ],
    );
    let http = client();
    let session: Session = http
        .post(format!("{}/api/sessions", server.url))
        .json(&json!({"name": "rotated", "permission_mode": "auto", "secrets": ["ROTATED_SECRET"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = http
        .post(format!("{}/api/sessions/{}/prompt", server.url, session.id))
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mut said = String::new();
    for _ in 0..300 {
        said = http
            .post(format!("{}/api/session_events", server.url))
            .form(&[("id", session.id.to_string().as_str()), ("after", "0")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if said.contains("rotated and fine") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(said.contains("rotated and fine"), "{said}");
    // A trigger, whose secret is sealed under the key of now.
    let template: serde_json::Value = http
        .post(format!("{}/api/templates", server.url))
        .json(&json!({"name": "hooked"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let made: app::triggers::TriggerSecret = http
        .post(format!(
            "{}/api/templates/{}/triggers",
            server.url,
            template["id"].as_str().unwrap()
        ))
        .json(&json!({"name": "hook", "prompt": "{{ payload.task }}"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Rotated again while it runs: it seals nothing more under its old key.
    let (ok, said) = paddock_cli(dir, &["credentials", "rotate-master-key"], "");
    assert!(ok, "{said}");
    // And a genuine delivery to the trigger, whose secret it can no longer
    // open, is put off (503), not refused as forged.
    let body = r#"{"task": "hi"}"#;
    let at = chrono::Utc::now().timestamp();
    let secret = made.secret.as_deref().unwrap();
    let signature =
        server::triggers::standard_webhooks::sign(secret, "msg_1", at, body.as_bytes()).unwrap();
    let res = http
        .post(format!("{}{}", server.url, made.path))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", at.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let res = http
        .post(format!("{}/api/save_credential", server.url))
        .form(&[
            ("scope", "server"),
            ("kind", "secret"),
            ("name", "LATE"),
            ("value", "late-secret-value"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.text().await.unwrap().contains("restart it"));
    // A secret saved before is there, and says why it cannot be used (not
    // that it is gone, which saving it again would not mend).
    let res = http
        .post(format!("{}/api/sessions", server.url))
        .json(&json!({"name": "later", "secrets": ["ROTATED_SECRET"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let said = res.text().await.unwrap();
    assert!(said.contains("restart Paddock"), "{said}");
    drop(server);

    let (ok, said) = paddock_cli(dir, &["credentials", "delete", "anthropic_api_key"], "");
    assert!(ok, "{said}");
    let (ok, said) = paddock_cli(
        dir,
        &[
            "credentials",
            "delete",
            "secret",
            "--name",
            "ROTATED_SECRET",
        ],
        "",
    );
    assert!(ok, "{said}");
    let (_, listed) = paddock_cli(dir, &["credentials", "list"], "");
    assert!(!listed.contains("server"), "{listed}");
}

#[tokio::test]
async fn a_model_key_set_empty_is_no_key() {
    let home = common::Home::new();
    let blank = [
        "--anthropic-api-key=".to_owned(),
        "--anthropic-auth-token= ".to_owned(),
    ];
    let paddock = common::open(&home, "local", &blank).await;
    assert!(!paddock.vault.has_llm_credential(None).await.unwrap());
    // One person's own key runs their sessions only: another is still told
    // theirs would fail; the server's runs everyone's.
    let (ann, bob) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let save = |scope| {
        let paddock = paddock.clone();
        async move {
            paddock
                .vault
                .save_audited(
                    &paddock.auth,
                    "test",
                    None,
                    CredentialId::model_key(scope),
                    "sk-ant-someones-1234",
                )
                .await
                .unwrap();
        }
    };
    save(CredentialScope::User(ann)).await;
    let has = |who| {
        let paddock = paddock.clone();
        async move { paddock.vault.has_llm_credential(who).await.unwrap() }
    };
    assert!(has(Some(ann)).await);
    assert!(!has(Some(bob)).await && !has(None).await);
    save(CredentialScope::Server).await;
    assert!(has(Some(bob)).await && has(None).await);
    let set = ["--anthropic-api-key=sk-ant-given".to_owned()];
    let home = common::Home::new();
    let paddock = common::open(&home, "local", &set).await;
    assert!(paddock.vault.has_llm_credential(None).await.unwrap());
}
