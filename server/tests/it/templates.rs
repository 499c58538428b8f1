//! Agent templates over the REST API and the dashboard's server function,
//! against a real SQLite file and a real server: save, a new version per
//! edit, sessions made from one (recording its version, keeping their
//! settings when it changes), duplicate, export and import in JSON and
//! TOML, delete; bad input refused with nothing written.

use crate::common::{self, Home};
use app::agents::{AgentTemplate, TemplateSummary};
use app::domain::{Engine, Session};
use reqwest::{header, Client, Method, StatusCode};
use serde_json::{json, Value};

struct Api {
    url: String,
    http: Client,
}

impl Api {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }

    async fn ok<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> T {
        let (status, text) = self.send(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}

#[tokio::test]
async fn templates_are_versioned_make_sessions_and_travel_as_files() {
    let home = Home::new();
    let paddock = common::open(&home, "local", &[]).await;
    let served = common::serve(paddock.clone()).await;
    let api = Api {
        url: served.url.clone(),
        http: Client::new(),
    };

    // Refused, and nothing written.
    for (body, why) in [
        (json!({"name": ""}), "a name"),
        (json!({"name": "x", "shell": "rm"}), "unknown field"),
        (
            json!({"name": "x", "session": {"model": "bad model"}}),
            "model identifier",
        ),
        (
            json!({"name": "x", "session": {"env": [{"name": "PATH", "value": "/x"}]}}),
            "sandbox's own",
        ),
        (
            json!({"name": "x", "description": "x".repeat(3000)}),
            "description",
        ),
    ] {
        let (status, text) = api.send(Method::POST, "/api/templates", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains(why), "{why}: {text}");
    }
    let huge = json!({"name": "x", "session": {"system_prompt": "x".repeat(1600 * 1024)}});
    let (status, _) = api.send(Method::POST, "/api/templates", Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    for path in [
        "/api/templates/not-an-id",
        &format!("/api/templates/{}", uuid::Uuid::nil()),
    ] {
        let (status, _) = api.send(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let none: Vec<TemplateSummary> = api.ok(Method::GET, "/api/templates", None).await;
    assert!(none.is_empty());

    let t: AgentTemplate = api
        .ok(
            Method::POST,
            "/api/templates",
            Some(json!({
                "name": "Reviewer",
                "description": "Reads the code and says what it thinks.",
                "session": {
                    "model": "claude-opus-4-5",
                    "permission_mode": "read-only",
                    "system_prompt": "Be brief.",
                    "env": [{"name": "LANGUAGE", "value": "en"}]
                }
            })),
        )
        .await;
    assert_eq!(t.version, 1);
    let id = t.id;
    let v2: AgentTemplate = api
        .ok(
            Method::PUT,
            &format!("/api/templates/{id}"),
            Some(json!({"name": "Reviewer", "session": {"model": "claude-haiku-4-5", "permission_mode": "read-only"}})),
        )
        .await;
    assert_eq!((v2.id, v2.version), (id, 2));

    // A session from it: its settings, its version; a field given wins.
    let s: Session = api
        .ok(Method::POST, "/api/sessions", Some(json!({"template": id})))
        .await;
    assert_eq!(s.name, "Reviewer");
    assert_eq!(s.model, "claude-haiku-4-5");
    assert_eq!(s.permission_mode.as_str(), "read-only");
    let made_from = s.template.clone().unwrap();
    assert_eq!((made_from.id, made_from.version), (id, 2));
    let own: Session = api
        .ok(
            Method::POST,
            "/api/sessions",
            Some(json!({"name": "mine", "template": id, "model": "claude-sonnet-4-5"})),
        )
        .await;
    assert_eq!(
        (own.name.as_str(), own.model.as_str()),
        ("mine", "claude-sonnet-4-5")
    );
    // The dashboard's form, naming the agent.
    let res = api
        .http
        .post(format!("{}/api/create_session", api.url))
        .form(&[
            ("name", ""),
            ("template", &id.to_string()),
            ("model", "ignored-model"),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let from_form: Session = res.json().await.unwrap();
    assert_eq!(
        (from_form.name.as_str(), from_form.model.as_str()),
        ("Reviewer", "claude-haiku-4-5")
    );

    // A new version changes no session made before it.
    let _: AgentTemplate = api
        .ok(
            Method::PUT,
            &format!("/api/templates/{id}"),
            Some(json!({"name": "Reviewer", "session": {"model": "claude-opus-4-5", "secrets": ["NOT_SAVED"]}})),
        )
        .await;
    let again: Session = api
        .ok(Method::GET, &format!("/api/sessions/{}", s.id), None)
        .await;
    assert_eq!(
        (again.model.as_str(), again.template.unwrap().version),
        ("claude-haiku-4-5", 2)
    );
    let versions: Vec<TemplateSummary> = api
        .ok(Method::GET, &format!("/api/templates/{id}/versions"), None)
        .await;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [3, 2, 1]
    );
    // An older version, whole; one not kept, or not a number, is a 404.
    let second: AgentTemplate = api
        .ok(
            Method::GET,
            &format!("/api/templates/{id}/versions/2"),
            None,
        )
        .await;
    assert_eq!(second.version, 2);
    for missing in ["9", "two", "-1"] {
        let (status, text) = api
            .send(
                Method::GET,
                &format!("/api/templates/{id}/versions/{missing}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {text}");
    }
    // The version that names an unsaved secret makes no session.
    let (status, text) = api
        .send(Method::POST, "/api/sessions", Some(json!({"template": id})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("NOT_SAVED is not saved"), "{text}");

    // Files: exported in both formats, imported back as new templates.
    for format in ["toml", "json"] {
        let res = api
            .http
            .get(format!(
                "{}/api/templates/{id}/export?format={format}",
                api.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains(&format!("Reviewer.{format}")));
        let file = res.text().await.unwrap();
        assert!(
            file.contains("NOT_SAVED") && file.contains("claude-opus-4-5"),
            "{file}"
        );
        let res = api
            .http
            .post(format!("{}/api/templates/import", api.url))
            .body(file)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let imported: AgentTemplate = res.json().await.unwrap();
        assert_ne!(imported.id, id);
        assert_eq!(imported.version, 1);
        assert_eq!(
            imported.draft.session.model.as_deref(),
            Some("claude-opus-4-5")
        );
    }
    let (status, _) = api
        .send(
            Method::GET,
            &format!("/api/templates/{id}/export?format=yaml"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for garbage in [
        "name = [",
        "{\"name\": \"x\", \"secret_values\": {}}",
        "\u{0}\u{1}",
    ] {
        let res = api
            .http
            .post(format!("{}/api/templates/import", api.url))
            .body(garbage)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{garbage:?}");
    }

    let copy: AgentTemplate = api
        .ok(
            Method::POST,
            &format!("/api/templates/{id}/duplicate"),
            None,
        )
        .await;
    assert_eq!(copy.draft.name, "Reviewer (copy)");
    let all: Vec<TemplateSummary> = api.ok(Method::GET, "/api/templates", None).await;
    assert_eq!(all.len(), 4);
    // The list says what each is, without its settings.
    let listed = all.iter().find(|s| s.id == copy.id).unwrap();
    assert_eq!(
        (listed.name.as_str(), listed.model.as_deref(), listed.engine),
        ("Reviewer (copy)", Some("claude-opus-4-5"), Engine::Native)
    );

    // The dashboard's form writes an MCP server on one line: an argument
    // holding a space stays one while its line is kept as it was.
    let with_mcp: AgentTemplate = api
        .ok(
            Method::PUT,
            &format!("/api/templates/{}", copy.id),
            Some(
                json!({"name": "Reviewer (copy)", "session": {"mcp_servers": [
                    {"name": "gh", "command": "srv", "args": ["--header", "X-Team: core"]}
                ]}}),
            ),
        )
        .await;
    let form = |line: &str| {
        api.http
            .post(format!("{}/api/save_template", api.url))
            .form(&[
                ("id", with_mcp.id.to_string().as_str()),
                ("name", "Reviewer (copy)"),
                ("description", "Edited in the dashboard."),
                ("mcp_servers", line),
            ])
            .send()
    };
    for (line, args) in [
        (
            "gh srv --header X-Team: core",
            vec!["--header", "X-Team: core"],
        ),
        (
            "gh srv --header X-Team: ops",
            vec!["--header", "X-Team:", "ops"],
        ),
    ] {
        let res = form(line).await.unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        let saved: AgentTemplate = res.json().await.unwrap();
        assert_eq!(saved.draft.session.mcp_servers[0].args, args, "{line}");
    }

    // The newest 20 versions are kept.
    for _ in 0..20 {
        let _: AgentTemplate = api
            .ok(
                Method::PUT,
                &format!("/api/templates/{}", copy.id),
                Some(json!({"name": "Edited often"})),
            )
            .await;
    }
    let versions: Vec<TemplateSummary> = api
        .ok(
            Method::GET,
            &format!("/api/templates/{}/versions", copy.id),
            None,
        )
        .await;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (5..=24).rev().collect::<Vec<_>>()
    );
    // A person has at most 100; the next is refused, also as a copy.
    for n in all.len()..100 {
        let _: AgentTemplate = api
            .ok(
                Method::POST,
                "/api/templates",
                Some(json!({"name": format!("Agent {n}")})),
            )
            .await;
    }
    for (path, body) in [
        (
            "/api/templates".to_owned(),
            Some(json!({"name": "One more"})),
        ),
        (format!("/api/templates/{id}/duplicate"), None),
    ] {
        let (status, text) = api.send(Method::POST, &path, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {text}");
        assert!(text.contains("at most 100 agents"), "{text}");
    }
    let all: Vec<TemplateSummary> = api.ok(Method::GET, "/api/templates", None).await;
    assert_eq!(all.len(), 100);

    // Deleted: gone, and no session can start from it; the sessions made
    // from it stay, with their settings and their reference.
    let (status, _) = api
        .send(Method::DELETE, &format!("/api/templates/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (method, path, body) in [
        (Method::GET, format!("/api/templates/{id}"), None),
        (Method::DELETE, format!("/api/templates/{id}"), None),
        (
            Method::POST,
            "/api/sessions".to_owned(),
            Some(json!({"template": id})),
        ),
    ] {
        let (status, text) = api.send(method, &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {text}");
    }
    let kept: Session = api
        .ok(Method::GET, &format!("/api/sessions/{}", s.id), None)
        .await;
    assert_eq!(kept.template.unwrap().id, id);
}

/// Two people editing one agent: a save made from a version that is no
/// longer the current one is refused (412 `stale`), over the REST API with
/// `If-Match` and from the dashboard's form, and writes nothing.
#[tokio::test]
async fn a_save_from_an_older_version_is_refused() {
    let home = Home::new();
    let paddock = common::open(&home, "local", &[]).await;
    let served = common::serve(paddock.clone()).await;
    let api = Api {
        url: served.url.clone(),
        http: Client::new(),
    };
    let t: AgentTemplate = api
        .ok(
            Method::POST,
            "/api/templates",
            Some(json!({"name": "Shared"})),
        )
        .await;
    let path = format!("/api/templates/{}", t.id);
    let res = api
        .http
        .get(format!("{}{path}", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()[header::ETAG], "\"1\"");
    let put = |if_match: &'static str, name: &'static str| {
        api.http
            .put(format!("{}{path}", api.url))
            .header(header::IF_MATCH, if_match)
            .json(&json!({ "name": name }))
            .send()
    };
    let res = put("\"1\"", "First edit").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for (if_match, status, why) in [
        ("\"1\"", StatusCode::PRECONDITION_FAILED, "\"stale\""),
        ("W/\"1\"", StatusCode::PRECONDITION_FAILED, "at version 2"),
        ("one", StatusCode::BAD_REQUEST, "If-Match names a version"),
    ] {
        let res = put(if_match, "Lost edit").await.unwrap();
        assert_eq!(res.status(), status, "{if_match}");
        let text = res.text().await.unwrap();
        assert!(text.contains(why), "{if_match}: {text}");
    }
    let now: AgentTemplate = api.ok(Method::GET, &path, None).await;
    assert_eq!((now.version, now.draft.name.as_str()), (2, "First edit"));

    // The dashboard's form sends the version it shows.
    let form = |version: &'static str| {
        api.http
            .post(format!("{}/api/save_template", api.url))
            .form(&[
                ("id", t.id.to_string().as_str()),
                ("version", version),
                ("name", "From the form"),
            ])
            .send()
    };
    let res = form("1").await.unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    assert!(res.text().await.unwrap().contains("load it again"));
    let res = form("2").await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let saved: AgentTemplate = res.json().await.unwrap();
    assert_eq!(
        (saved.version, saved.draft.name.as_str()),
        (3, "From the form")
    );
    // Without a version (`*`, or none), a save is the next version.
    let res = put("*", "Whatever is there").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let versions: Vec<TemplateSummary> =
        api.ok(Method::GET, &format!("{path}/versions"), None).await;
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.name.as_str()))
            .collect::<Vec<_>>(),
        [
            (4, "Whatever is there"),
            (3, "From the form"),
            (2, "First edit"),
            (1, "Shared")
        ]
    );
}
