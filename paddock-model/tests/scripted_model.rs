//! The scripted model server over real HTTP: the SSE wire format for each kind
//! of turn, HTTP and mid-stream errors, request validation, expectations,
//! authentication, and the `paddock-model` binary itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use paddock_model::{Scenario, ScriptedModel};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Harness {
    model: ScriptedModel,
    base: String,
    client: reqwest::Client,
}

async fn start(scenario: Value) -> Harness {
    start_with_key(scenario, None).await
}

async fn start_with_key(scenario: Value, key: Option<&str>) -> Harness {
    let scenario = Scenario::from_json(&scenario.to_string()).unwrap();
    let model = ScriptedModel::new(scenario).with_api_key(key.map(str::to_owned));
    let addr = model.spawn().await.unwrap();
    Harness {
        model,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
    }
}

/// A minimal valid request: one user message, the given tools.
fn request(text: &str, tools: &[&str], stream: bool) -> Value {
    let tools: Vec<Value> = tools
        .iter()
        .map(|name| json!({"name": name, "description": "", "input_schema": {"type": "object"}}))
        .collect();
    json!({
        "model": "claude-test-1",
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
        "tools": tools,
    })
}

impl Harness {
    async fn post(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/messages", self.base))
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a streaming request and returns its events as (name, data).
    async fn stream(&self, body: &Value) -> Vec<(String, Value)> {
        let response = self.post(body).await;
        assert_eq!(response.status(), 200);
        sse_events(response).await
    }

    /// Posts and expects an Anthropic error body with this status and type;
    /// returns the message.
    async fn expect_error(&self, body: &Value, status: u16, kind: &str) -> String {
        let response = self.post(body).await;
        error_of(response, status, kind).await
    }
}

async fn error_of(response: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(response.status().as_u16(), status);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

async fn sse_events(response: reqwest::Response) -> Vec<(String, Value)> {
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut events = Vec::new();
    let mut stream = response.bytes_stream().eventsource();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(
            data["type"], event.event,
            "event name must equal the JSON type"
        );
        events.push((event.event, data));
    }
    events
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// Checks the envelope every complete stream has, and returns the events of
/// each content block (start, deltas, stop).
fn blocks(events: &[(String, Value)]) -> Vec<Vec<Value>> {
    let n = names(events);
    assert_eq!(n[0], "message_start");
    assert_eq!(n[1], "ping");
    assert_eq!(n[n.len() - 2], "message_delta");
    assert_eq!(n[n.len() - 1], "message_stop");
    let mut blocks: Vec<Vec<Value>> = Vec::new();
    for (name, data) in &events[2..events.len() - 2] {
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(data["index"], blocks.len());
                blocks.push(vec![data.clone()]);
            }
            "content_block_delta" | "content_block_stop" => {
                assert_eq!(data["index"], blocks.len() - 1);
                let current = blocks.last_mut().expect("delta before any block start");
                assert_ne!(
                    current.last().unwrap()["type"],
                    "content_block_stop",
                    "event after content_block_stop"
                );
                current.push(data.clone());
            }
            other => panic!("unexpected event {other} inside the message"),
        }
    }
    for block in &blocks {
        assert_eq!(block.last().unwrap()["type"], "content_block_stop");
        assert!(block.len() >= 3, "a block needs at least one delta");
    }
    blocks
}

fn deltas(block: &[Value]) -> Vec<&Value> {
    block[1..block.len() - 1]
        .iter()
        .map(|e| &e["delta"])
        .collect()
}

#[tokio::test]
async fn text_turn_streams_the_exact_event_sequence() {
    let h = start(json!([{
        "reply": [{"text": "Hello there, this is a scripted answer."}],
        "usage": {"input_tokens": 42, "output_tokens": 7},
        "chunk": 10,
    }]))
    .await;
    let events = h.stream(&request("hi", &[], true)).await;

    let start = &events[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["type"], "message");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["model"], "claude-test-1");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["input_tokens"], 42);
    assert_eq!(start["usage"]["output_tokens"], 1);

    let blocks = blocks(&events);
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        blocks[0][0]["content_block"],
        json!({"type": "text", "text": ""})
    );
    let deltas = deltas(&blocks[0]);
    assert_eq!(deltas.len(), 4, "40 characters in chunks of 10");
    let text: String = deltas
        .iter()
        .map(|d| {
            assert_eq!(d["type"], "text_delta");
            d["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, "Hello there, this is a scripted answer.");

    let delta = &events[events.len() - 2].1;
    assert_eq!(
        *delta,
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 7},
        })
    );
    assert_eq!(events.last().unwrap().1, json!({"type": "message_stop"}));
}

