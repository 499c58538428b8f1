//! Instructions and skills in both engines: a session's `CLAUDE.md` and a
//! skill (with a script beside it) written into its workspace, and each
//! engine giving them to the model the way Claude Code does: Paddock's loop
//! through its system prompt and `skill` tool, the real Claude Code CLI
//! through its project memory and Skill tool. And skills as people add
//! them to an agent template: zips over REST, hostile ones refused.

use crate::common::{self, Home};
use app::domain::{Engine, NewSession};
use app::skills::{Skill, SkillFile};
use serde_json::json;

const INSTRUCTIONS: &str = "Answer tersely. Instructions canary 4c1f.";
const SKILL_MD: &str = "---\nname: pdf-fill\ndescription: Fills PDF forms (skill canary 9e2a).\n---\n\n# Filling\n\nRun the fill script: scripts/fill.sh.\n";

fn with_skill(engine: Engine) -> NewSession {
    NewSession {
        name: "skilled".into(),
        engine: Some(engine),
        permission_mode: Some("auto".parse().unwrap()),
        instructions: Some(INSTRUCTIONS.into()),
        skills: vec![Skill {
            markdown: SKILL_MD.into(),
            files: vec![SkillFile {
                path: "scripts/fill.sh".into(),
                content: "#!/bin/sh\necho filled\n".into(),
                base64: false,
                executable: true,
            }],
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn the_native_loop_lists_skills_loads_one_and_follows_the_instructions() {
    let (model, url) = common::scripted(
        &json!([
            {"expect": {"system_contains": [INSTRUCTIONS, "pdf-fill: Fills PDF forms (skill canary 9e2a)."], "tools": "skill"},
             "reply": [{"tool_use": {"name": "skill", "input": {"name": "pdf-fill"}}}]},
            {"expect": {"tool_result_contains": ["Run the fill script", "scripts/fill.sh", "Base directory for this skill: /workspace/.claude/skills/pdf-fill"]},
             "reply": [{"tool_use": {"name": "skill", "input": {"name": "pdf-fill", "file": "scripts/fill.sh"}}}]},
            {"expect": {"tool_result_contains": "echo filled"},
             "reply": [{"tool_use": {"name": "bash", "input": {"command": ".claude/skills/pdf-fill/scripts/fill.sh"}}}]},
            {"expect": {"tool_result_contains": "filled"},
             "reply": [{"tool_use": {"name": "skill", "input": {"name": "pdf-fill", "file": "../../../etc/passwd"}}}]},
            {"expect": {"tool_result_contains": "not a file of the skill"}, "reply": "Filled."}
        ]),
        Some("sk-test"),
    )
    .await;
    let (home, paddock) = common::with_model(&url, &[]).await;
    let s = common::create(&paddock, with_skill(Engine::Native)).await;
    assert_eq!(s.skills, ["pdf-fill"]);
    let events = common::run(&paddock, s.id, "Fill the form").await;
    assert_eq!(common::errors(&events), Vec::<String>::new());
    assert_eq!(model.turns_left(), 0);
    let ws = home.workspace(s.id);
    assert_eq!(
        std::fs::read_to_string(ws.join(".claude/CLAUDE.md")).unwrap(),
        INSTRUCTIONS
    );
    assert_eq!(
        std::fs::read_to_string(ws.join(".claude/skills/pdf-fill/SKILL.md")).unwrap(),
        SKILL_MD
    );
    use std::os::unix::fs::MetadataExt;
    let script = std::fs::metadata(ws.join(".claude/skills/pdf-fill/scripts/fill.sh")).unwrap();
    assert_eq!(script.mode() & 0o111, 0o111);
    assert!(events.iter().any(|e| matches!(&e.kind,
        app::domain::EventKind::Workspace { message } if message.contains("skills pdf-fill"))));
}

#[tokio::test]
async fn the_claude_code_cli_loads_the_same_instructions_and_skill() {
    let (model, url) = common::scripted(
        &json!([
            {"expect": {"contains": [INSTRUCTIONS, "pdf-fill: Fills PDF forms (skill canary 9e2a)."], "tools": "Skill"},
             "reply": [{"tool_use": {"name": "Skill", "input": {"skill": "pdf-fill"}}}]},
            {"expect": {"contains": "Run the fill script: scripts/fill.sh."}, "reply": "Filled."}
        ]),
        Some("sk-test"),
    )
    .await;
    let (_home, paddock) = common::with_model(&url, &[]).await;
    let s = common::create(&paddock, with_skill(Engine::ClaudeCode)).await;
    let events = common::run(&paddock, s.id, "Fill the form").await;
    assert_eq!(common::errors(&events), Vec::<String>::new(), "{events:#?}");
    assert_eq!(model.turns_left(), 0);
}

#[tokio::test]
async fn skills_are_added_to_an_agent_as_zips_and_hostile_ones_change_nothing() {
    use std::io::Write;
    let home = Home::new();
    let paddock = common::open(&home, "docker", &[]).await;
    let served = common::serve(paddock.clone()).await;
    let client = reqwest::Client::new();
    let t: serde_json::Value = client
        .post(served.url("/api/templates"))
        .json(&json!({"name": "Filler", "session": {"instructions": INSTRUCTIONS}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = t["id"].as_str().unwrap().to_owned();
    let zip = |entries: &[(&str, &[u8])]| {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            out.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(data).unwrap();
        }
        out.finish().unwrap().into_inner()
    };
    let upload = |body: Vec<u8>| {
        client
            .post(served.url(&format!("/api/templates/{id}/skills")))
            .header("content-type", "application/zip")
            .body(body)
            .send()
    };
    let res = upload(zip(&[
        ("pdf-fill/SKILL.md", SKILL_MD.as_bytes()),
        ("pdf-fill/scripts/fill.sh", b"#!/bin/sh\necho filled\n"),
    ]))
    .await
    .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let saved: serde_json::Value = res.json().await.unwrap();
    assert_eq!(saved["version"], 2);
    let skills = &saved["session"]["skills"];
    assert_eq!(skills[0]["files"][0]["path"], "scripts/fill.sh");

    for (what, body) in [
        (
            "climbs out",
            zip(&[("SKILL.md", SKILL_MD.as_bytes()), ("../x.sh", b"x")]),
        ),
        ("no SKILL.md", zip(&[("README.md", b"x")])),
        ("not a zip", b"PK\x03\x04 garbage".to_vec()),
        (
            "bad front matter",
            zip(&[("SKILL.md", b"# no front matter")]),
        ),
    ] {
        let res = upload(body).await.unwrap();
        assert_eq!(res.status(), 400, "{what}");
    }
    // A skill whose files would make the agent too large for its file
    // (control bytes are kept as text: six bytes each in JSON).
    let res = upload(zip(&[
        ("SKILL.md", SKILL_MD.as_bytes()),
        ("a.txt", &[1u8; 900 * 1024]),
    ]))
    .await
    .unwrap();
    assert_eq!(res.status(), 413, "{}", res.text().await.unwrap());
    // A stranger's template id is 404; the agent is still at version 2.
    let res = client
        .post(served.url(&format!("/api/templates/{}/skills", uuid::Uuid::now_v7())))
        .header("content-type", "application/zip")
        .body(zip(&[("SKILL.md", SKILL_MD.as_bytes())]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let now = template(&client, &served, &id).await;
    assert_eq!(now["version"], 2);

    // A session from the agent has its skill; removing it is a version.
    let s = common::create(
        &paddock,
        NewSession {
            template: Some(id.parse().unwrap()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(s.skills, ["pdf-fill"]);
    let res = client
        .delete(served.url(&format!("/api/templates/{id}/skills/pdf-fill")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .delete(served.url(&format!("/api/templates/{id}/skills/pdf-fill")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

/// A skill's `SKILL.md` edited in the dashboard: renaming it changes that
/// skill, its files kept; a name another skill has, or a skill that is not
/// there, is refused and changes nothing.
#[tokio::test]
async fn editing_a_skill_s_markdown_renames_that_skill_and_keeps_its_files() {
    let home = Home::new();
    let paddock = common::open(&home, "docker", &[]).await;
    let served = common::serve(paddock.clone()).await;
    let client = reqwest::Client::new();
    let other = "---\nname: csv-sum\ndescription: Sums CSV columns.\n---\nAdd them.\n";
    let t: serde_json::Value = client
        .post(served.url("/api/templates"))
        .json(&json!({"name": "Filler", "session": {"skills": [
            with_skill(Engine::Native).skills[0],
            {"markdown": other},
        ]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = t["id"].as_str().unwrap().to_owned();
    let save = |fields: Vec<(&'static str, String)>| {
        let mut form = vec![("id", id.clone())];
        form.extend(fields);
        client
            .post(served.url("/api/save_skill"))
            .form(&form)
            .send()
    };
    let renamed = SKILL_MD.replace("name: pdf-fill", "name: pdf-forms");
    let res = save(vec![
        ("markdown", renamed.clone()),
        ("replaces", "pdf-fill".into()),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let saved: serde_json::Value = res.json().await.unwrap();
    let skills = saved["session"]["skills"].as_array().unwrap();
    assert_eq!(skills.len(), 2, "{skills:?}");
    assert_eq!(skills[0]["markdown"], renamed.as_str());
    assert_eq!(skills[0]["files"][0]["path"], "scripts/fill.sh");

    for (fields, status) in [
        // Onto the other skill's name.
        (
            vec![
                ("markdown", other.to_owned()),
                ("replaces", "pdf-forms".to_owned()),
            ],
            409,
        ),
        // A skill the agent does not have.
        (
            vec![
                ("markdown", renamed.clone()),
                ("replaces", "pdf-fill".to_owned()),
            ],
            404,
        ),
    ] {
        let res = save(fields).await.unwrap();
        assert_eq!(res.status(), status, "{}", res.text().await.unwrap());
    }
    let now = template(&client, &served, &id).await;
    assert_eq!(now["version"], saved["version"]);

    // Written without naming one, a SKILL.md of a name the agent has
    // replaces that skill's, files kept; of a new name, adds a skill.
    let res = save(vec![(
        "markdown",
        renamed.replace("Run the", "Now run the"),
    )])
    .await
    .unwrap();
    let saved: serde_json::Value = res.json().await.unwrap();
    let skills = saved["session"]["skills"].as_array().unwrap();
    assert_eq!(skills.len(), 2, "{skills:?}");
    assert!(skills[0]["markdown"]
        .as_str()
        .unwrap()
        .contains("Now run the"));
    assert_eq!(skills[0]["files"][0]["path"], "scripts/fill.sh");
}

/// An agent template as the REST API gives it.
async fn template(
    client: &reqwest::Client,
    served: &common::Served,
    id: &str,
) -> serde_json::Value {
    client
        .get(served.url(&format!("/api/templates/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// In a session a delivery started, which asks before every tool its mode
/// does not allow, the skills Paddock writes grant themselves nothing: no
/// `allowed-tools` (run by the Claude Code CLI without asking while the
/// skill is active), no `hooks`.
#[tokio::test]
async fn the_skills_of_a_delivery_s_session_grant_themselves_nothing() {
    let home = Home::new();
    let paddock = common::open(&home, "docker", &[]).await;
    let granting = "---\nname: deploy\nallowed-tools: Bash\ndescription: Ships it.\nhooks:\n  Stop:\n    - command: curl x\n---\nShip.\n";
    let new = NewSession {
        name: "delivered".into(),
        skills: vec![Skill {
            markdown: granting.into(),
            files: Vec::new(),
        }],
        ..Default::default()
    };
    let trigger = app::domain::TriggerRef {
        id: uuid::Uuid::now_v7(),
        name: "hook".into(),
    };
    let s = paddock
        .start_session(&app::accounts::Caller::local_operator(), new, Some(trigger))
        .await
        .unwrap();
    let written = home.workspace(s.id).join(".claude/skills/deploy/SKILL.md");
    for _ in 0..300 {
        if written.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "---\nname: \"deploy\"\ndescription: \"Ships it.\"\n---\nShip.\n"
    );
}
