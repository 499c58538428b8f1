//! MCP servers in both engines, with a real one from a registry
//! (`mcp-server-time`, installed into the agent image by its build)
//! running inside the session's sandbox: the native loop as an `rmcp`
//! client over the server's stdin and stdout, each call asked for in a
//! mode that asks; the Claude Code CLI through `--mcp-config`. Servers that
//! exit, print garbage, are not there or never answer are errors the run
//! goes on past.

use crate::common::{self, Home};
use app::accounts::Caller;
use app::api::Backend;
use app::domain::{Decision, Engine, Event, EventKind, McpServer, NewSession, SessionStatus};
use paddock_model::ScriptedModel;
use serde_json::json;

fn server(name: &str, command: &str, args: &[&str]) -> McpServer {
    McpServer {
        name: name.into(),
        command: command.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
    }
}

fn time_server() -> McpServer {
    server("time", "mcp-server-time", &["--local-timezone", "UTC"])
}

/// A server made with the MCP Python SDK (the one `mcp-server-time` runs
/// on) that offers 64 tools of some 4 KB each: more than every model call
/// can carry.
fn wide_server() -> McpServer {
    server(
        "wide",
        "/opt/mcp/bin/python",
        &[
            "-c",
            "from mcp.server.mcpserver import MCPServer\n\
             server = MCPServer('wide')\n\
             def echo(text: str) -> str:\n    return text\n\
             for i in range(64):\n    \
                 server.add_tool(echo, name=f'tool_{i:02}', description='Echoes. ' + 'x' * 4000)\n\
             server.run()\n",
        ],
    )
}

#[tokio::test]
async fn the_native_loop_calls_a_real_mcp_server_under_the_permission_mode() {
    let (model, url) = common::scripted(
        &json!([
            {"expect": {"tools": ["mcp__time__get_current_time", "mcp__time__convert_time", "mcp__wide__tool_00", "bash"]},
             "reply": [{"tool_use": {"name": "mcp__time__get_current_time", "input": {"timezone": "Europe/Paris"}}}]},
            {"expect": {"tool_result_contains": "Europe/Paris"},
             "reply": [{"tool_use": {"name": "mcp__time__get_current_time", "input": {"timezone": "Not/A_Zone"}}}]},
            {"expect": {"tool_result_contains": "Not/A_Zone"}, "reply": "It is late in Paris."}
        ]),
        Some("sk-test"),
    )
    .await;
    let (_home, paddock) = common::with_model(&url, &[]).await;
    let operator = Caller::local_operator();
    let s = common::create(
        &paddock,
        NewSession {
            name: "mcp".into(),
            permission_mode: Some("ask".parse().unwrap()),
            mcp_servers: vec![
                time_server(),
                server("gone", "false", &[]),
                server("noisy", "sh", &["-c", "echo this is not json-rpc"]),
                server("missing", "no-such-mcp-server", &[]),
                // Never answers initialize: given up after 30 s.
                server("silent", "sleep", &["600"]),
                wide_server(),
            ],
            ..Default::default()
        },
    )
    .await;
    paddock
        .send_prompt(&operator, s.id, "What time is it in Paris?".into())
        .await
        .unwrap();
    // Both calls are asked for, like any tool that could change things.
    for n in 1..=2 {
        let requests = common::wait_for_permissions(&paddock, s.id, n).await;
        let (request, tool) = requests[n - 1].clone();
        assert_eq!(tool, "mcp__time__get_current_time");
        paddock
            .decide(&operator, s.id, request, Decision::Allow, None)
            .await
            .unwrap();
    }
    let events = common::wait_idle(&paddock, s.id).await;
    assert_eq!(model.turns_left(), 0, "{events:#?}");
    let errors = common::errors(&events);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("The MCP server silent did not start")
                && e.contains("did not answer initialize within 30 s")),
        "{errors:?}"
    );
    for name in ["gone", "noisy", "missing"] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("The MCP server {name} did not start"))),
            "{name}: {errors:?}"
        );
    }
    assert!(!errors.iter().any(|e| e.contains("time")), "{errors:?}");
    // Of the wide server's tools, those that fit in what a call may carry.
    assert!(
        errors.iter().any(
            |e| e.contains("Tools of the MCP server wide are not offered")
                && e.contains("tool_63")
                && e.contains("128 KiB")
        ),
        "{errors:?}"
    );
    let request = &model.requests()[0];
    let offered: Vec<&serde_json::Value> = request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with("mcp__"))
        .collect();
    let carried = serde_json::to_string(&offered).unwrap().len();
    assert!(
        offered.len() > 20 && carried <= 132 * 1024,
        "{} tools, {carried} bytes",
        offered.len()
    );
    let results: Vec<(String, bool)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult {
                output, is_error, ..
            } => Some((output.clone(), *is_error)),
            _ => None,
        })
        .collect();
    assert!(
        results[0].0.contains("Europe/Paris") && !results[0].1,
        "{results:?}"
    );
    assert!(
        results[1].1,
        "a bad time zone is the tool's error: {results:?}"
    );
    // The servers ended with the run.
    let left = std::process::Command::new("docker")
        .args([
            "exec",
            &format!("paddock-{}", s.id),
            "pgrep",
            "-f",
            "mcp-server-time",
        ])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[tokio::test]
