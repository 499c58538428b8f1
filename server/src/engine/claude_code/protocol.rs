//! The Claude Code CLI's stream-json protocol, as far as Paddock speaks it:
//! the lines the CLI prints, parsed once into [`Output`], and the lines
//! Paddock writes to its stdin, built as [`Input`].
//!
//! Names follow the Claude Agent SDK. Unknown fields are ignored; unknown
//! message types, system subtypes, stream events, deltas and content blocks
//! become `Other`, and a control request of any other subtype still parses,
//! so that it can be answered (the CLI waits for every answer). Fields the
//! engine reads default when missing, as the CLI leaves some out.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// One line of the CLI's stdout.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Output {
    System(System),
    /// A raw API stream event (`--include-partial-messages`).
    StreamEvent {
        event: StreamEvent,
    },
    Assistant {
        message: Message,
    },
    User {
        message: Message,
    },
    ControlRequest {
        /// Echoed back verbatim in the answer.
        #[serde(default)]
        request_id: Value,
        request: ControlRequest,
    },
    Result(RunResult),
    /// `control_response`, `rate_limit_event`, `keep_alive`, and whatever
    /// comes next.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub(super) enum System {
    Init {
        #[serde(default)]
        session_id: Option<String>,
    },
    /// A failed model call the CLI will retry.
    ApiRetry {
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        error_status: Option<u64>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum StreamEvent {
    /// A model call begins: one the CLI tries again after it was cut off
    /// too, whose fragments start over.
    MessageStart {},
    ContentBlockDelta {
        #[serde(default)]
        index: usize,
        delta: Delta,
    },
    /// `content_block_start`, `message_delta`, …
    #[serde(other)]
    Other,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub(super) enum Delta {
    #[serde(rename = "text_delta")]
    Text {
        #[serde(default)]
        text: String,
    },
    #[serde(rename = "thinking_delta")]
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    #[serde(rename = "input_json_delta")]
    InputJson {
        #[serde(default)]
        partial_json: String,
    },
    /// `signature_delta`, `citations_delta`, …
    #[serde(other)]
    Other,
}

/// The `message` of an `assistant` or `user` line.
#[derive(Debug, Deserialize)]
pub(super) struct Message {
    #[serde(default, deserialize_with = "blocks")]
    content: Vec<Block>,
}

impl Message {
    /// The content blocks; none when the content is plain text (some user
    /// messages).
    pub(super) fn blocks(&self) -> &[Block] {
        &self.content
    }
}

/// The blocks of a content array, leaving out any that do not parse; none
/// for content of another shape.
fn blocks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Block>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|b| serde_json::from_value(b).ok())
            .collect(),
        _ => Vec::new(),
    })
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        #[serde(default)]
        tool_use_id: String,
        #[serde(default)]
        content: ToolResultContent,
        #[serde(default)]
        is_error: Option<bool>,
    },
    /// `redacted_thinking`, `server_tool_use`, `image`, …
    #[serde(other)]
    Other,
}

/// A `tool_result`'s content: absent or null, a string, or content blocks.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(untagged)]
pub(super) enum ToolResultContent {
    #[default]
    Empty,
    Text(String),
    Blocks(Vec<ToolResultBlock>),
    Other(Value),
}

/// A block of a `tool_result`'s content; only text blocks carry text.
#[derive(Debug, PartialEq, Deserialize)]
pub(super) struct ToolResultBlock {
    #[serde(default)]
    text: Option<String>,
}