#[tokio::test]
async fn raw_frames_are_event_then_data_then_blank_line() {
    let h = start(json!([{"reply": "Hi"}])).await;
    let text = h
        .post(&request("hi", &[], true))
        .await
        .text()
        .await
        .unwrap();
    let frames: Vec<&str> = text.split_terminator("\n\n").collect();
    assert!(text.ends_with("\n\n"));
    assert_eq!(frames.len(), 7, "{text}");
    for frame in frames {
        let (event, data) = frame.split_once('\n').unwrap();
        let name = event.strip_prefix("event: ").unwrap();
        let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], name);
    }
}

#[tokio::test]
async fn thinking_turn_sends_thinking_deltas_then_a_signature() {
    let h = start(json!([{
        "reply": [{"thinking": "Let me think about this carefully."}, {"text": "42"}],
    }]))
    .await;
    let events = h.stream(&request("meaning of life?", &[], true)).await;
    let blocks = blocks(&events);
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        blocks[0][0]["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    let deltas = deltas(&blocks[0]);
    let (signature, thinking) = deltas.split_last().unwrap();
    assert!(thinking.len() >= 2);
    let text: String = thinking
        .iter()
        .map(|d| {
            assert_eq!(d["type"], "thinking_delta");
            d["thinking"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, "Let me think about this carefully.");
    assert_eq!(signature["type"], "signature_delta");
    assert!(!signature["signature"].as_str().unwrap().is_empty());
    assert_eq!(blocks[1][0]["content_block"]["type"], "text");
    assert_eq!(
        events[events.len() - 2].1["delta"]["stop_reason"],
        "end_turn"
    );
}

#[tokio::test]
async fn tool_use_turn_streams_its_input_as_partial_json() {
    let input =
        json!({"path": "src/main.rs", "content": "fn main() {\n    println!(\"héllo\");\n}\n"});
    let h = start(json!([{
        "reply": [
            {"text": "Writing it."},
            {"tool_use": {"name": "write_file", "input": input}},
            {"tool_use": {"name": "bash", "input": {"command": "ls"}, "id": "toolu_fixed"}},
        ],
        "chunk": 7,
    }]))
    .await;
    let events = h
        .stream(&request("write main.rs", &["write_file", "bash"], true))
        .await;
    let blocks = blocks(&events);
    assert_eq!(blocks.len(), 3);

    let start = &blocks[1][0]["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert!(start["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(start["name"], "write_file");
    assert_eq!(start["input"], json!({}));
    let pieces = deltas(&blocks[1]);
    assert!(pieces.len() > 3, "input split in several pieces");
    let json_text: String = pieces
        .iter()
        .map(|d| {
            assert_eq!(d["type"], "input_json_delta");
            d["partial_json"].as_str().unwrap()
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&json_text).unwrap(), input);

    assert_eq!(blocks[2][0]["content_block"]["id"], "toolu_fixed");
    let json_text: String = deltas(&blocks[2])
        .iter()
        .map(|d| d["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        json!({"command": "ls"})
    );

    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 1);
}

#[tokio::test]
async fn non_streaming_request_gets_the_full_message() {
    let h = start(json!([{
        "reply": [
            {"thinking": "hmm"},
            {"text": "Running ls."},
            {"tool_use": {"name": "bash", "input": {"command": "ls"}, "id": "toolu_1"}},
        ],
        "usage": {"input_tokens": 5, "output_tokens": 9},
    }]))
    .await;
    let response = h.post(&request("list files", &["bash"], false)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let message: Value = response.json().await.unwrap();
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-test-1");
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(message["stop_sequence"], Value::Null);
    assert_eq!(message["usage"]["input_tokens"], 5);
    assert_eq!(message["usage"]["output_tokens"], 9);
    let content = message["content"].as_array().unwrap();
    assert_eq!(content.len(), 3);
    assert_eq!(content[0]["type"], "thinking");
    assert_eq!(content[0]["thinking"], "hmm");
    assert!(content[0]["signature"].is_string());
    assert_eq!(content[1], json!({"type": "text", "text": "Running ls."}));
    assert_eq!(
        content[2],
        json!({"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls"}})
    );
}

#[tokio::test]
async fn explicit_stop_reason_and_default_usage() {
    let h = start(json!([{"reply": "cut", "stop_reason": "max_tokens"}])).await;
    let message: Value = h
        .post(&request("some words here", &[], false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(message["stop_reason"], "max_tokens");
    assert!(message["usage"]["input_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(message["usage"]["output_tokens"], 1);
}

#[tokio::test]
async fn http_error_turns_have_status_body_and_retry_after() {
    let h = start(json!([
        {"error": {"status": 429, "message": "slow down", "retry_after": 7}},
        {"error": {"status": 429}},
        {"error": {"status": 529}},
        {"error": {"status": 500, "type": "api_error", "message": "boom"}},
        {"error": {"status": 401}},
        {"reply": "finally"},
    ]))
    .await;
    let body = request("hi", &[], true);

    let response = h.post(&body).await;
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(
        error_of(response, 429, "rate_limit_error").await,
        "slow down"
    );

    let response = h.post(&body).await;
    assert_eq!(response.headers()["retry-after"], "1");
    error_of(response, 429, "rate_limit_error").await;

    let response = h.post(&body).await;
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(
        error_of(response, 529, "overloaded_error").await,
        "Overloaded"
    );

    assert_eq!(h.expect_error(&body, 500, "api_error").await, "boom");
    h.expect_error(&body, 401, "authentication_error").await;

    let events = h.stream(&body).await;
    assert_eq!(events.last().unwrap().0, "message_stop");
    assert_eq!(h.model.turns_used(), 6);
}

#[tokio::test]
async fn mid_stream_error_ends_the_stream_with_an_error_event() {
    let h = start(json!([
        {"reply": "This answer is cut off part-way through.", "chunk": 5, "stream_error": {"after": 4}},
        {"reply": "x", "stream_error": {"type": "api_error", "message": "Internal error"}},
        {"reply": "x", "stream_error": {}},
    ]))
    .await;
    let events = h.stream(&request("hi", &[], true)).await;
    assert_eq!(
        names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        events[4].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    let events = h.stream(&request("hi", &[], true)).await;
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(!names(&events).contains(&"message_stop"));

    // Without streaming the same failure is an HTTP error.
    let message = h
        .expect_error(&request("hi", &[], false), 529, "overloaded_error")
        .await;
    assert_eq!(message, "Overloaded");
}

#[tokio::test]
async fn delay_ms_spaces_the_events() {
    let h = start(json!([{"reply": "abcdefghij", "chunk": 5, "delay_ms": 30}])).await;
    let began = Instant::now();
    let events = h.stream(&request("hi", &[], true)).await;
    // 8 events, 7 pauses.
    assert_eq!(events.len(), 8);
    assert!(began.elapsed() >= Duration::from_millis(7 * 30));
}

#[tokio::test]
async fn beta_query_is_accepted() {
    let h = start(json!([{"reply": "ok"}])).await;
    let response = h
        .client
        .post(format!("{}/v1/messages?beta=true", h.base))
        .json(&request("hi", &[], true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(response).await;
    assert_eq!(events.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn invalid_requests_are_refused_without_consuming_the_turn() {
    let h = start(json!([
        {"reply": [{"tool_use": {"name": "bash", "input": {"command": "ls"}}}]},
    ]))
    .await;

    // Malformed JSON.
    let response = h
        .client
        .post(format!("{}/v1/messages", h.base))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    let message = error_of(response, 400, "invalid_request_error").await;
    assert!(message.contains("malformed JSON"), "{message}");

    // Missing fields.
    let mut body = request("hi", &["bash"], true);
    body.as_object_mut().unwrap().remove("max_tokens");
    let message = h.expect_error(&body, 400, "invalid_request_error").await;
    assert!(message.contains("max_tokens"), "{message}");
    let mut body = request("hi", &["bash"], true);
    body.as_object_mut().unwrap().remove("model");
    let message = h.expect_error(&body, 400, "invalid_request_error").await;
    assert!(message.contains("model"), "{message}");
    let mut body = request("hi", &["bash"], true);
    body["messages"] = json!([]);
    let message = h.expect_error(&body, 400, "invalid_request_error").await;
    assert!(message.contains("messages"), "{message}");

    // Roles: must start with user and alternate.
    let mut body = request("hi", &["bash"], true);
    body["messages"] = json!([
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]);
    let message = h.expect_error(&body, 400, "invalid_request_error").await;
    assert!(message.contains("alternate"), "{message}");
    body["messages"] = json!([{"role": "assistant", "content": "a"}]);
    let message = h.expect_error(&body, 400, "invalid_request_error").await;
    assert!(message.contains("first message"), "{message}");

    // A tool_use left unanswered.
    body["messages"] = json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "bash", "input": {}},
            {"type": "tool_use", "id": "toolu_b", "name": "bash", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "ok"},
        ]},
    ]);
    let message = h.expect_error(&body, 400, "invalid_request_error").await;
    assert!(message.contains("toolu_b"), "{message}");
    assert!(message.contains("tool_result"), "{message}");

    // A tool_result answering nothing.
    body["messages"] = json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "no tools here"},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_zzz", "content": "ok"},
        ]},
    ]);
    let message = h.expect_error(&body, 400, "invalid_request_error").await;
    assert!(message.contains("toolu_zzz"), "{message}");

    // Two results for one tool_use.
    body["messages"] = json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "bash", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "interrupted", "is_error": true},
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "ok"},
        ]},
    ]);
    let message = h.expect_error(&body, 400, "invalid_request_error").await;
    assert!(
        message.contains("multiple `tool_result` blocks with id: toolu_a"),
        "{message}"
    );

    // The scenario's tool is not declared by the request.
    let message = h
        .expect_error(
            &request("hi", &["read_file"], true),
            400,
            "invalid_request_error",
        )
        .await;
    assert!(message.contains("`bash`"), "{message}");
    assert!(message.contains("read_file"), "{message}");

    assert_eq!(h.model.turns_used(), 0);
    assert_eq!(h.model.requests().len(), 9, "every parsed body is recorded");

    // A correct conversation with answered tool_use still gets the turn.
    let mut body = request("hi", &["bash"], true);
    body["messages"] = json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "let me look"},
            {"type": "tool_use", "id": "toolu_a", "name": "bash", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "ok"},
            {"type": "text", "text": "go on"},
        ]},
    ]);
    let events = h.stream(&body).await;
    assert_eq!(
        events[events.len() - 2].1["delta"]["stop_reason"],
        "tool_use"
    );
    assert_eq!(h.model.turns_left(), 0);
}