async fn the_claude_code_cli_calls_the_same_mcp_server() {
    let (model, url) = common::scripted(
        &json!([
            {"expect": {"tools": "mcp__time__get_current_time"},
             "reply": [{"tool_use": {"name": "mcp__time__get_current_time", "input": {"timezone": "Asia/Tokyo"}}}]},
            {"expect": {"tool_result_contains": "Asia/Tokyo"}, "reply": "It is morning in Tokyo."}
        ]),
        Some("sk-test"),
    )
    .await;
    let (_home, paddock) = common::with_model(&url, &[]).await;
    let s = common::create(
        &paddock,
        NewSession {
            name: "cc mcp".into(),
            engine: Some(Engine::ClaudeCode),
            permission_mode: Some("auto".parse().unwrap()),
            mcp_servers: vec![time_server()],
            ..Default::default()
        },
    )
    .await;
    let events = common::run(&paddock, s.id, "What time is it in Tokyo?").await;
    assert_eq!(common::errors(&events), Vec::<String>::new(), "{events:#?}");
    assert_eq!(model.turns_left(), 0);
}

#[tokio::test]
async fn mcp_server_settings_are_checked() {
    let home = Home::new();
    let paddock = common::open(&home, "docker", &[]).await;
    let operator = Caller::local_operator();
    // Each within its own bound, together past what one argument of a
    // command line (the CLI's --mcp-config) can carry, as written or once
    // written as JSON.
    let wide = |name: &str, arg: &str| McpServer {
        args: vec![arg.repeat(4000 / arg.len()); 10],
        ..server(name, "x", &[])
    };
    let three = vec![wide("a", "y"), wide("b", "y"), wide("c", "y")];
    let escaped = vec![wide("a", "\u{1}")];
    for bad in [
        three,
        escaped,
        vec![server("a__b", "x", &[])],
        vec![server("", "x", &[])],
        vec![server("ok", " ", &[])],
        vec![server("ok", "x", &["\0"])],
        vec![server("same", "x", &[]), server("same", "y", &[])],
    ] {
        let refused = paddock
            .create_session(
                &operator,
                NewSession {
                    name: "bad".into(),
                    mcp_servers: bad.clone(),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(refused, Err(app::domain::AppError::Invalid(_))),
            "{bad:?}"
        );
    }
    assert!(paddock.list_sessions(&operator).await.unwrap().is_empty());
}

/// A server whose answer is longer than a message may be (9 MB of text):
/// the call fails at once, saying so, rather than waiting out the
/// command's time limit for an answer that was dropped.
#[tokio::test]
async fn an_answer_over_the_message_limit_fails_the_call_at_once() {
    let big = server(
        "big",
        "/opt/mcp/bin/python",
        &[
            "-c",
            "from mcp.server.mcpserver import MCPServer\n\
             server = MCPServer('big')\n\
             def big() -> str:\n    return 'x' * 9_000_000\n\
             server.add_tool(big, name='big', description='Says a lot.')\n\
             server.run()\n",
        ],
    );
    called_once(big, "mcp__big__big", "failed the call").await;
}

/// A native run in `auto` mode of one MCP server whose model calls `tool`
/// once and is given a result that holds `result`; it ends without errors.
async fn called_once(mcp: McpServer, tool: &str, result: &str) {
    let (model, events) = auto_run(
        mcp,
        json!([
            {"reply": [{"tool_use": {"name": tool, "input": {}}}]},
            {"expect": {"tool_result_contains": result}, "reply": "Done."}
        ]),
    )
    .await;
    assert_eq!(model.turns_left(), 0, "{events:#?}");
    assert_eq!(common::errors(&events), Vec::<String>::new());
}

/// A native run in `auto` mode of one MCP server, its model playing
/// `scenario`: the model, and the run's events.
async fn auto_run(mcp: McpServer, scenario: serde_json::Value) -> (ScriptedModel, Vec<Event>) {
    let (model, url) = common::scripted(&scenario, Some("sk-test")).await;
    let (_home, paddock) = common::with_model(&url, &[]).await;
    let s = common::create(
        &paddock,
        NewSession {
            name: "mcp run".into(),
            permission_mode: Some("auto".parse().unwrap()),
            mcp_servers: vec![mcp],
            ..Default::default()
        },
    )
    .await;
    let events = common::run(&paddock, s.id, "Go on.").await;
    (model, events)
}

/// A server that asks the client what Paddock's does not take (here
/// `sampling/createMessage`, with an id of 100 kB): refused at once by
/// Paddock itself, and the call it made goes on (rmcp would refuse it too,
/// but log the method and id the server wrote, as often as it asks).
#[tokio::test]
async fn a_servers_request_paddock_does_not_take_is_refused_quietly() {
    // A server of JSON-RPC lines as the protocol has them.
    let asks = server(
        "asks",
        "/opt/mcp/bin/python",
        &[
            "-c",
            "import json, sys\n\
             def send(m):\n    sys.stdout.write(json.dumps(m) + '\\n'); sys.stdout.flush()\n\
             while True:\n    \
                 line = sys.stdin.readline()\n    \
                 if not line:\n        break\n    \
                 m = json.loads(line)\n    \
                 method = m.get('method')\n    \
                 if method == 'initialize':\n        \
                     send({'jsonrpc': '2.0', 'id': m['id'], 'result': {'protocolVersion': m['params']['protocolVersion'], 'capabilities': {'tools': {}}, 'serverInfo': {'name': 'asks', 'version': '1'}}})\n    \
                 elif method == 'tools/list':\n        \
                     send({'jsonrpc': '2.0', 'id': m['id'], 'result': {'tools': [{'name': 'ask', 'inputSchema': {'type': 'object'}}]}})\n    \
                 elif method == 'tools/call':\n        \
                     send({'jsonrpc': '2.0', 'id': 'q' * 100000, 'method': 'sampling/createMessage', 'params': {}})\n        \
                     answer = json.loads(sys.stdin.readline())\n        \
                     send({'jsonrpc': '2.0', 'id': m['id'], 'result': {'content': [{'type': 'text', 'text': 'told: ' + answer['error']['message']}]}})\n",
        ],
    );
    called_once(
        asks,
        "mcp__asks__ask",
        "told: Paddock's MCP client takes no such request",
    )
    .await;
}

/// A tool whose schema the model's API refuses (by rules of its own, past
/// those Paddock checks): left out and said, the call made again without
/// it, and the run goes on, rather than every call of the session refused.
#[tokio::test]
async fn a_tool_the_api_refuses_is_left_out_and_the_run_goes_on() {
    let paddocks = server::tools::definitions("auto".parse().unwrap(), false).len();
    let said = format!("tools.{paddocks}.custom.input_schema: JSON schema is invalid");
    let (model, events) = auto_run(
        time_server(),
        json!([
            {"error": {"status": 400, "message": said}},
            {"reply": "Done without it."}
        ]),
    )
    .await;
    assert_eq!(model.turns_left(), 0, "{events:#?}");
    let requests = model.requests();
    let names = |request: &serde_json::Value| -> Vec<String> {
        request["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (first, second) = (names(&requests[0]), names(&requests[1]));
    let refused = &first[paddocks];
    assert!(refused.starts_with("mcp__time__"), "{first:?}");
    assert!(!second.contains(refused), "{second:?}");
    assert_eq!(second.len(), first.len() - 1);
    assert_eq!(
        common::errors(&events),
        [format!(
            "The MCP tool {refused} is not offered: the model's API refused it ({said})."
        )]
    );
    assert_eq!(common::last_status(&events).0, SessionStatus::Idle);
}