impl ToolResultContent {
    /// The string, or the text of the blocks joined by newlines.
    pub(super) fn text(&self) -> String {
        match self {
            ToolResultContent::Empty => String::new(),
            ToolResultContent::Text(text) => text.clone(),
            ToolResultContent::Blocks(blocks) => blocks
                .iter()
                .filter_map(|b| b.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
            ToolResultContent::Other(value) => value.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub(super) enum ControlRequest {
    CanUseTool {
        #[serde(default)]
        tool_name: String,
        #[serde(default)]
        input: Value,
        #[serde(default)]
        tool_use_id: String,
    },
    /// `hook_callback`, `mcp_message`, …: answered with an error.
    #[serde(untagged)]
    Other {
        #[serde(default)]
        subtype: Option<String>,
    },
}

/// The `result` line that ends a prompt's run.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RunResult {
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    is_error: bool,
    /// The final text; the error's prose when the run failed.
    #[serde(default)]
    result: Option<Value>,
    /// Why an `error_*` subtype ended the run.
    #[serde(default)]
    errors: Option<Vec<Value>>,
}

impl RunResult {
    /// Why the run failed, `None` if it did not.
    pub(super) fn failure(&self) -> Option<String> {
        let failed = self.is_error || self.subtype.as_deref().is_some_and(|s| s != "success");
        if !failed {
            return None;
        }
        let text = self
            .result
            .as_ref()
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                self.errors.as_ref().map(|e| {
                    e.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
            .filter(|t| !t.is_empty());
        Some(text.unwrap_or_else(|| {
            format!(
                "the run ended with {}",
                self.subtype.as_deref().unwrap_or("an error")
            )
        }))
    }
}

/// One line Paddock writes to the CLI's stdin.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Input<'a> {
    User {
        message: UserMessage<'a>,
        parent_tool_use_id: Option<&'a str>,
        session_id: &'a str,
    },
    ControlRequest {
        request_id: &'a str,
        request: HostRequest,
    },
    ControlResponse {
        response: ControlResponse<'a>,
    },
}

#[derive(Debug, Serialize)]
pub(super) struct UserMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// A request from the host to the CLI.
#[derive(Debug, Serialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub(super) enum HostRequest {
    /// End the current turn.
    Interrupt,
}

#[derive(Debug, Serialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub(super) enum ControlResponse<'a> {
    Success {
        request_id: &'a Value,
        response: Permission<'a>,
    },
    Error {
        request_id: &'a Value,
        error: String,
    },
}

/// The answer to `can_use_tool`.
#[derive(Debug, Serialize)]
#[serde(tag = "behavior", rename_all = "snake_case")]
pub(super) enum Permission<'a> {
    Allow {
        #[serde(rename = "updatedInput")]
        updated_input: &'a Value,
    },
    Deny {
        message: String,
        /// Also end the turn.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        interrupt: bool,
    },
}

impl<'a> Input<'a> {
    /// A prompt, as the Agent SDK sends one.
    pub(super) fn user(prompt: &'a str) -> Self {
        Input::User {
            message: UserMessage {
                role: "user",
                content: prompt,
            },
            parent_tool_use_id: None,
            session_id: "default",
        }
    }

    pub(super) fn interrupt(request_id: &'a str) -> Self {
        Input::ControlRequest {
            request_id,
            request: HostRequest::Interrupt,
        }
    }

    pub(super) fn answer(request_id: &'a Value, response: Permission<'a>) -> Self {
        Input::ControlResponse {
            response: ControlResponse::Success {
                request_id,
                response,
            },
        }
    }