#[tokio::test]
async fn expectations_are_checked_against_the_request() {
    let h = start(json!([
        {
            "expect": {
                "contains": ["build the thing"],
                "tools": ["bash"],
                "system_contains": "You are Paddock",
            },
            "reply": "ok",
        },
        {"expect": {"tool_result_contains": "exit 0"}, "reply": "done"},
    ]))
    .await;
    let mut body = request("please build the thing", &["bash"], true);
    body["system"] = json!([{"type": "text", "text": "You are Paddock's agent."}]);

    let mut wrong = body.clone();
    wrong["messages"][0]["content"] = json!("something else");
    let message = h.expect_error(&wrong, 400, "invalid_request_error").await;
    assert!(message.contains("build the thing"), "{message}");
    assert!(message.contains("turn 0"), "{message}");

    let mut wrong = body.clone();
    wrong["tools"] = json!([]);
    let message = h.expect_error(&wrong, 400, "invalid_request_error").await;
    assert!(message.contains("`bash`"), "{message}");

    let mut wrong = body.clone();
    wrong["system"] = json!("Another prompt");
    let message = h.expect_error(&wrong, 400, "invalid_request_error").await;
    assert!(message.contains("You are Paddock"), "{message}");

    assert_eq!(h.model.turns_used(), 0);
    h.stream(&body).await;

    let mut next = body.clone();
    next["messages"] = json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "exit 1"}]},
    ]);
    let message = h.expect_error(&next, 400, "invalid_request_error").await;
    assert!(message.contains("exit 0"), "{message}");
    next["messages"][2]["content"][0]["content"] =
        json!([{"type": "text", "text": "build ok, exit 0"}]);
    h.stream(&next).await;
    assert_eq!(h.model.turns_left(), 0);
}

#[tokio::test]
async fn exhausted_scenario_answers_400() {
    let h = start(json!([{"reply": "only one"}])).await;
    h.stream(&request("hi", &[], true)).await;
    let message = h
        .expect_error(&request("again", &[], true), 400, "invalid_request_error")
        .await;
    assert!(message.contains("scenario exhausted"), "{message}");
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let h = start(json!([{"reply": "a"}, {"reply": "b"}])).await;
    h.stream(&request("first", &[], true)).await;
    h.post(&request("second", &[], false)).await;
    let requests = h.model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["messages"][0]["content"], "first");
    assert_eq!(requests[1]["messages"][0]["content"], "second");

    let state: Value = h
        .client
        .get(format!("{}/_scripted", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["turns"], 2);
    assert_eq!(state["used"], 2);
    assert_eq!(state["requests"], json!(requests));
}

#[tokio::test]
async fn api_key_is_enforced() {
    let h = start_with_key(json!([{"reply": "a"}, {"reply": "b"}]), Some("sk-test")).await;
    let url = format!("{}/v1/messages", h.base);
    let body = request("hi", &[], false);

    let response = h.client.post(&url).json(&body).send().await.unwrap();
    error_of(response, 401, "authentication_error").await;
    let response = h
        .client
        .post(&url)
        .header("x-api-key", "sk-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    error_of(response, 401, "authentication_error").await;
    let response = h
        .client
        .post(format!("{}/v1/messages/count_tokens", h.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    error_of(response, 401, "authentication_error").await;
    assert!(h.model.requests().is_empty());

    let response = h
        .client
        .post(&url)
        .header("x-api-key", "sk-test")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = h
        .client
        .post(&url)
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn count_tokens_gives_a_rough_count() {
    let h = start(json!([])).await;
    let url = format!("{}/v1/messages/count_tokens", h.base);
    let count = |text: String| {
        let client = h.client.clone();
        let url = url.clone();
        async move {
            let response = client
                .post(&url)
                .json(&json!({"model": "claude-test-1", "messages": [{"role": "user", "content": text}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["input_tokens"].as_u64().unwrap()
        }
    };
    let short = count("hi".into()).await;
    let long = count("word ".repeat(400)).await;
    assert!(short >= 1);
    assert!((400..=600).contains(&long), "{long}");

    let response = h
        .client
        .post(&url)
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    error_of(response, 400, "invalid_request_error").await;
    assert!(
        h.model.requests().is_empty(),
        "count_tokens is not recorded"
    );
}

#[tokio::test]
async fn unknown_routes_answer_an_anthropic_404() {
    let h = start(json!([])).await;
    let response = h
        .client
        .get(format!("{}/v1/nothing", h.base))
        .send()
        .await
        .unwrap();
    error_of(response, 404, "not_found_error").await;
}

#[test]
fn shipped_scenarios_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let scenario =
                Scenario::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!scenario.turns.is_empty(), "{}", path.display());
            count += 1;
        }
    }
    assert!(count >= 3);
}

#[test]
fn bad_scenarios_are_refused_with_a_reason() {
    let cases = [
        (r#"[{"reply": "a", "error": {"status": 500}}]"#, "not both"),
        (r#"[{}]"#, "needs `reply` or `error`"),
        (
            r#"[{"reply": "a", "stop_reson": "end_turn"}]"#,
            "stop_reson",
        ),
        (r#"[{"reply": [{"txt": "a"}]}]"#, "txt"),
        (r#"[{"error": {"status": 200}}]"#, "400-599"),
        (r#"[{"error": {"status": 500}, "delay_ms": 5}]"#, "only"),
        (
            r#"[{"reply": [{"tool_use": {"name": "x", "input": [1]}}]}]"#,
            "JSON object",
        ),
        (r#"[{"reply": "a", "chunk": 0}]"#, "chunk"),
        (r#"{"turn": []}"#, "turn"),
        (r#"[{"reply": "a", "stop_reason": "done"}]"#, "stop_reason"),
        (
            r#"[{"reply": [{"tool_use": {"name": "x", "cut_at": 3}}]}]"#,
            "max_tokens",
        ),
        (
            r#"[{"reply": [{"tool_use": {"name": "x", "cut_at": 3}}, {"text": "after"}], "stop_reason": "max_tokens"}]"#,
            "last block",
        ),
    ];
    for (text, needle) in cases {
        let error = Scenario::from_json(text).unwrap_err().to_string();
        assert!(error.contains(needle), "{text}: {error}");
    }
}

#[tokio::test]
async fn binary_serves_a_scenario_file() {
    use tokio::io::AsyncBufReadExt;

    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/hello.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_paddock-model"))
        .args(["--addr", "127.0.0.1:0", "--scenario"])
        .arg(&scenario)
        .env_remove("PADDOCK_MODEL_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("no listening line within 30s")
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("paddock-model listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();

    let response = reqwest::Client::new()
        .post(format!("{base}/v1/messages?beta=true"))
        .header("x-api-key", "anything")
        .json(&request("hello", &[], true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(response).await;
    let blocks = blocks(&events);
    let text: String = deltas(&blocks[0])
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert!(text.starts_with("Hello!"), "{text}");
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 12);

    child.kill().await.unwrap();
}