    pub(super) fn refuse(request_id: &'a Value, error: String) -> Self {
        Input::ControlResponse {
            response: ControlResponse::Error { request_id, error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(line: &str) -> Output {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn system_messages() {
        let init = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"abc","tools":["Bash"],"model":"m"}"#;
        assert!(
            matches!(parse(init), Output::System(System::Init { session_id: Some(id) }) if id == "abc")
        );
        let retry = r#"{"type":"system","subtype":"api_retry","attempt":1,"error_status":401,"error":"authentication_failed"}"#;
        assert!(matches!(
            parse(retry),
            Output::System(System::ApiRetry { error: Some(e), error_status: Some(401) }) if e == "authentication_failed"
        ));
        let offline = r#"{"type":"system","subtype":"api_retry","error_status":null}"#;
        assert!(matches!(
            parse(offline),
            Output::System(System::ApiRetry {
                error: None,
                error_status: None
            })
        ));
        let other = r#"{"type":"system","subtype":"compact_boundary"}"#;
        assert!(matches!(parse(other), Output::System(System::Other)));
    }

    #[test]
    fn stream_deltas() {
        let delta = |d: &str| match parse(&format!(
            r#"{{"type":"stream_event","event":{{"type":"content_block_delta","index":2,"delta":{d}}}}}"#
        )) {
            Output::StreamEvent {
                event: StreamEvent::ContentBlockDelta { index: 2, delta },
            } => delta,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            delta(r#"{"type":"text_delta","text":"Hi"}"#),
            Delta::Text { text: "Hi".into() }
        );
        assert_eq!(
            delta(r#"{"type":"thinking_delta","thinking":"hm"}"#),
            Delta::Thinking {
                thinking: "hm".into()
            }
        );
        assert_eq!(
            delta(r#"{"type":"input_json_delta","partial_json":"{\"a\":"}"#),
            Delta::InputJson {
                partial_json: r#"{"a":"#.into()
            }
        );
        assert_eq!(delta(r#"{"type":"signature_delta"}"#), Delta::Other);
        let start =
            r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"m"}}}"#;
        assert!(matches!(
            parse(start),
            Output::StreamEvent {
                event: StreamEvent::MessageStart {}
            }
        ));
        let stop = r#"{"type":"stream_event","event":{"type":"message_stop"}}"#;
        assert!(matches!(
            parse(stop),
            Output::StreamEvent {
                event: StreamEvent::Other
            }
        ));
    }

    #[test]
    fn message_blocks() {
        let line = r#"{"type":"assistant","message":{"role":"assistant","content":[
            {"type":"thinking","thinking":"Let me think","signature":"sig"},
            {"type":"text","text":"Hello"},
            {"type":"redacted_thinking","data":"xyz"},
            {"type":"tool_use","id":"toolu_1","name":"Read","input":{"file_path":"/a"}}]},"session_id":"s"}"#;
        let Output::Assistant { message } = parse(line) else {
            panic!("not an assistant message");
        };
        assert_eq!(
            message.blocks(),
            [
                Block::Thinking {
                    thinking: "Let me think".into()
                },
                Block::Text {
                    text: "Hello".into()
                },
                Block::Other,
                Block::ToolUse {
                    id: "toolu_1".into(),
                    name: "Read".into(),
                    input: json!({"file_path": "/a"})
                }
            ]
        );
        let text = r#"{"type":"user","message":{"role":"user","content":"<local-command-stdout>ok</local-command-stdout>"}}"#;
        assert!(matches!(parse(text), Output::User { message } if message.blocks().is_empty()));
    }

    #[test]
    fn tool_results_are_text() {
        let line = r#"{"type":"user","message":{"role":"user","content":[
            {"type":"tool_result","tool_use_id":"t1","content":"ok"},
            {"type":"tool_result","tool_use_id":"t2","content":[{"type":"text","text":"a"},{"type":"image"},{"type":"text","text":"b"}],"is_error":true},
            {"type":"tool_result","tool_use_id":"t3","content":null},
            {"type":"tool_result","tool_use_id":"t4","content":{"odd":1}}]}}"#;
        let Output::User { message } = parse(line) else {
            panic!("not a user message");
        };
        let results: Vec<(String, bool)> = message
            .blocks()
            .iter()
            .map(|b| match b {
                Block::ToolResult {
                    content, is_error, ..
                } => (content.text(), is_error.unwrap_or(false)),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            results,
            [
                ("ok".to_owned(), false),
                ("a\nb".to_owned(), true),
                (String::new(), false),
                (r#"{"odd":1}"#.to_owned(), false)
            ]
        );
    }

    #[test]
    fn control_requests_parse_whatever_their_subtype() {
        let ask = r#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls"},"permission_suggestions":[],"tool_use_id":"toolu_01"}}"#;
        let Output::ControlRequest {
            request_id,
            request:
                ControlRequest::CanUseTool {
                    tool_name,
                    input,
                    tool_use_id,
                },
        } = parse(ask)
        else {
            panic!("not can_use_tool");
        };
        assert_eq!(
            (request_id, tool_name.as_str(), tool_use_id.as_str(), input),
            (json!("r1"), "Bash", "toolu_01", json!({"command": "ls"}))
        );
        let hook = r#"{"type":"control_request","request_id":7,"request":{"subtype":"hook_callback","callback_id":"c"}}"#;
        assert!(matches!(
            parse(hook),
            Output::ControlRequest { request_id, request: ControlRequest::Other { subtype: Some(s) } }
                if request_id == json!(7) && s == "hook_callback"
        ));
    }

    #[test]
    fn results_say_why_a_run_failed() {
        let failure = |line: &str| match parse(line) {
            Output::Result(r) => r.failure(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            failure(r#"{"type":"result","subtype":"success","is_error":false,"result":"Done"}"#),
            None
        );
        assert_eq!(
            failure(
                r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 529"}"#
            )
            .as_deref(),
            Some("API Error: 529")
        );
        assert_eq!(
            failure(r#"{"type":"result","subtype":"error_during_execution","errors":["a",5,"b"]}"#)
                .as_deref(),
            Some("a; b")
        );
        assert_eq!(
            failure(r#"{"type":"result","subtype":"error_max_turns","is_error":true}"#).as_deref(),
            Some("the run ended with error_max_turns")
        );
    }

    #[test]
    fn unknown_lines_are_other_and_garbage_is_an_error() {
        for line in [
            r#"{"type":"rate_limit_event","rate_limit_info":{}}"#,
            r#"{"type":"control_response","response":{"subtype":"success","request_id":"r"}}"#,
            r#"{"type":"keep_alive"}"#,
        ] {
            assert!(matches!(parse(line), Output::Other), "{line}");
        }
        assert!(serde_json::from_str::<Output>(r#"{"no_type":1}"#).is_err());
        assert!(serde_json::from_str::<Output>("Service not running").is_err());
    }

    #[test]
    fn input_lines_are_what_the_cli_expects() {
        let line = |input: &Input| serde_json::to_value(input).unwrap();
        assert_eq!(
            line(&Input::user("Hi")),
            json!({"type": "user", "message": {"role": "user", "content": "Hi"}, "parent_tool_use_id": null, "session_id": "default"})
        );
        assert_eq!(
            line(&Input::interrupt("paddock_1")),
            json!({"type": "control_request", "request_id": "paddock_1", "request": {"subtype": "interrupt"}})
        );
        let id = json!("r1");
        let input = json!({"command": "ls"});
        assert_eq!(
            line(&Input::answer(
                &id,
                Permission::Allow {
                    updated_input: &input
                }
            )),
            json!({"type": "control_response", "response": {"subtype": "success", "request_id": "r1", "response": {"behavior": "allow", "updatedInput": {"command": "ls"}}}})
        );
        assert_eq!(
            line(&Input::answer(
                &id,
                Permission::Deny {
                    message: "No.".into(),
                    interrupt: false
                }
            ))["response"]["response"],
            json!({"behavior": "deny", "message": "No."})
        );
        assert_eq!(
            line(&Input::answer(
                &id,
                Permission::Deny {
                    message: "Stopped.".into(),
                    interrupt: true
                }
            ))["response"]["response"],
            json!({"behavior": "deny", "message": "Stopped.", "interrupt": true})
        );
        assert_eq!(
            line(&Input::refuse(
                &id,
                "Paddock does not handle x requests".into()
            )),
            json!({"type": "control_response", "response": {"subtype": "error", "request_id": "r1", "error": "Paddock does not handle x requests"}})
        );
    }
}
